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
 * inside the container's pid namespace. Undefined when the cgroup is gone.
 */
export function sampleTasks(dir: string, procRoot = "/proc"): TaskSample | undefined {
  const list = readOrUndefined(`${dir}/tasks`) ?? readOrUndefined(`${dir}/cgroup.threads`);
  if (list === undefined) return undefined;
  const tids = list.split("\n").filter(Boolean).map(Number);
  let running = 0;
  let uninterruptible = 0;
  let maxTid = 0;
  for (const tid of tids) {
    const stat = readOrUndefined(`${procRoot}/${tid}/stat`);
    if (stat === undefined) continue;
    const state = statFields(stat)[0];
    if (state === "R") running++;
    else if (state === "D") uninterruptible++;
    if (tid > maxTid) maxTid = tid;
  }
  let lastPid = 0;
  if (maxTid > 0) {
    const nspid = /^NSpid:\s+(.*)$/m.exec(readOrUndefined(`${procRoot}/${maxTid}/status`) ?? "")?.[1];
    lastPid = Number(nspid?.trim().split(/\s+/).pop() ?? 0) || 0;
  }
  return { running, uninterruptible, total: tids.length, lastPid };
}
