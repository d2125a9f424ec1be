import type { CpuUsage } from "../cgroup/types";

/** One CPU's times in USER_HZ ticks, in /proc/stat column order. */
export interface CpuTimes {
  user: number;
  nice: number;
  system: number;
  idle: number;
  iowait: number;
  irq: number;
  softirq: number;
  steal: number;
  guest: number;
  guestNice: number;
}

export interface StatInput {
  /** Host CPUs shown, in order: shown CPU i is host CPU visible[i]. */
  visible: readonly number[];
  /** Host CPUs the cgroup may run on; usage on any of them is folded onto a shown CPU. */
  pool: readonly number[];
  usage: CpuUsage;
  /** Seconds since the container started: the span its idle time is taken from. */
  elapsed: number;
  /** Fraction of each shown CPU the container may use (0.5 for half a CPU). */
  share: number;
  procsRunning?: number;
  procsBlocked?: number;
}

const TICKS_PER_NS = 100 / 1e9;

/**
 * Per shown CPU: busy time from the cgroup's usage, idle time as the rest of what the
 * container could have used since it started, so `top` shows its own utilisation.
 */
export function containerCpuTimes(input: StatInput): CpuTimes[] {
  const n = input.visible.length;
  const user = new Array<number>(n).fill(0);
  const system = new Array<number>(n).fill(0);
  const { perCpu } = input.usage;
  if (perCpu) {
    perCpu.forEach((u, hostCpu) => {
      if (u.userNs === 0 && u.systemNs === 0) return;
      const at = input.pool.indexOf(hostCpu);
      const i = (at >= 0 ? at : hostCpu) % n;
      user[i] += u.userNs;
      system[i] += u.systemNs;
    });
  } else {
    // cgroup v2 reports totals only: spread them evenly.
    user.fill(input.usage.userNs / n);
    system.fill(input.usage.systemNs / n);
  }
  const capacity = Math.max(0, input.elapsed) * 100 * input.share;
  return user.map((u, i) => {
    const ut = Math.floor(u * TICKS_PER_NS);
    const st = Math.floor(system[i] * TICKS_PER_NS);
    return {
      user: ut,
      nice: 0,
      system: st,
      idle: Math.max(0, Math.floor(capacity - ut - st)),
      iowait: 0,
      irq: 0,
      softirq: 0,
      steal: 0,
      guest: 0,
      guestNice: 0,
    };
  });
}

function timesLine(label: string, t: CpuTimes): string {
  return `${label} ${t.user} ${t.nice} ${t.system} ${t.idle} ${t.iowait} ${t.irq} ${t.softirq} ${t.steal} ${t.guest} ${t.guestNice}`;
}

/**
 * /proc/stat for a container: one `cpu` line and exactly one `cpuN` line per shown CPU.
 * btime stays the host's: ps and top add it to process start times, which count from
 * the host's boot. intr, ctxt, processes and softirq have no per-cgroup source.
 */
export function renderStat(hostText: string, input: StatInput): string {
  const times = containerCpuTimes(input);
  const sum = times.reduce(
    (a, t) => {
      for (const k of Object.keys(a) as (keyof CpuTimes)[]) a[k] += t[k];
      return a;
    },
    { user: 0, nice: 0, system: 0, idle: 0, iowait: 0, irq: 0, softirq: 0, steal: 0, guest: 0, guestNice: 0 },
  );
  const out: string[] = [timesLine("cpu ", sum), ...times.map((t, i) => timesLine(`cpu${i}`, t))];
  for (const line of hostText.split("\n")) {
    if (line === "" || line.startsWith("cpu")) continue;
    if (line.startsWith("procs_running ") && input.procsRunning !== undefined) out.push(`procs_running ${input.procsRunning}`);
    else if (line.startsWith("procs_blocked ") && input.procsBlocked !== undefined) out.push(`procs_blocked ${input.procsBlocked}`);
    else out.push(line);
  }
  return `${out.join("\n")}\n`;
}
