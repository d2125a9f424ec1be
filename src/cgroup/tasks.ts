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
export function sampleTasks(dir: string, procRoot = "/proc"): TaskSample | undefined {
  const list = readOrUndefined(`${dir}/tasks`) ?? readOrUndefined(`${dir}/cgroup.threads`);
  if (list === undefined) return undefined;
  const tids = list.split("\n").filter(Boolean).map(Number);
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
  let lastPid = 0;
  if (newest > 0) {
    const nspid = /^NSpid:\s+(.*)$/m.exec(readOrUndefined(`${procRoot}/${newest}/status`) ?? "")?.[1];
    lastPid = Number(nspid?.trim().split(/\s+/).pop() ?? 0) || 0;
  }
  return { running, uninterruptible, total, lastPid };
}
