// Counts a cgroup's tasks by state, for the load average and procs_running/blocked.
import * as fs from "node:fs";
import { statFields } from "./process";
import type { TaskSample } from "./types";

function readOrUndefined(p: string): string | undefined {
  try {
    return fs.readFileSync(p, "latin1");
  } catch {
    return undefined;
  }
}

/**
 * Samples the threads listed in `dir` (v1 `tasks`, v2 `cgroup.threads`): how many are
 * running (R) or in uninterruptible sleep (D), how many in all, and the newest pid as seen
 * inside the container's pid namespace: the thread started last (stat's starttime), not the
 * highest number, which is wrong once pids wrap. Undefined when the cgroup is gone.
 */
/** The threads listed in a cgroup (v1 `tasks`, v2 `cgroup.threads`); undefined when it is gone. */
function threadsOf(dir: string): number[] | undefined {
  const list = readOrUndefined(`${dir}/tasks`) ?? readOrUndefined(`${dir}/cgroup.threads`);
  return list?.split("\n").filter(Boolean).map(Number);
}

/** A thread's pid as its own pid namespace numbers it (the last NSpid entry); 0 when gone. */
function namespacePid(procRoot: string, tid: number): number {
  const nspid = /^NSpid:\s+(.*)$/m.exec(readOrUndefined(`${procRoot}/${tid}/status`) ?? "")?.[1];
  return Number(nspid?.trim().split(/\s+/).pop() ?? 0) || 0;
}

export function sampleTasks(dir: string, procRoot = "/proc"): TaskSample | undefined {
  const tids = threadsOf(dir);
  if (tids === undefined) return undefined;
  let running = 0;
  let uninterruptible = 0;
  let total = 0;
  let newest = 0;
  let newestStart = -1;
  for (const tid of tids) {
    const stat = readOrUndefined(`${procRoot}/${tid}/stat`);
    if (stat === undefined) continue; // exited since the list was read
    total++;
    const f = statFields(stat);
    if (f[0] === "R") running++;
    else if (f[0] === "D") uninterruptible++;
    // Field 22, starttime, in clock ticks since boot; equal starts: the later-numbered thread.
    const start = Number(f[19]);
    if (start > newestStart || (start === newestStart && tid > newest)) [newest, newestStart] = [tid, start];
  }
  return { running, uninterruptible, total, lastPid: newest > 0 ? namespacePid(procRoot, newest) : 0 };
}

/**
 * A cgroup's thread count and newest thread as they are at each read, kept between reads so a
 * read looks only at threads it has not seen: the list, then stat (and status, for the
 * namespace's pid) of the new ones, usually just the reader itself. Sampling every thread
 * on every read cost time in proportion to the container's threads (a 2.3x slower
 * /proc/loadavg than LXCFS's, and a third of procview's throughput, in `npm run bench`).
 */
export class NewestTasks {
  /** Per cgroup: each thread's start time (clock ticks since boot) at the last read. */
  private readonly starts = new Map<string, Map<number, number>>();
  /** Per cgroup: the newest thread and its pid as its namespace numbers it. */
  private readonly newest = new Map<string, [number, number]>();

  constructor(
    private readonly procRoot = "/proc",
    private readonly maxCgroups = 4096,
  ) {}

  sample(dir: string): { total: number; lastPid: number } | undefined {
    const tids = threadsOf(dir);
    if (tids === undefined) {
      this.starts.delete(dir);
      this.newest.delete(dir);
      return undefined;
    }
    const before = this.starts.get(dir);
    const now = new Map<number, number>();
    let newest = 0;
    let newestStart = -1;
    for (const tid of tids) {
      let start = before?.get(tid);
      if (start === undefined) {
        const stat = readOrUndefined(`${this.procRoot}/${tid}/stat`);
        if (stat === undefined) continue; // exited since the list was read
        start = Number(statFields(stat)[19]);
      }
      now.set(tid, start);
      // Equal starts: the later-numbered thread.
      if (start > newestStart || (start === newestStart && tid > newest)) [newest, newestStart] = [tid, start];
    }
    // Most recently read last: the oldest cgroup goes first when there are too many.
    this.starts.delete(dir);
    this.starts.set(dir, now);
    if (this.starts.size > this.maxCgroups) {
      const oldest = this.starts.keys().next().value as string;
      this.starts.delete(oldest);
      this.newest.delete(oldest);
    }
    let lastPid = 0;
    const known = this.newest.get(dir);
    if (known && known[0] === newest) lastPid = known[1];
    else if (newest > 0) {
      lastPid = namespacePid(this.procRoot, newest);
      this.newest.set(dir, [newest, lastPid]);
    }
    return { total: now.size, lastPid };
  }
}
