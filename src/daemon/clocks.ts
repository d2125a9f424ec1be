// The containers' CPU clocks (views/stat: what each container's /proc/stat showed last), kept
// where a serving process's death does not lose them: a memory file the supervisor holds,
// mapped shared into every serving process with the native helper (fuse/journal). The
// supervisor saves the file to its state directory when it stops and loads it when it
// starts, so a restart or an upgrade carries the clocks on too. Without the helper they live
// in the serving process only, and a successor starts each clock afresh.
import * as fs from "node:fs";
import { sharedMapHelper } from "../fuse/journal";
import { writeStateRecord } from "../mounts/layout";
import { parseCpuList } from "../cgroup/reader";
import type { CpuUsage } from "../cgroup/types";
import { type CpuClock, cpuTimes } from "../views/stat";

export interface ClockStore {
  get(key: string): CpuClock | undefined;
  set(key: string, clock: CpuClock): void;
}

/** Clocks kept: one per container read lately; the least recently read goes first. */
export const MAX_CLOCKS = 1024;

/** The serving process's own clocks (no helper, or a clock too wide for a slot). */
export class LocalClocks implements ClockStore {
  private readonly clocks = new Map<string, CpuClock>();
  get(key: string): CpuClock | undefined {
    return this.clocks.get(key);
  }
  set(key: string, clock: CpuClock): void {
    // Most recently read last: the oldest goes first when there are too many.
    this.clocks.delete(key);
    this.clocks.set(key, clock);
    if (this.clocks.size > MAX_CLOCKS) this.clocks.delete(this.clocks.keys().next().value as string);
  }
}

const MAGIC = 0x70766331; // "pvc1"
const HEADER = 16; // magic, slot count, host CPUs, reserved (u32 each)

/** Float64 offsets within a slot for `h` host CPUs. */
function slotLayout(h: number) {
  return {
    hash: 0,
    lastUse: 1,
    elapsed: 2,
    labels: 3,
    perHost: 4,
    user: 5,
    system: 6,
    hostUsage: 7,
    total: 7 + 2 * h,
    times: 10 + 2 * h,
    debt: 10 + 5 * h,
    size: 10 + 6 * h,
  };
}

/** Bytes of a clock file for `hostCpus` CPUs. */
export function clocksFileSize(hostCpus: number): number {
  return HEADER + MAX_CLOCKS * slotLayout(hostCpus).size * 8;
}

/** The host's possible CPUs: the widest per-CPU usage a cgroup reports. */
export function possibleCpus(): number {
  return Math.max(...parseCpuList(fs.readFileSync("/sys/devices/system/cpu/possible", "utf8"))) + 1;
}

/** A 53-bit hash of the key (cyrb53); never 0, which marks a free slot. */
function hash(key: string): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0) || 1;
}

/** Clocks in slots of a shared mapping: what one serving process writes, its successor reads. */
export class SharedClocks implements ClockStore {
  private readonly f: Float64Array;
  private readonly at: ReturnType<typeof slotLayout>;
  private readonly slots = new Map<number, number>();
  private readonly wide = new LocalClocks();

  constructor(
    memory: ArrayBuffer,
    private readonly hostCpus: number,
  ) {
    const head = new Uint32Array(memory, 0, HEADER / 4);
    this.at = slotLayout(hostCpus);
    this.f = new Float64Array(memory, HEADER, MAX_CLOCKS * this.at.size);
    if (head[0] !== MAGIC || head[1] !== MAX_CLOCKS || head[2] !== hostCpus) {
      // New, or laid out for another host: start empty.
      this.f.fill(0);
      head.set([MAGIC, MAX_CLOCKS, hostCpus, 0]);
    }
    for (let s = 0; s < MAX_CLOCKS; s++) {
      const h = this.f[s * this.at.size + this.at.hash];
      if (h) this.slots.set(h, s);
    }
  }

  /**
   * The slot holding `h`. What this process remembers is checked against the mapping, and a
   * miss looks again: a standby started long before its promotion, and the predecessor kept
   * creating (and recycling) slots meanwhile.
   */
  private slotOf(h: number): number | undefined {
    const { f, at } = this;
    const s = this.slots.get(h);
    if (s !== undefined && f[s * at.size + at.hash] === h) return s;
    this.slots.delete(h);
    for (let i = 0; i < MAX_CLOCKS; i++)
      if (f[i * at.size + at.hash] === h) {
        this.slots.set(h, i);
        return i;
      }
    return undefined;
  }

