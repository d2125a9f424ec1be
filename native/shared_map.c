// Functions Node lacks. For the crash journal (src/fuse/journal.ts): create an anonymous
// memory file (memfd_create: shmem, never written back to a disk) and map a file MAP_SHARED
// into an ArrayBuffer. The serving loop reads each FUSE request from /dev/fuse straight into
// such a mapping, so the request is journalled by the read(2) itself: a serving process
// killed at any instruction after the read leaves the whole request behind for its successor.
// For the handover between daemons (src/daemon/handover.ts): send and receive descriptors
// over a Unix socket (SCM_RIGHTS), so the /dev/fuse connection passes from the running daemon
// to its successor and the mount never goes away. For the serving process
// (src/daemon/child.ts): call back whenever a descriptor is readable, from Node's own event
// loop, so that one thread both serves /dev/fuse and talks to the supervisor.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <node_api.h>
#include <uv.h>

#define MAX_FDS 8

static void unmap(napi_env env, void *data, void *hint) {
  (void)env;
  munmap(data, (size_t)(uintptr_t)hint);
}

// mapShared(fd, length): an ArrayBuffer over the first `length` bytes of the file.
static napi_value map_shared(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd = -1;
  int64_t length = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int64(env, argv[1], &length) != napi_ok ||
      fd < 0 || length <= 0) {
    napi_throw_type_error(env, NULL, "mapShared(fd, length): a descriptor and a positive length");
    return NULL;
  }
  void *p = mmap(NULL, (size_t)length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    napi_throw_error(env, NULL, strerror(errno));
    return NULL;
  }
  napi_value buffer;
  if (napi_create_external_arraybuffer(env, p, (size_t)length, unmap, (void *)(uintptr_t)length, &buffer) != napi_ok) {
    munmap(p, (size_t)length);
    napi_throw_error(env, NULL, "mapShared: external buffers are not allowed in this runtime");
    return NULL;
  }
  return buffer;
}

// memfdCreate(name): a descriptor of a new, empty anonymous memory file (not inherited across exec).
static napi_value memfd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char name[64];
  size_t len = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 ||
      napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "memfdCreate(name): a name");
    return NULL;
  }
  int fd = memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) {
    napi_throw_error(env, NULL, strerror(errno));
    return NULL;
  }
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

// sendFds(socket, data, fds): one sendmsg(2) of `data` with `fds` attached; the bytes sent.
static napi_value send_fds(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t sock = -1;
  void *data = NULL;
  size_t length = 0;
  uint32_t count = 0;
  bool is_array = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 ||
      napi_get_value_int32(env, argv[0], &sock) != napi_ok ||
      napi_get_buffer_info(env, argv[1], &data, &length) != napi_ok || length == 0 ||
      napi_is_array(env, argv[2], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[2], &count) != napi_ok || count > MAX_FDS) {
    napi_throw_type_error(env, NULL, "sendFds(socket, data, fds): a descriptor, a non-empty Buffer and up to 8 descriptors");
    return NULL;
  }
  int fds[MAX_FDS];
  for (uint32_t i = 0; i < count; i++) {
    napi_value v;
    if (napi_get_element(env, argv[2], i, &v) != napi_ok || napi_get_value_int32(env, v, &fds[i]) != napi_ok || fds[i] < 0) {
      napi_throw_type_error(env, NULL, "sendFds: descriptors are non-negative integers");
      return NULL;
    }
  }
  union {
    char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    struct cmsghdr align;
  } control;
  memset(&control, 0, sizeof control);
  struct iovec iov = {.iov_base = data, .iov_len = length};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (count > 0) {
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * count);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * count);
  }
  ssize_t n;
  do n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    napi_throw_error(env, NULL, strerror(errno));
    return NULL;
  }
  napi_value out;
  napi_create_int64(env, n, &out);
  return out;
}

// recvFds(socket, maxBytes): one recvmsg(2); { data, fds } (descriptors close-on-exec), or
// null when nothing is waiting on a non-blocking socket. An empty `data` is the peer's end.
static napi_value recv_fds(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t sock = -1;
  int32_t max = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      napi_get_value_int32(env, argv[0], &sock) != napi_ok || napi_get_value_int32(env, argv[1], &max) != napi_ok ||
      sock < 0 || max <= 0 || max > (1 << 20)) {
    napi_throw_type_error(env, NULL, "recvFds(socket, maxBytes): a descriptor and a size up to 1 MiB");
    return NULL;
  }
  char *buf = malloc((size_t)max);
  if (!buf) {
    napi_throw_error(env, NULL, "recvFds: out of memory");
    return NULL;
  }
  union {
    char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    struct cmsghdr align;
  } control;
  struct iovec iov = {.iov_base = buf, .iov_len = (size_t)max};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
  ssize_t n;
  do n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    int e = errno;
    free(buf);
    if (e == EAGAIN || e == EWOULDBLOCK) {
      napi_value nul;
      napi_get_null(env, &nul);
      return nul;
    }
    napi_throw_error(env, NULL, strerror(e));
    return NULL;
  }
  napi_value out, data, fds;
  napi_create_object(env, &out);
  napi_create_buffer_copy(env, (size_t)n, buf, NULL, &data);
  free(buf);
  napi_create_array(env, &fds);
  uint32_t k = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int *got = (int *)CMSG_DATA(c);
    for (size_t i = 0; i < count; i++) {
      napi_value v;
      napi_create_int32(env, got[i], &v);
      napi_set_element(env, fds, k++, v);
    }
  }
  napi_set_named_property(env, out, "data", data);
  napi_set_named_property(env, out, "fds", fds);
  // Descriptors cut off for want of room were closed by the kernel; the caller must know.
  napi_value truncated;
  napi_get_boolean(env, (msg.msg_flags & MSG_CTRUNC) != 0, &truncated);
  napi_set_named_property(env, out, "truncated", truncated);
  return out;
}

