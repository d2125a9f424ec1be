// The FUSE kernel protocol: the structs of include/uapi/linux/fuse.h that a read-only
// filesystem needs, decoded and encoded in one place. Nothing here knows about /proc.

export const KERNEL_MAJOR = 7;
// Highest minor we speak; the reply to INIT carries min(kernel's, ours).
export const KERNEL_MINOR = 45;

export const Opcode = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  DESTROY: 38,
  IOCTL: 39,
  POLL: 40,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
  COPY_FILE_RANGE: 47,
  TMPFILE: 51,
} as const;

export const IN_HEADER_SIZE = 40;
export const OUT_HEADER_SIZE = 16;
export const ATTR_SIZE = 88;
export const ENTRY_OUT_SIZE = 40 + ATTR_SIZE;
export const ATTR_OUT_SIZE = 16 + ATTR_SIZE;
export const OPEN_OUT_SIZE = 16;
export const STATFS_OUT_SIZE = 80;
export const INIT_OUT_SIZE = 64;
const DIRENT_HEADER_SIZE = 24;

// fuse_open_out.open_flags
export const FOPEN_DIRECT_IO = 1 << 0;
export const FOPEN_KEEP_CACHE = 1 << 1;

// fuse_init_in/out.flags (low word)
export const InitFlag = {
  ASYNC_READ: 1 << 0,
  BIG_WRITES: 1 << 5,
  PARALLEL_DIROPS: 1 << 18,
  MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23,
  INIT_EXT: 1 << 30,
} as const;

export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
// d_type values in fuse_dirent.type
export const DT_DIR = 4;
export const DT_REG = 8;
export const DT_LNK = 10;

export interface InHeader {
  len: number;
  opcode: number;
  unique: bigint;
  nodeid: number;
  uid: number;
  gid: number;
  pid: number;
}

export function decodeInHeader(buf: Buffer): InHeader {
  return {
    len: buf.readUInt32LE(0),
    opcode: buf.readUInt32LE(4),
    unique: buf.readBigUInt64LE(8),
    nodeid: readU64(buf, 16),
    uid: buf.readUInt32LE(24),
    gid: buf.readUInt32LE(28),
    pid: buf.readUInt32LE(32),
  };
}

// Inode numbers and handles stay below 2^53, so plain numbers carry them without BigInt.
export function readU64(buf: Buffer, off: number): number {
  return buf.readUInt32LE(off) + buf.readUInt32LE(off + 4) * 0x100000000;
}
export function writeU64(buf: Buffer, n: number, off: number): void {
  buf.writeUInt32LE(n >>> 0, off);
  buf.writeUInt32LE(Math.floor(n / 0x100000000), off + 4);
}

/** Writes the reply header; `unique` is copied from the request's header bytes as they are. */
export function encodeOutHeader(buf: Buffer, len: number, error: number, request: Buffer): void {
  buf.writeUInt32LE(len, 0);
  buf.writeInt32LE(error, 4);
  request.copy(buf, 8, 8, 16);
}

// ---- request bodies (offsets are relative to the body, after the 40-byte header) ----

export interface InitIn {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: number;
}
export function decodeInit(body: Buffer): InitIn {
  return {
    major: body.readUInt32LE(0),
    minor: body.readUInt32LE(4),
    maxReadahead: body.readUInt32LE(8),
    flags: body.readUInt32LE(12),
  };
}

export interface OpenIn {
  flags: number;
}
export function decodeOpen(body: Buffer): OpenIn {
  return { flags: body.readUInt32LE(0) };
}

export interface ReadIn {
  fh: number;
  offset: number;
  size: number;
}
export function decodeRead(body: Buffer): ReadIn {
  return {
    fh: readU64(body, 0),
    offset: readU64(body, 8),
    size: body.readUInt32LE(16),
  };
}

export interface ReleaseIn {
  fh: number;
}
export function decodeRelease(body: Buffer): ReleaseIn {
  return { fh: readU64(body, 0) };
}

/** A NUL-terminated name, as in LOOKUP. */
export function decodeName(body: Buffer): string {
  const end = body.indexOf(0);
  return body.toString("utf8", 0, end < 0 ? body.length : end);
}

// ---- reply bodies ----

export interface Attr {
  ino: number;
  size: number;
  mode: number;
  nlink: number;
  mtimeSec: number;
  uid?: number;
  gid?: number;
}

