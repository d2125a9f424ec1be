// One server loop over /dev/fuse: read a request, look its opcode up in the table,
// write one reply. Runs in a worker thread that blocks in read(2) on the descriptor.
import * as fs from "node:fs";
import { constants as C } from "node:os";
import type { Caller, FileSystem } from "./fs";
import { Journal, journalSize } from "./journal";
import * as P from "./protocol";

const E = C.errno;
// A reply body length, an errno to send as a negative error, or no reply at all.
const NO_REPLY = -1;
type Result = number | { errno: number } | typeof NO_REPLY;

interface Ctx {
  nodeid: number;
  caller: Caller;
  body: Buffer;
  out: Buffer; // reply body area, after the out header
}

type Handler = (ctx: Ctx) => Result;
interface Row {
  name: string;
  handler: Handler;
}

/**
 * Tells the kernel to resend what an earlier server on this connection read but never
 * answered. Harmless when there is nothing to resend; refused (ignored) by kernels before 7.40.
 */
export function requestResend(fd: number): boolean {
  const buf = Buffer.alloc(P.OUT_HEADER_SIZE);
  P.encodeNotifyResend(buf);
  try {
    fs.writeSync(fd, buf, 0, P.OUT_HEADER_SIZE);
    return true;
  } catch {
    return false;
  }
}

const O_ACCMODE = 3;
const MAX_PAGES = 32;
const MAX_READ = MAX_PAGES * 4096;
// The kernel refuses read buffers smaller than this (FUSE_MIN_READ_BUFFER).
const IN_BUFFER_SIZE = 8192 + MAX_READ + P.IN_HEADER_SIZE;

function err(errno: number): { errno: number } {
  return { errno };
}