// mallocTrim(): gives the C heap's free memory back to the kernel (malloc_trim(3)); whether any was.
static napi_value malloc_trim_(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  napi_get_boolean(env, malloc_trim(0) == 1, &out);
  return out;
}

// watchReadable(fd, callback): calls callback() on Node's event loop each time fd is readable
// (level-triggered: again and again while it stays so); returns stop(), which ends that.
typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  napi_async_context context;
  int stopped;
} watch_t;

static void watch_closed(uv_handle_t *h) { free(h->data); }

static void watch_end(watch_t *w) {
  if (w->stopped) return;
  w->stopped = 1;
  uv_poll_stop(&w->poll);
  napi_delete_reference(w->env, w->callback);
  napi_async_destroy(w->env, w->context);
  uv_close((uv_handle_t *)&w->poll, watch_closed);
}

static void watch_fired(uv_poll_t *p, int status, int events) {
  (void)status;
  (void)events;
  watch_t *w = p->data;
  if (w->stopped) return;
  napi_env env = w->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value callback, global, result;
  if (napi_get_reference_value(env, w->callback, &callback) == napi_ok && napi_get_global(env, &global) == napi_ok) {
    if (napi_make_callback(env, w->context, global, callback, 0, NULL, &result) == napi_pending_exception) {
      napi_value e;
      napi_get_and_clear_last_exception(env, &e);
      napi_fatal_exception(env, e);
    }
  }
  napi_close_handle_scope(env, scope);
}

static napi_value watch_stop(napi_env env, napi_callback_info info) {
  void *data;
  napi_get_cb_info(env, info, NULL, NULL, NULL, &data);
  watch_end(data);
  return NULL;
}

static napi_value watch_readable(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd = -1;
  uv_loop_t *loop;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, NULL, "watchReadable(fd, callback)");
    return NULL;
  }
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return NULL;
  watch_t *w = calloc(1, sizeof *w);
  if (!w) {
    napi_throw_error(env, NULL, "watchReadable: out of memory");
    return NULL;
  }
  w->env = env;
  w->poll.data = w;
  // libuv makes the descriptor non-blocking, and that flag belongs to the open file, which
  // others share (the supervisor's serving thread, a daemon taking the connection over): their
  // read(2) must keep waiting for a request rather than fail with EAGAIN, so it is put back.
  int flags = fcntl(fd, F_GETFL);
  int err = uv_poll_init(loop, &w->poll, fd);
  if (err) {
    free(w);
    napi_throw_error(env, uv_err_name(err), uv_strerror(err));
    return NULL;
  }
  if (flags >= 0 && !(flags & O_NONBLOCK)) fcntl(fd, F_SETFL, flags);
  napi_value name;
  napi_create_reference(env, argv[1], 1, &w->callback);
  napi_create_string_utf8(env, "procview:readable", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &w->context);
  uv_poll_start(&w->poll, UV_READABLE, watch_fired);
  napi_value stop;
  napi_create_function(env, "stop", NAPI_AUTO_LENGTH, watch_stop, w, &stop);
  return stop;
}

// readable(fd): whether fd is readable now (poll(2), no waiting).
static napi_value readable(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  int32_t fd = -1;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, NULL, "readable(fd)");
    return NULL;
  }
  struct pollfd p = {.fd = fd, .events = POLLIN};
  int r;
  do r = poll(&p, 1, 0);
  while (r < 0 && errno == EINTR);
  napi_get_boolean(env, r == 1 && (p.revents & POLLIN), &out);
  return out;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "mapShared", NAPI_AUTO_LENGTH, map_shared, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "mapShared", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "memfdCreate", NAPI_AUTO_LENGTH, memfd, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "memfdCreate", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "sendFds", NAPI_AUTO_LENGTH, send_fds, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "sendFds", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "recvFds", NAPI_AUTO_LENGTH, recv_fds, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "recvFds", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "mallocTrim", NAPI_AUTO_LENGTH, malloc_trim_, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "mallocTrim", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "watchReadable", NAPI_AUTO_LENGTH, watch_readable, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "watchReadable", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "readable", NAPI_AUTO_LENGTH, readable, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "readable", fn) != napi_ok) return NULL;
  return exports;
}
