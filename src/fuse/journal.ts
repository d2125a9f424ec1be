// The one-request journal, for kernels that cannot resend (FUSE before 7.40, Linux before
// 6.9). A serving loop handles one request at a time. When it dies with a request read but
// unanswered, such a kernel waits for that reply forever (the reader sleeps in
// request_wait_answer and never wakes); its successor answers it from the journal first.
//
// The journal is a file the supervisor creates and hands to every serving process. Where
// the native helper is built (build/Release/shared_map.node), it is a memory file, and the
// loop reads each request from /dev/fuse straight into a shared mapping of it: the read(2)
// itself journals it, so a kill at any instruction after the read leaves the whole request behind.
// Without the helper, the loop copies each request to the file after reading it, which
// leaves a window of a few microseconds in which a kill loses the request (and hangs its
// reader); serve says so at start.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/** Bytes before the request: the u32 count of successors that started replaying it. */
const HEADER = 8;

interface SharedMap {
  mapShared(fd: number, length: number): ArrayBuffer;
  memfdCreate(name: string): number;
}

let helper: SharedMap | undefined | null;
/**
 * The native helper, or undefined when it was not built (loaded once), or when
 * PROCVIEW_NO_NATIVE=1 asks to run as if it were not (to tell its part in a problem).
 */
export function sharedMapHelper(): SharedMap | undefined {
  if (helper === undefined && process.env.PROCVIEW_NO_NATIVE === "1") helper = null;
  if (helper === undefined) {
    try {
      // dist/src/fuse/journal.js -> build/Release at the package root
      const module = { exports: {} as SharedMap };
      process.dlopen(module, path.join(__dirname, "..", "..", "..", "build", "Release", "shared_map.node"));
      helper = module.exports;
    } catch {
      helper = null;
    }
  }
  return helper ?? undefined;
}

/** The journal file's size for requests of up to `requestSize` bytes. */
export function journalSize(requestSize: number): number {
  return HEADER + requestSize;
}

/**
 * The journal file of `size` bytes, for the supervisor to hold and hand down: an anonymous
 * memory file with the helper (shmem: never written back to a disk, so a write into its
 * mapping never waits on one), else an unlinked file in the temporary directory.
 */
export function openJournalFile(size: number): number {
  const map = sharedMapHelper();
  let fd: number;
  if (map) fd = map.memfdCreate("procview-journal");
  else {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "procview-journal-"));
    fd = fs.openSync(path.join(dir, "journal"), "w+", 0o600);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  fs.ftruncateSync(fd, size);
  return fd;
}

export class Journal {
  /** Where read(2) puts each request: the journal itself when mapped. */
  readonly request: Buffer;
  readonly mapped: boolean;
  private readonly all: Buffer;

  constructor(
    private readonly fd: number,
    requestSize: number,
  ) {
    const map = sharedMapHelper();
    this.mapped = map !== undefined;
    if (map) {
      this.all = Buffer.from(map.mapShared(fd, journalSize(requestSize)));
      // Touch every page now, keeping its bytes: a page first written by read(2) faults inside
      // the kernel's copy, and a kill at that moment fails the request (EIO to its reader).
      for (let at = 0; at < this.all.length; at += 4096) this.all[at] |= 0;
    } else {
      this.all = Buffer.alloc(journalSize(requestSize));
      fs.readSync(fd, this.all, 0, this.all.length, 0);
    }
    this.request = this.all.subarray(HEADER);
  }

  /**
   * What a predecessor read and never marked answered, if anything, and how many successors
   * started on it without being killed from outside (this one counted): a predecessor killed
   * by the OOM killer or an operator (`priorFailed` false) says nothing against the request,
   * and its own count is taken back. The request's own header gives its length.
   */
  pending(headerSize: number, priorFailed: boolean): { request: Buffer; attempts: number } | undefined {
    const len = this.request.readUInt32LE(0);
    if (len < headerSize || len > this.request.length) return undefined;
    const before = this.all.readUInt32LE(0);
    const attempts = (priorFailed ? before : Math.max(0, before - 1)) + 1;
    this.all.writeUInt32LE(attempts, 0);
    if (!this.mapped) fs.writeSync(this.fd, this.all, 0, 4, 0);
    return { request: this.request.subarray(0, len), attempts };
  }

  /** A request of `n` bytes was read into `request`: copied to the file when not mapped. */
  recorded(n: number): void {
    if (this.mapped) return;
    this.all.writeUInt32LE(0, 0);
    fs.writeSync(this.fd, this.all, 0, HEADER + n, 0);
  }

  /**
   * The request was answered: nothing for a successor to replay. Only the mapping is marked;
   * without it, a replay of an answered request only earns ENOENT for the second reply.
   */
  answered(): void {
    if (!this.mapped) return;
    this.request.writeUInt32LE(0, 0);
    this.all.writeUInt32LE(0, 0);
  }
}