  get(key: string): CpuClock | undefined {
    const kept = this.wide.get(key);
    if (kept) return kept;
    const s = this.slotOf(hash(key));
    if (s === undefined) return undefined;
    const { f, at } = this;
    const b = s * at.size;
    const labels = f[b + at.labels];
    const perHost = f[b + at.perHost];
    const usage: CpuUsage = {
      userNs: f[b + at.user],
      systemNs: f[b + at.system],
      perCpu: perHost
        ? Array.from({ length: perHost }, (_, i) => ({ userNs: f[b + at.hostUsage + 2 * i], systemNs: f[b + at.hostUsage + 2 * i + 1] }))
        : null,
    };
    return {
      elapsed: f[b + at.elapsed],
      usage,
      total: cpuTimes(f[b + at.total], f[b + at.total + 1], f[b + at.total + 2]),
      perCpu: Array.from({ length: labels }, (_, i) =>
        cpuTimes(f[b + at.times + 3 * i], f[b + at.times + 3 * i + 1], f[b + at.times + 3 * i + 2]),
      ),
      debt: Array.from({ length: labels }, (_, i) => f[b + at.debt + i]),
    };
  }

  set(key: string, clock: CpuClock): void {
    const h = hash(key);
    if (clock.perCpu.length > this.hostCpus || (clock.usage.perCpu?.length ?? 0) > this.hostCpus) {
      this.wide.set(key, clock);
      return;
    }
    const { f, at } = this;
    let s = this.slotOf(h);
    if (s === undefined) {
      s = this.freeSlot();
      const old = f[s * at.size + at.hash];
      if (old) this.slots.delete(old);
      this.slots.set(h, s);
      f.fill(0, s * at.size, (s + 1) * at.size);
    }
    // In place: a kill halfway leaves each figure old or new, and either only grows, so a
    // successor's next read can only move forward from it.
    const b = s * at.size;
    f[b + at.lastUse] = Date.now();
    f[b + at.elapsed] = clock.elapsed;
    f[b + at.labels] = clock.perCpu.length;
    f[b + at.perHost] = clock.usage.perCpu?.length ?? 0;
    f[b + at.user] = clock.usage.userNs;
    f[b + at.system] = clock.usage.systemNs;
    clock.usage.perCpu?.forEach((u, i) => {
      f[b + at.hostUsage + 2 * i] = u.userNs;
      f[b + at.hostUsage + 2 * i + 1] = u.systemNs;
    });
    f.set([clock.total.user, clock.total.system, clock.total.idle], b + at.total);
    clock.perCpu.forEach((t, i) => f.set([t.user, t.system, t.idle], b + at.times + 3 * i));
    clock.debt.forEach((d, i) => (f[b + at.debt + i] = d));
    // Last: a new slot counts once its hash is there (a kill before leaves it free).
    f[b + at.hash] = h;
  }

  /** A free slot, else the least recently used one. */
  private freeSlot(): number {
    let oldest = 0;
    for (let s = 0; s < MAX_CLOCKS; s++) {
      const b = s * this.at.size;
      if (!this.f[b + this.at.hash]) return s;
      if (this.f[b + this.at.lastUse] < this.f[oldest * this.at.size + this.at.lastUse]) oldest = s;
    }
    return oldest;
  }
}

/**
 * The supervisor's clock file: a memory file (undefined without the helper), filled from
 * `saved` when that was written for a host of the same width.
 */
export function openClocksFile(hostCpus: number, saved: string): number | undefined {
  const map = sharedMapHelper();
  if (!map) return undefined;
  const fd = map.memfdCreate("procview-clocks");
  const size = clocksFileSize(hostCpus);
  fs.ftruncateSync(fd, size);
  try {
    const data = fs.readFileSync(saved);
    if (data.length === size) fs.writeSync(fd, data, 0, size, 0);
  } catch {
    // none saved yet
  }
  return fd;
}

/** Saves the clock file where the next daemon finds it (root-only state directory). */
export function saveClocksFile(fd: number, hostCpus: number, file: string): void {
  const data = Buffer.alloc(clocksFileSize(hostCpus));
  fs.readSync(fd, data, 0, data.length, 0);
  writeStateRecord(file, data);
}

/** The serving process's store: the shared file when it was handed down, else its own. */
export function clockStore(fd: number | undefined, hostCpus: number): ClockStore {
  const map = sharedMapHelper();
  if (fd === undefined || !map) return new LocalClocks();
  return new SharedClocks(map.mapShared(fd, clocksFileSize(hostCpus)), hostCpus);
}
