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
 * The most busy time a shown CPU carries over against later idle: 0.2 s, two of the kernel's
 * CFS periods, enough for usage counted in ticks and quota bursts. More would let a container
 * that overshoots its quota (seen under emulation) make the next limits look busier than they are.
 */
const MAX_DEBT_TICKS = 20;

const ZERO: CpuTimes = { user: 0, nice: 0, system: 0, idle: 0, iowait: 0, irq: 0, softirq: 0, steal: 0, guest: 0, guestNice: 0 };

/** A CPU's times with only what a container has: user, system and idle. */
export function cpuTimes(user: number, system: number, idle: number): CpuTimes {
  return { ...ZERO, user, system, idle };
}

/**
 * A container's CPU clock: the times its /proc/stat showed last (fractional ticks; printed
 * rounded down) and the figures they were taken from. Each read advances it by what happened
 * since, so no counter ever goes backwards: a change of limits changes the rate of idle from
 * then on, never what was already shown.
 */
export interface CpuClock {
  /** Per shown CPU label (cpu0, cpu1, ...); a CPU no longer shown keeps its times for its return. */
  perCpu: CpuTimes[];
  total: CpuTimes;
  /** Per label: busy ticks beyond its capacity so far, taken from its later idle (at most MAX_DEBT_TICKS). */
  debt: number[];
  usage: CpuUsage;
  elapsed: number;
}

/** Usage in ns folded onto the shown CPUs: per host CPU where the kernel keeps it, else spread evenly. */
function foldUsage(input: StatInput, usage: CpuUsage): { user: number[]; system: number[] } {
  const n = input.visible.length;
  const user = new Array<number>(n).fill(0);
  const system = new Array<number>(n).fill(0);
  if (usage.perCpu) {
    usage.perCpu.forEach((u, hostCpu) => {
      if (u.userNs === 0 && u.systemNs === 0) return;
      const at = input.pool.indexOf(hostCpu);
      const i = (at >= 0 ? at : hostCpu) % n;
      user[i] += u.userNs;
      system[i] += u.systemNs;
    });
  } else {
    // cgroup v2 reports totals only: spread them evenly.
    user.fill(usage.userNs / n);
    system.fill(usage.systemNs / n);
  }
  return { user, system };
}

/** What usage grew by since `prev` (never negative), in the same shape. */
function usageSince(now: CpuUsage, prev: CpuUsage): CpuUsage {
  const d = (a: number, b: number) => Math.max(0, a - b);
  return {
    userNs: d(now.userNs, prev.userNs),
    systemNs: d(now.systemNs, prev.systemNs),
    perCpu:
      now.perCpu && prev.perCpu
        ? now.perCpu.map((u, i) => ({
            userNs: d(u.userNs, prev.perCpu?.[i]?.userNs ?? 0),
            systemNs: d(u.systemNs, prev.perCpu?.[i]?.systemNs ?? 0),
          }))
        : null,
  };
}

/**
 * Per shown CPU: busy time from the cgroup's usage, idle time as the rest of what the
 * container could have used since it started, so `top` shows its own utilisation. This is
 * where a clock starts (a container's first read).
 */
export function containerCpuTimes(input: StatInput): CpuTimes[] {
  const { user, system } = foldUsage(input, input.usage);
  const capacity = Math.max(0, input.elapsed) * 100 * input.share;
  return user.map((u, i) => {
    const ut = u * TICKS_PER_NS;
    const st = system[i] * TICKS_PER_NS;
    return cpuTimes(ut, st, Math.max(0, capacity - ut - st));
  });
}

function sumTimes(times: CpuTimes[]): CpuTimes {
  const sum = { ...ZERO };
  for (const t of times) for (const k of Object.keys(sum) as (keyof CpuTimes)[]) sum[k] += t[k];
  return sum;
}

/**
 * The clock after `input`: busy grows by the cgroup's usage since the last read, folded onto
 * today's shown CPUs; idle by the rest of today's capacity over the same span (busy beyond it
 * is owed by later idle, up to 0.2 s' worth). A container that is new to us, or whose
 * elapsed time went backwards (a new container in the same cgroup), starts afresh.
 */
export function advanceCpuClock(prev: CpuClock | undefined, input: StatInput): CpuClock {
  const n = input.visible.length;
  if (!prev || input.elapsed < prev.elapsed || (prev.usage.perCpu === null) !== (input.usage.perCpu === null)) {
    const perCpu = containerCpuTimes(input);
    return { perCpu, total: sumTimes(perCpu), debt: new Array<number>(n).fill(0), usage: input.usage, elapsed: input.elapsed };
  }
  const grown = foldUsage(input, usageSince(input.usage, prev.usage));
  const capacity = (input.elapsed - prev.elapsed) * 100 * input.share;
  const perCpu = [...prev.perCpu];
  const debt = [...prev.debt];
  const total = { ...prev.total };
  for (let i = 0; i < n; i++) {
    const user = grown.user[i] * TICKS_PER_NS;
    const system = grown.system[i] * TICKS_PER_NS;
    const credit = capacity - user - system - (debt[i] ?? 0);
    const idle = Math.max(0, credit);
    debt[i] = Math.min(MAX_DEBT_TICKS, Math.max(0, -credit));
    const was = perCpu[i] ?? ZERO;
    perCpu[i] = cpuTimes(was.user + user, was.system + system, was.idle + idle);
    total.user += user;
    total.system += system;
    total.idle += idle;
  }
  return { perCpu, total, debt, usage: input.usage, elapsed: input.elapsed };
}

function timesLine(label: string, t: CpuTimes): string {
  const f = (k: keyof CpuTimes) => Math.floor(t[k]);
  return `${label} ${f("user")} ${f("nice")} ${f("system")} ${f("idle")} ${f("iowait")} ${f("irq")} ${f("softirq")} ${f("steal")} ${f("guest")} ${f("guestNice")}`;
}

/**
 * /proc/stat for a container: one `cpu` line and exactly one `cpuN` line per shown CPU, from
 * its clock (or, for a first read, from `input` alone). btime stays the host's: ps and top add
 * it to process start times, which count from the host's boot. intr, ctxt, processes and
 * softirq have no per-cgroup source.
 */
export function renderStat(hostText: string, input: StatInput, clock = advanceCpuClock(undefined, input)): string {
  const shown = clock.perCpu.slice(0, input.visible.length);
  const out: string[] = [timesLine("cpu ", clock.total), ...shown.map((t, i) => timesLine(`cpu${i}`, t))];
  for (const line of hostText.split("\n")) {
    if (line === "" || line.startsWith("cpu")) continue;
    if (line.startsWith("procs_running ") && input.procsRunning !== undefined) out.push(`procs_running ${input.procsRunning}`);
    else if (line.startsWith("procs_blocked ") && input.procsBlocked !== undefined) out.push(`procs_blocked ${input.procsBlocked}`);
    else out.push(line);
  }
  return `${out.join("\n")}\n`;
}
