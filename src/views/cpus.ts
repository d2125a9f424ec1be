import type { CpuLimits } from "../cgroup/types";

/**
 * The host CPUs a container is shown, in order: its effective cpuset (or every online CPU),
 * cut to ceil(quota) CPUs when a CFS quota applies and the quota view is on. Never empty.
 */
export function visibleCpus(hostOnline: readonly number[], limits: CpuLimits, useQuota: boolean): number[] {
  const inSet = limits.cpuset ? limits.cpuset.filter((c) => hostOnline.includes(c)) : [...hostOnline];
  const pool = inSet.length > 0 ? inSet : [...hostOnline];
  let n = pool.length;
  // A tiny epsilon so that a quota of exactly 2 CPUs (200000/100000) does not become 3.
  if (useQuota && limits.quota !== null) n = Math.min(n, Math.max(1, Math.ceil(limits.quota - 1e-9)));
  return pool.slice(0, Math.max(1, n));
}

/** How much of each shown CPU the container may use: 0.5 for a half-CPU quota on one CPU. */
export function cpuShare(visible: number, limits: CpuLimits, useQuota: boolean): number {
  if (!useQuota || limits.quota === null || visible === 0) return 1;
  return Math.min(1, limits.quota / visible);
}

/** "0-3" style list for N CPUs numbered from 0, as in /sys/devices/system/cpu/online. */
export function renderCpuRange(n: number): string {
  return n <= 1 ? "0\n" : `0-${n - 1}\n`;
}
