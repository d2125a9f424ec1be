import type { CpuLimits } from "../cgroup/types";
import { parseCpuList } from "../cgroup/reader";

/**
 * The host CPUs a container is shown, in order: its effective cpuset (or every online CPU),
 * cut to ceil(quota) CPUs when a CFS quota applies and the quota view is on. Never empty.
 */
export function visibleCpus(hostOnline: readonly number[], limits: CpuLimits, useQuota: boolean): number[] {
  const inSet = (limits.cpuset ?? hostOnline).filter((c) => hostOnline.includes(c));
  const pool = inSet.length > 0 ? inSet : [...hostOnline];
  let n = pool.length;
  // A tiny epsilon so that a quota of exactly 2 CPUs (200000/100000) does not become 3.
  if (useQuota && limits.quota !== null) n = Math.min(n, Math.max(1, Math.ceil(limits.quota - 1e-9)));
  return pool.slice(0, Math.max(1, n));
}

/** How much of each shown CPU the container may use: 0.5 for a half-CPU quota on one CPU (`visible` >= 1). */
export function cpuShare(visible: number, limits: CpuLimits, useQuota: boolean): number {
  if (!useQuota || limits.quota === null) return 1;
  return Math.min(1, limits.quota / visible);
}

/** "0-3" style list for N CPUs numbered from 0, as in /sys/devices/system/cpu/online. */
export function renderCpuRange(n: number): string {
  return n <= 1 ? "0\n" : `0-${n - 1}\n`;
}

/** A cpu list in the kernel's form: "0-2,4" (empty for none). */
export function formatCpuList(cpus: readonly number[]): string {
  const sorted = [...new Set(cpus)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(",");
}

/** A cpu mask in the kernel's form for `nbits` CPUs: hex, a comma between 32-bit words ("3", "00000001,00000000"). */
export function formatCpuMask(cpus: readonly number[], nbits: number): string {
  const digits = Math.max(1, Math.ceil(nbits / 4));
  const nibbles = new Array<number>(digits).fill(0);
  for (const c of cpus) if (c < digits * 4) nibbles[digits - 1 - Math.floor(c / 4)] |= 1 << (c % 4);
  const hex = nibbles.map((n) => n.toString(16)).join("");
  const words: string[] = [];
  for (let end = hex.length; end > 0; end -= 8) words.unshift(hex.slice(Math.max(0, end - 8), end));
  return words.join(",");
}

/** The CPUs set in a kernel cpu mask ("00000000,00000003"). */
export function parseCpuMask(text: string): number[] {
  const hex = text.trim().replace(/,/g, "");
  const out: number[] = [];
  for (let i = 0; i < hex.length; i++) {
    const nibble = Number.parseInt(hex[hex.length - 1 - i], 16);
    for (let b = 0; b < 4; b++) if (nibble & (1 << b)) out.push(i * 4 + b);
  }
  return out;
}

// Files under sys/devices/system/cpu/cpuN that name CPUs by the host's numbers.
const CPU_LIST_FILE = /^cpu\d+\/(topology\/\w+_list|cache\/index\d+\/shared_cpu_list)$/;
const CPU_MASK_FILE =
  /^cpu\d+\/(topology\/(core_cpus|die_cpus|package_cpus|cluster_cpus|thread_siblings|core_siblings|book_siblings|drawer_siblings)|cache\/index\d+\/shared_cpu_map)$/;

/**
 * A passed-through cpuN file renumbered into the CPUs a reader is shown (host CPU
 * `visible[i]` is its cpu i; the others are left out), so that topology and cache sharing
 * name only CPUs it can see and lscpu groups them as on a machine with that many CPUs.
 * Undefined for a file that names no CPUs (served as it is).
 */
export function renumberCpuFile(rel: string, text: string, visible: readonly number[]): string | undefined {
  const isList = CPU_LIST_FILE.test(rel);
  if (!isList && !CPU_MASK_FILE.test(rel)) return undefined;
  const host = isList ? parseCpuList(text) : parseCpuMask(text);
  const shown = host.map((h) => visible.indexOf(h)).filter((i) => i >= 0);
  return `${isList ? formatCpuList(shown) : formatCpuMask(shown, visible.length)}\n`;
}

/**
 * A cache's id renumbered among the caches of the same level the reader's CPUs use (`ids`:
 * that index's id on each shown CPU): lscpu numbers caches by these ids, and a machine with
 * only the shown CPUs would number them from 0.
 */
export function renumberCacheId(hostId: number, ids: readonly number[]): string {
  return `${[...new Set(ids)].sort((a, b) => a - b).indexOf(hostId)}\n`;
}