/** Builds the opcode table: one row per opcode this read-only filesystem answers. */
function buildTable(f: FileSystem, onData: (data: Buffer) => void): Map<number, Row> {
  const denied: Handler = () => err(E.EACCES);
  const rows: [number, string, Handler][] = [
    [
      P.Opcode.INIT,
      "INIT",
      (ctx) => {
        const init = P.decodeInit(ctx.body);
        if (init.major !== P.KERNEL_MAJOR) return err(E.EPROTO);
        const wanted = P.InitFlag.ASYNC_READ | P.InitFlag.PARALLEL_DIROPS | P.InitFlag.MAX_PAGES;
        return P.encodeInitOut(ctx.out, {
          minor: Math.min(init.minor, P.KERNEL_MINOR),
          maxReadahead: init.maxReadahead,
          flags: init.flags & wanted,
          maxWrite: 4096,
          maxPages: MAX_PAGES,
        });
      },
    ],
    [
      P.Opcode.LOOKUP,
      "LOOKUP",
      (ctx) => {
        const r = f.lookup(ctx.nodeid, P.decodeName(ctx.body), ctx.caller);
        return typeof r === "number" ? err(r) : P.encodeEntryOut(ctx.out, r.attr.ino, r.attr, r.entryValid, r.attrValid);
      },
    ],
    [
      P.Opcode.GETATTR,
      "GETATTR",
      (ctx) => {
        const r = f.getattr(ctx.nodeid, ctx.caller);
        return typeof r === "number" ? err(r) : P.encodeAttrOut(ctx.out, r.attr, r.attrValid);
      },
    ],
    [
      P.Opcode.READLINK,
      "READLINK",
      (ctx) => {
        const r = f.readlink(ctx.nodeid, ctx.caller);
        return typeof r === "number" ? err(r) : ctx.out.write(r, 0, "utf8");
      },
    ],
    [
      P.Opcode.OPEN,
      "OPEN",
      (ctx) => {
        const { flags } = P.decodeOpen(ctx.body);
        // Read-only filesystem: refuse write access up front, whoever asks.
        if ((flags & O_ACCMODE) !== fs.constants.O_RDONLY || flags & fs.constants.O_TRUNC) return err(E.EACCES);
        const r = f.open(ctx.nodeid, flags, ctx.caller);
        return typeof r === "number" ? err(r) : P.encodeOpenOut(ctx.out, r.fh, r.directIo ? P.FOPEN_DIRECT_IO : 0);
      },
    ],
    [
      P.Opcode.READ,
      "READ",
      (ctx) => {
        const rd = P.decodeRead(ctx.body);
        const r = f.read(ctx.nodeid, rd.fh, rd.offset, Math.min(rd.size, MAX_READ), ctx.caller);
        if (typeof r === "number") return err(r);
        // Text goes straight into the reply buffer; bytes are written beside it.
        if (typeof r === "string") return ctx.out.write(r, 0, "latin1");
        onData(r);
        return 0;
      },
    ],
    [
      P.Opcode.RELEASE,
      "RELEASE",
      (ctx) => {
        f.release(ctx.nodeid, P.decodeRelease(ctx.body).fh);
        return 0;
      },
    ],
    [
      P.Opcode.OPENDIR,
      "OPENDIR",
      (ctx) => {
        const r = f.getattr(ctx.nodeid, ctx.caller);
        if (typeof r === "number") return err(r);
        return (r.attr.mode & 0o170000) === P.S_IFDIR ? P.encodeOpenOut(ctx.out, 0, 0) : err(E.ENOTDIR);
      },
    ],
    [
      P.Opcode.READDIR,
      "READDIR",
      (ctx) => {
        const rd = P.decodeRead(ctx.body);
        const r = f.readdir(ctx.nodeid, ctx.caller);
        if (typeof r === "number") return err(r);
        return P.encodeDirents(ctx.out, r, rd.offset, Math.min(rd.size, ctx.out.length));
      },
    ],
    [P.Opcode.RELEASEDIR, "RELEASEDIR", () => 0],
    [P.Opcode.STATFS, "STATFS", (ctx) => P.encodeStatfsOut(ctx.out, f.fileCount())],
    [
      P.Opcode.FORGET,
      "FORGET",
      (ctx) => {
        f.forget(ctx.nodeid, P.readU64(ctx.body, 0));
        return NO_REPLY;
      },
    ],
    [
      P.Opcode.BATCH_FORGET,
      "BATCH_FORGET",
      (ctx) => {
        const count = ctx.body.readUInt32LE(0);
        for (let i = 0; i < count; i++) {
          const at = 8 + i * 16; // fuse_batch_forget_in, then fuse_forget_one[count]
          f.forget(P.readU64(ctx.body, at), P.readU64(ctx.body, at + 8));
        }
        return NO_REPLY;
      },
    ],
    // Requests are answered synchronously, so an interrupt always names one already done.
    [P.Opcode.INTERRUPT, "INTERRUPT", () => NO_REPLY],
    [P.Opcode.DESTROY, "DESTROY", () => 0],
    // Anything that would change the tree is a permission error, not "not implemented".
    [P.Opcode.SETATTR, "SETATTR", denied],
    [P.Opcode.WRITE, "WRITE", denied],
    [P.Opcode.CREATE, "CREATE", denied],
    [P.Opcode.MKNOD, "MKNOD", denied],
    [P.Opcode.MKDIR, "MKDIR", denied],
    [P.Opcode.UNLINK, "UNLINK", denied],
    [P.Opcode.RMDIR, "RMDIR", denied],
    [P.Opcode.RENAME, "RENAME", denied],
    [P.Opcode.RENAME2, "RENAME2", denied],
    [P.Opcode.LINK, "LINK", denied],
    [P.Opcode.SYMLINK, "SYMLINK", denied],
    [P.Opcode.SETXATTR, "SETXATTR", denied],
    [P.Opcode.REMOVEXATTR, "REMOVEXATTR", denied],
    [P.Opcode.TMPFILE, "TMPFILE", denied],
  ];
  return new Map(rows.map(([op, name, handler]) => [op, { name, handler }]));
}

/** The size of the journal file a supervisor gives its serving processes (see fuse/journal). */
export const JOURNAL_FILE_SIZE = journalSize(IN_BUFFER_SIZE);
/** A journalled request whose replay this many successors did not survive (crashed or hung on it) is refused with EIO. */
const REPLAYS_BEFORE_REFUSING = 2;

/** One mapping of the journal per thread, however often its loop parks and serves again. */
const journals = new Map<number, Journal>();
function journalOn(fd: number): Journal {
  let j = journals.get(fd);
  if (!j) journals.set(fd, (j = new Journal(fd, IN_BUFFER_SIZE)));
  return j;
}

/**
 * One serving process's side of the connection on `fd`. Unknown opcodes get ENOSYS, which the
 * kernel remembers for FLUSH, ACCESS, GETXATTR and friends, so they stop coming. With a
 * journal (kernels that cannot resend), whatever a predecessor left unanswered is answered
 * first (`replay`) and every request is journalled; `priorFailed` says the predecessor crashed
 * or hung rather than being killed from outside.
 */
export class Connection {
  private readonly answer: (request: Buffer, refuse?: number) => boolean;
  private readonly journal?: Journal;
  private readonly req: Buffer;

