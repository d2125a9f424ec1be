// Two functions Node lacks, for the crash journal (src/fuse/journal.ts): create an anonymous
// memory file (memfd_create: shmem, never written back to a disk) and map a file MAP_SHARED
// into an ArrayBuffer. The serving loop reads each FUSE request from /dev/fuse straight into
// such a mapping, so the request is journalled by the read(2) itself: a serving process
// killed at any instruction after the read leaves the whole request behind for its successor.
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <node_api.h>

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

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "mapShared", NAPI_AUTO_LENGTH, map_shared, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "mapShared", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "memfdCreate", NAPI_AUTO_LENGTH, memfd, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "memfdCreate", fn) != napi_ok) return NULL;
  return exports;
}
