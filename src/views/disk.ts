import type { IoDevice } from "../cgroup/types";

const SECTOR = 512;

const NONE: IoDevice = { device: "", rbytes: 0, wbytes: 0, rios: 0, wios: 0, dbytes: 0, dios: 0 };

/**
 * /proc/diskstats with the host's lines for the devices the container used, their
 * counters replaced by the cgroup's. Merge and time columns have no per-cgroup source: 0.
 * When the kernel keeps no per-device figure for the cgroup (v1 blkio without throttle
 * rules, or no I/O yet), every host device with zero counters: an empty file makes psutil
 * and `vmstat -d` report no disks at all, and the host's counters are not the container's.
 */
export function renderDiskstats(hostText: string, devices: readonly IoDevice[]): string {
  const byDev = new Map(devices.map((d) => [d.device, d]));
  const out: string[] = [];
  for (const line of hostText.split("\n")) {
    const f = line.trim().split(/\s+/);
    const d = devices.length === 0 ? NONE : byDev.get(`${f[0]}:${f[1]}`);
    if (!d || f.length < 14) continue;
    const values = new Array<number>(f.length - 3).fill(0);
    values[0] = d.rios;
    values[2] = Math.floor(d.rbytes / SECTOR);
    values[4] = d.wios;
    values[6] = Math.floor(d.wbytes / SECTOR);
    if (values.length >= 15) {
      values[11] = d.dios;
      values[13] = Math.floor(d.dbytes / SECTOR);
    }
    out.push(`${f[0].padStart(4)} ${f[1].padStart(7)} ${f[2]} ${values.join(" ")}`);
  }
  return out.length ? `${out.join("\n")}\n` : "";
}

/** /proc/partitions limited to the devices the container used (all of them when none is known, as diskstats). */
export function renderPartitions(hostText: string, devices: readonly IoDevice[]): string {
  if (devices.length === 0) return hostText;
  const used = new Set(devices.map((d) => d.device));
  const lines = hostText.split("\n");
  const out = [lines[0], ""];
  for (const line of lines.slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 4 && used.has(`${f[0]}:${f[1]}`)) out.push(line);
  }
  return `${out.join("\n")}\n`;
}
