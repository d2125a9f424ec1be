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

/** The list of threads in a cgroup (v1 `tasks`, v2 `cgroup.threads`); undefined when it is gone. */
function threadList(dir: string, read = readOrUndefined, v2 = false): string | undefined {
  const [first, second] = v2 ? ["cgroup.threads", "tasks"] : ["tasks", "cgroup.threads"];
  return read(`${dir}/${first}`) ?? read(`${dir}/${second}`);
}

function tidsIn(list: string): number[] {
  return list.split("\n").filter(Boolean).map(Number);
}

/** A thread's pid as its own pid namespace numbers it (the last NSpid entry); 0 when gone. */
function namespacePid(procRoot: string, tid: number): number {
  const nspid = /^NSpid:\s+(.*)$/m.exec(readOrUndefined(`${procRoot}/${tid}/status`) ?? "")?.[1];
  return Number(nspid?.trim().split(/\s+/).pop() ?? 0) || 0;
}

/**
 * Samples the threads listed in `dir` (v1 `tasks`, v2 `cgroup.threads`): how many are
 * running (R) or in uninterruptible sleep (D), how many in all, and the newest pid as seen
 * inside the container's pid namespace: the thread started last (stat's starttime), not the
 * highest number, which is wrong once pids wrap. Undefined when the cgroup is gone.
 */
export function sampleTasks(dir: string, procRoot = "/proc"): TaskSample | undefined {
  const list = threadList(dir);
  if (list === undefined) return undefined;
  const tids = tidsIn(list);
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
  /**
   * Per cgroup, most recently read last: its list at the last read, each listed thread's
   * start time (clock ticks since boot), and what that read found.
   */
  private readonly seen = new Map<string, { list?: string; starts: Map<number, number>; newest: number; total: number; lastPid: number }>();

  /**
   * `readList` reads the cgroup's list: the serving thread passes its kept descriptors, as a
   * pread of one costs a fifth of an open, read and close.
   */
  constructor(
    private readonly procRoot = "/proc",
    private readonly maxCgroups = 4096,
    private readonly readList: (path: string) => string | undefined = readOrUndefined,
  ) {}

  /** `v2`: a cgroup v2 directory, whose list is `cgroup.threads` (looked for first). */
  sample(dir: string, v2 = false): { total: number; lastPid: number } | undefined {
    const list = threadList(dir, this.readList, v2);
    const before = this.seen.get(dir);
    this.seen.delete(dir);
    if (list === undefined) return undefined;
    // The same list as last time, every thread of it seen then: the same answer.
    if (before?.list === list) {
      this.seen.set(dir, before);
      return { total: before.total, lastPid: before.lastPid };
    }
    const tids = tidsIn(list);
    const starts = new Map<number, number>();
    let newest = 0;
    let newestStart = -1;
    for (const tid of tids) {
      let start = before?.starts.get(tid);
      if (start === undefined) {
        const stat = readOrUndefined(`${this.procRoot}/${tid}/stat`);
        if (stat === undefined) continue; // exited since the list was read
        start = Number(statFields(stat)[19]);
      }
      starts.set(tid, start);
      // Equal starts: the later-numbered thread.
      if (start > newestStart || (start === newestStart && tid > newest)) [newest, newestStart] = [tid, start];
    }
    const lastPid = before && before.newest === newest ? before.lastPid : newest > 0 ? namespacePid(this.procRoot, newest) : 0;
    // A thread listed but already gone is looked for again next time: no answer is kept for this list.
    this.seen.set(dir, { list: starts.size === tids.length ? list : undefined, starts, newest, total: starts.size, lastPid });
    if (this.seen.size > this.maxCgroups) this.seen.delete(this.seen.keys().next().value as string);
    return { total: starts.size, lastPid };
  }
}
