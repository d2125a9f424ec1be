// Reads small kernel files on descriptors kept open: pread at offset 0 re-generates a
// cgroupfs or procfs file for 4-6 us, where open+read+close costs 18-44 us.
import * as fs from "node:fs";

/** How often, and after how long unread, kept descriptors are checked for a file that is gone. */
export const SWEEP_MS = 30_000;

export class KeptFiles {
  // Map keeps insertion order, which we use as least-recently-used order.
  private readonly fds = new Map<string, number>();
  /** When each path was last read. */
  private readonly used = new Map<string, number>();
  private buf = Buffer.allocUnsafe(16384);
  private swept: number;

  constructor(
    private readonly max = 4096,
    private readonly now: () => number = Date.now,
  ) {
    this.swept = now();
  }

  /**
   * Closes the descriptors of files that are gone (a removed cgroup: ENODEV; an exited
   * process: ESRCH) among those unread for SWEEP_MS, at most once per SWEEP_MS. Without it, a
   * node that runs many short-lived containers keeps up to `max` dead descriptors (and their
   * kernel objects) for good. Cheap to call often: the serving loop calls it after every request.
   * Returns how many were closed.
   */
  sweep(): number {
    const t = this.now();
    if (t - this.swept < SWEEP_MS) return 0;
    this.swept = t;
    const probe = Buffer.allocUnsafe(1);
    let closed = 0;
    for (const [path, fd] of this.fds) {
      if (t - (this.used.get(path) ?? 0) < SWEEP_MS) continue;
      try {
        fs.readSync(fd, probe, 0, 1, 0);
      } catch {
        this.drop(path, fd);
        closed++;
      }
    }
    return closed;
  }

  /** The file's whole content, or undefined when it does not exist or cannot be read. */
  read(path: string): string | undefined {
    const kept = this.fds.get(path);
    if (kept !== undefined) {
      const text = this.readAll(kept);
      if (text !== undefined) {
        // Refresh the entry's place in the LRU order.
        this.fds.delete(path);
        this.fds.set(path, kept);
        this.used.set(path, this.now());
        return text;
      }
      // ENODEV (cgroup removed) or ESRCH (process gone): the descriptor is stale.
      this.drop(path, kept);
    }
    let fd: number;
    try {
      fd = fs.openSync(path, fs.constants.O_RDONLY);
    } catch {
      return undefined;
    }
    const text = this.readAll(fd);
    if (text === undefined) {
      fs.closeSync(fd);
      return undefined;
    }
    this.fds.set(path, fd);
    this.used.set(path, this.now());
    if (this.fds.size > this.max) {
      const [oldest, oldFd] = this.fds.entries().next().value as [string, number];
      this.drop(oldest, oldFd);
    }
    return text;
  }

  /** Forgets every descriptor whose path starts with `prefix` (a process that is gone). */
  forget(prefix: string): void {
    for (const [path, fd] of this.fds) if (path.startsWith(prefix)) this.drop(path, fd);
  }

  get size(): number {
    return this.fds.size;
  }

  close(): void {
    for (const [path, fd] of this.fds) this.drop(path, fd);
  }

  private drop(path: string, fd: number): void {
    this.fds.delete(path);
    this.used.delete(path);
    try {
      fs.closeSync(fd);
    } catch {
      // already closed
    }
  }

  private readAll(fd: number): string | undefined {
    let len = 0;
    try {
      for (;;) {
        if (len === this.buf.length) {
          const bigger = Buffer.allocUnsafe(this.buf.length * 2);
          this.buf.copy(bigger, 0, 0, len);
          this.buf = bigger;
        }
        const n = fs.readSync(fd, this.buf, len, this.buf.length - len, len);
        if (n === 0) break;
        len += n;
      }
    } catch {
      return undefined;
    }
    return this.buf.toString("latin1", 0, len);
  }
}