function encodeAttr(buf: Buffer, off: number, a: Attr): void {
  writeU64(buf, a.ino, off);
  writeU64(buf, a.size, off + 8);
  writeU64(buf, Math.ceil(a.size / 512), off + 16); // blocks
  writeU64(buf, a.mtimeSec, off + 24); // atime
  writeU64(buf, a.mtimeSec, off + 32); // mtime
  writeU64(buf, a.mtimeSec, off + 40); // ctime
  buf.writeUInt32LE(0, off + 48); // atimensec
  buf.writeUInt32LE(0, off + 52);
  buf.writeUInt32LE(0, off + 56);
  buf.writeUInt32LE(a.mode, off + 60);
  buf.writeUInt32LE(a.nlink, off + 64);
  buf.writeUInt32LE(a.uid ?? 0, off + 68);
  buf.writeUInt32LE(a.gid ?? 0, off + 72);
  buf.writeUInt32LE(0, off + 76); // rdev
  buf.writeUInt32LE(4096, off + 80); // blksize
  buf.writeUInt32LE(0, off + 84); // flags
}

/** Splits seconds into the (u64 seconds, u32 nanoseconds) pair the kernel expects. */
function writeValid(buf: Buffer, secOff: number, nsecOff: number, seconds: number): void {
  const whole = Math.floor(seconds);
  writeU64(buf, whole, secOff);
  buf.writeUInt32LE(Math.round((seconds - whole) * 1e9), nsecOff);
}

export function encodeEntryOut(buf: Buffer, nodeid: number, attr: Attr, entryValid: number, attrValid: number): number {
  writeU64(buf, nodeid, 0);
  writeU64(buf, 0, 8); // generation
  writeValid(buf, 16, 32, entryValid);
  writeValid(buf, 24, 36, attrValid);
  encodeAttr(buf, 40, attr);
  return ENTRY_OUT_SIZE;
}

export function encodeAttrOut(buf: Buffer, attr: Attr, attrValid: number): number {
  writeValid(buf, 0, 8, attrValid);
  buf.writeUInt32LE(0, 12);
  encodeAttr(buf, 16, attr);
  return ATTR_OUT_SIZE;
}

export function encodeOpenOut(buf: Buffer, fh: number, openFlags: number): number {
  writeU64(buf, fh, 0);
  buf.writeUInt32LE(openFlags, 8);
  buf.writeUInt32LE(0, 12);
  return OPEN_OUT_SIZE;
}

export function encodeStatfsOut(buf: Buffer, files: number): number {
  buf.fill(0, 0, STATFS_OUT_SIZE);
  writeU64(buf, files, 24); // files
  buf.writeUInt32LE(4096, 40); // bsize
  buf.writeUInt32LE(255, 44); // namelen
  buf.writeUInt32LE(4096, 48); // frsize
  return STATFS_OUT_SIZE;
}

export interface InitOut {
  minor: number;
  maxReadahead: number;
  flags: number;
  maxWrite: number;
  maxPages: number;
}
export function encodeInitOut(buf: Buffer, o: InitOut): number {
  buf.fill(0, 0, INIT_OUT_SIZE);
  buf.writeUInt32LE(KERNEL_MAJOR, 0);
  buf.writeUInt32LE(o.minor, 4);
  buf.writeUInt32LE(o.maxReadahead, 8);
  buf.writeUInt32LE(o.flags, 12);
  buf.writeUInt16LE(16, 16); // max_background
  buf.writeUInt16LE(12, 18); // congestion_threshold
  buf.writeUInt32LE(o.maxWrite, 20);
  buf.writeUInt32LE(1, 24); // time_gran (ns)
  buf.writeUInt16LE(o.maxPages, 28);
  return INIT_OUT_SIZE;
}

export interface DirEntry {
  ino: number;
  name: string;
  type: number;
}

/**
 * Packs directory entries starting at index `from` into at most `size` bytes.
 * Each entry's `off` is the index of the next one, so the kernel's next READDIR
 * offset is where we resume. Returns the bytes written.
 */
export function encodeDirents(buf: Buffer, entries: readonly DirEntry[], from: number, size: number): number {
  let pos = 0;
  for (let i = from; i < entries.length; i++) {
    const e = entries[i];
    const nameLen = Buffer.byteLength(e.name);
    const recLen = (DIRENT_HEADER_SIZE + nameLen + 7) & ~7;
    if (pos + recLen > size) break;
    writeU64(buf, e.ino, pos);
    writeU64(buf, i + 1, pos + 8);
    buf.writeUInt32LE(nameLen, pos + 16);
    buf.writeUInt32LE(e.type, pos + 20);
    buf.write(e.name, pos + DIRENT_HEADER_SIZE, "utf8");
    buf.fill(0, pos + DIRENT_HEADER_SIZE + nameLen, pos + recLen);
    pos += recLen;
  }
  return pos;
}

// enum fuse_notify_code: asks the kernel to queue again every request a server had read
// but not answered (since 7.40), so those a crashed server took with it are not lost.
export const NOTIFY_RESEND = 7;

/** A notification is an out header with unique 0 and the notification code in the error field. */
export function encodeNotifyResend(buf: Buffer): number {
  buf.writeUInt32LE(OUT_HEADER_SIZE, 0);
  buf.writeInt32LE(NOTIFY_RESEND, 4);
  writeU64(buf, 0, 8);
  return OUT_HEADER_SIZE;
}