  constructor(
    private readonly fd: number,
    f: FileSystem,
    private readonly journalOf: { fd?: number; priorFailed: boolean } = { priorFailed: false },
  ) {
    this.answer = answerer(fd, f);
    this.journal = journalOf.fd === undefined ? undefined : journalOn(journalOf.fd);
    this.req = this.journal ? this.journal.request : Buffer.allocUnsafe(IN_BUFFER_SIZE);
  }

  /** Answers what a predecessor left in the journal; false once the filesystem is gone. */
  replay(): boolean {
    const journal = this.journal;
    if (!journal) return true;
    const left = journal.pending(P.IN_HEADER_SIZE, this.journalOf.priorFailed);
    const refuse = left !== undefined && left.attempts > REPLAYS_BEFORE_REFUSING;
    if (refuse) {
      const opcode = left.request.readUInt32LE(4);
      process.stderr.write(
        `${JSON.stringify({ level: 40, msg: "a journalled request took down the serving processes that tried it: answered EIO", opcode, attempts: left.attempts - 1 })}\n`,
      );
    }
    if (left && !this.answer(left.request, refuse ? E.EIO : undefined)) return false;
    journal.answered();
    return true;
  }

  /**
   * Reads one request (waiting for it) and answers it; false once the filesystem is gone
   * (ENODEV). A read the kernel withdrew answers nothing and returns true.
   */
  serveOne(): boolean {
    let n: number;
    try {
      n = fs.readSync(this.fd, this.req, 0, this.req.length, null);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // ENOENT: the request was interrupted before we read it; EINTR/EAGAIN: try again.
      if (code === "ENOENT" || code === "EINTR" || code === "EAGAIN") return true;
      if (code === "ENODEV") return false; // unmounted
      throw e;
    }
    if (n < P.IN_HEADER_SIZE) return true;
    this.journal?.recorded(n);
    if (!this.answer(this.req.subarray(0, n))) return false;
    this.journal?.answered();
    return true;
  }
}

/** Opcodes the kernel expects no reply to. */
const UNANSWERED = new Set<number>([P.Opcode.FORGET, P.Opcode.BATCH_FORGET, P.Opcode.INTERRUPT]);

/** Handles one request and writes its reply; false once the filesystem is gone (ENODEV). */
function answerer(fd: number, f: FileSystem): (request: Buffer, refuse?: number) => boolean {
  const outBuf = Buffer.allocUnsafe(P.OUT_HEADER_SIZE + MAX_READ);
  const header = outBuf.subarray(0, P.OUT_HEADER_SIZE);
  const outBody = outBuf.subarray(P.OUT_HEADER_SIZE);
  let data: Buffer | undefined;
  const table = buildTable(f, (d) => {
    data = d;
  });
  const ctx: Ctx = { nodeid: 0, caller: { pid: 0, uid: 0, gid: 0 }, body: outBody, out: outBody };
  // `refuse`: reply with that errno without handling the request.
  return (inBuf: Buffer, refuse?: number): boolean => {
    const opcode = inBuf.readUInt32LE(4);
    const row = table.get(opcode);
    ctx.nodeid = P.readU64(inBuf, 16);
    // A fresh object: handles keep the opener, and a caller must not change under them.
    ctx.caller = { uid: inBuf.readUInt32LE(24), gid: inBuf.readUInt32LE(28), pid: inBuf.readUInt32LE(32) };
    ctx.body = inBuf.subarray(P.IN_HEADER_SIZE);
    data = undefined;
    let result: Result;
    try {
      if (refuse !== undefined) result = UNANSWERED.has(opcode) ? NO_REPLY : err(refuse);
      else result = row ? row.handler(ctx) : err(E.ENOSYS);
    } catch {
      // A bug in a handler must not take the filesystem down with it.
      result = err(E.EIO);
    }
    if (result === NO_REPLY) return true;
    try {
      if (typeof result === "number") {
        const extra = data ? (data as Buffer).length : 0;
        P.encodeOutHeader(header, P.OUT_HEADER_SIZE + result + extra, 0, inBuf);
        if (data) fs.writevSync(fd, [outBuf.subarray(0, P.OUT_HEADER_SIZE + result), data]);
        else fs.writeSync(fd, outBuf, 0, P.OUT_HEADER_SIZE + result);
      } else {
        P.encodeOutHeader(header, P.OUT_HEADER_SIZE, -result.errno, inBuf);
        fs.writeSync(fd, outBuf, 0, P.OUT_HEADER_SIZE);
      }
    } catch (e) {
      // ENOENT: the kernel dropped the request (interrupted, or answered already) before our reply arrived.
      if ((e as NodeJS.ErrnoException).code === "ENODEV") return false;
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    return true;
  };
}
