// The small filesystem interface the server loop drives. An implementation answers
// with a value, or with a positive errno number; it never sees the wire format.
import type { Attr, DirEntry } from "./protocol";

/** The process on whose behalf the kernel sent a request (from the request header). */
export interface Caller {
  pid: number;
  uid: number;
  gid: number;
}

export interface Entry {
  attr: Attr;
  /** Seconds the kernel may cache the name -> inode binding (0: ask again every time). */
  entryValid: number;
  attrValid: number;
}

export interface Opened {
  fh: number;
  /** Bypass the page cache so that st_size 0 does not hide the content. */
  directIo: boolean;
}

export type Errno = number;

export interface FileSystem {
  lookup(parent: number, name: string, caller: Caller): Entry | Errno;
  getattr(ino: number, caller: Caller): Entry | Errno;
  readlink(ino: number, caller: Caller): string | Errno;
  open(ino: number, flags: number, caller: Caller): Opened | Errno;
  /** At most `size` bytes from `offset`: bytes, or Latin-1 text (one byte per character). */
  read(ino: number, fh: number, offset: number, size: number, caller: Caller): string | Buffer | Errno;
  release(ino: number, fh: number): void;
  readdir(ino: number, caller: Caller): readonly DirEntry[] | Errno;
  forget(ino: number, nlookup: number): void;
  /** Number of inodes, for statfs. */
  fileCount(): number;
}
