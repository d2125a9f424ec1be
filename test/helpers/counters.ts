// /proc/stat, /proc/uptime, online and cpuinfo as a monitoring agent samples them: every 10 ms
// for 20 s in a runc container with a busy loop, while its CPU quota and cpuset change under
// it (and, if asked, its daemon's serving process is killed). Used on the host (cgroup v1,
// test/e2e/counters.test.ts) and in the VM test bed (cgroup v2, test/vm/cgroup-v2.test.ts).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { Container } from "./runc";

/** The phases, each 4 s: the limits set at its start and the CPUs of capacity that gives. */
export const PHASES = [
  { quota: 0.5, cpus: "0-1", capacity: 0.5 },
  { quota: 2, cpus: "0-1", capacity: 2 },
  { quota: 0.5, cpus: "0-1", capacity: 0.5 },
  { quota: 2, cpus: "1", capacity: 1 },
  { quota: 2, cpus: "0-1", capacity: 2 },
];
export const PHASE_S = 4;
/** The `cpu` lines each phase shows: 1 CPU at quota 0.5 or cpuset "1", 2 at quota 2 on 0-1. */
export const PHASE_LINES = ["cpu,cpu0", "cpu,cpu0,cpu1", "cpu,cpu0", "cpu,cpu0", "cpu,cpu0,cpu1"];

/**
 * Samples for `seconds`, or until the file `stop` exists; with `marker`, first creates that
 * file, so that the host knows it has started, and writes each sample's time to it, so that
 * the host knows how far it has come.
 */
const sampler = (seconds: number, marker?: string, stop?: string) =>
  [
    "import os, time",
    ...(marker ? [`open('${marker}', 'w').close()`] : []),
    `end = time.time() + ${seconds}`,
    "out = []",
    `while time.time() < end${stop ? ` and not os.path.exists('${stop}')` : ""}:`,
    "    t = time.time()",
    "    stat = open('/proc/stat').read()",
    // When the read of stat ended: a sampler throttled or stalled inside it read it later than t.
    "    t2 = time.time()",
    "    idle = open('/proc/uptime').read().split()[1]",
    // The CPU count as getconf (online) and as /proc/cpuinfo give it, read in the same moment.
    "    online = open('/sys/devices/system/cpu/online').read().strip()",
    "    processors = open('/proc/cpuinfo').read().count('processor\\t')",
    "    out.append('%.3f %.3f %s %s %d %s' % (t, t2, idle, online, processors, '|'.join(l for l in stat.split('\\n') if l.startswith('cpu'))))",
    ...(marker ? [`    open('${marker}', 'w').write('%.3f' % t)`] : []),
    "    time.sleep(0.01)",
    "print('\\n'.join(out))",
  ].join("\n");

export interface Sample {
  t: number;
  /** How long the read of /proc/stat took (s): what it shows is of some moment in that span. */
  statTook: number;
  uptimeIdle: number;
  /** CPUs in /sys/devices/system/cpu/online and processors in /proc/cpuinfo. */
  online: number;
  processors: number;
  lines: Map<string, number[]>;
}

function parse(out: string): Sample[] {
  return out
    .trim()
    .split("\n")
    .map((l) => {
      const [t, t2, idle, online, processors, ...rest] = l.split(" ");
      const lines = new Map<string, number[]>();
      for (const line of rest.join(" ").split("|")) {
        const [label, ...fields] = line.trim().split(/\s+/);
        lines.set(label, fields.map(Number));
      }
      return {
        t: Number(t),
        statTook: Number(t2) - Number(t),
        uptimeIdle: Number(idle),
        online: Number(online.split("-").pop()) + 1,
        processors: Number(processors),
        lines,
      };
    });
}

/** One sample, read now in `c`. */
export function sampleOnce(c: Container): Sample {
  return parse(c.sh(`python3 -c "$(cat <<'EOF'\n${sampler(0.05)}\nEOF\n)"`))[0];
}

/** The container's CPU usage in ns, from the host's tree: cpuacct.usage (v1) or cpu.stat's usage_usec (v2). */
export function usageNs(c: Container): number {
  for (const line of fs.readFileSync(`/proc/${c.pid}/cgroup`, "utf8").trim().split("\n")) {
    const [, ctrls, p] = line.split(":");
    if (ctrls === "" && fs.existsSync("/sys/fs/cgroup/cgroup.controllers")) {
      const stat = fs.readFileSync(path.join("/sys/fs/cgroup", p, "cpu.stat"), "utf8");
      return Number(/^usage_usec (\d+)/m.exec(stat)?.[1]) * 1000;
    }
    if (ctrls.split(",").includes("cpuacct"))
      return Number(fs.readFileSync(path.join("/sys/fs/cgroup", ctrls, p, "cpuacct.usage"), "utf8"));
  }
  throw new Error("no cpu usage for the container");
}

export interface SampledRun {
  samples: Sample[];
  usage: { t: number; ns: number }[];
  t0: number;
  /** When each phase's limits were in place (the first: t0; the others: when runc update returned). */
  phaseStarts: number[];
  /** When each phase ended: when the next phase's runc update began, or sampling was told to stop. */
  phaseEnds: number[];
  kills: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs the phases in `c` (which must start with PHASES[0]'s limits) under a busy loop, with
 * `kill` called 2 s into the second and fourth phases; returns the samples and the usage.
 * Each phase lasts PHASE_S from when its limits were in place, however late runc update
 * returns (an emulated guest can take a second over it).
 */
export async function samplePhases(c: Container, kill?: () => number): Promise<SampledRun> {
  const tag = `/tmp/procview-sampler-${process.pid}-${Date.now()}`;
  const [marker, stop, busyPid] = [`${tag}-started`, `${tag}-stop`, `${tag}-busy`];
  const run = c.shAsync(`python3 -c "$(cat <<'EOF'\n${sampler(PHASES.length * PHASE_S * 4, marker, stop)}\nEOF\n)"`);
  // The phases start when the sampler does: python can take seconds to start in an emulated guest.
  const inside = (f: string) => `/proc/${c.pid}/root${f}`;
  for (const end = Date.now() + 60_000; !fs.existsSync(inside(marker)); await sleep(10))
    if (Date.now() > end) throw new Error("the sampler did not start within 60 s");
  // `timeout` passes the SIGTERM sent at the end on to the loop; its own limit is a backstop.
  const busy = c.shAsync(`echo $$ > ${busyPid}; exec timeout ${PHASES.length * PHASE_S * 4} sh -c 'while :; do :; done'`).catch(() => "");
  const sampledPast = async (t: number) => {
    for (const end = Date.now() + 30_000; Number(fs.readFileSync(inside(marker), "utf8") || 0) < t; await sleep(50))
      if (Date.now() > end) throw new Error(`the sampler took no sample for 30 s (its last at ${fs.readFileSync(inside(marker), "utf8")})`);
  };
  const usage: { t: number; ns: number }[] = [];
  const t0 = Date.now() / 1000;
  const phaseStarts = [t0];
  const phaseEnds: number[] = [];
  const sampleUsage = setInterval(() => usage.push({ t: Date.now() / 1000, ns: usageNs(c) }), 50);
  let kills = 0;
  let samples: Sample[];
  try {
    for (let i = 0; i < PHASES.length; i++) {
      if (kill && (i === 1 || i === 3)) {
        await sleep(2000);
        kills += kill();
        await sleep(PHASE_S * 1000 - 2000);
      } else await sleep(PHASE_S * 1000);
      // Not over before the sampler has read the phase's settled figures: a guest under load
      // can leave it seconds between samples, and the check below takes the first sample
      // 1.5 s into each phase.
      await sampledPast(phaseStarts[i] + 2);
      phaseEnds[i] = Date.now() / 1000;
      const p = PHASES[i + 1];
      if (!p) break;
      const args = ["update", "--cpu-period", "100000", "--cpu-quota", String(p.quota * 100000), "--cpuset-cpus", p.cpus, c.id];
      const r = await new Promise<{ status: number | null; stderr: string }>((resolve) => {
        const u = spawn("runc", args, { stdio: ["ignore", "ignore", "pipe"] });
        let stderr = "";
        u.stderr.on("data", (d) => (stderr += d));
        u.once("close", (status) => resolve({ status, stderr }));
      });
      if (r.status !== 0) throw new Error(`runc update failed: ${r.stderr}`);
      phaseStarts[i + 1] = Date.now() / 1000;
    }
  } finally {
    clearInterval(sampleUsage);
    fs.writeFileSync(inside(stop), "");
    samples = parse(await run);
    // Already ended by its own limit, or never started: nothing to stop.
    c.sh(`kill $(cat ${busyPid}) 2>/dev/null; true`);
    await busy;
  }
  return { samples, usage, t0, phaseStarts, phaseEnds, kills };
}

/** Every counter of every line, and uptime's idle, that is lower than in the sample before. */
export function backwardSteps(r: SampledRun): string[] {
  const out: string[] = [];
  for (let i = 1; i < r.samples.length; i++) {
    const [a, b] = [r.samples[i - 1], r.samples[i]];
    const when = (b.t - r.t0).toFixed(2);
    if (b.uptimeIdle < a.uptimeIdle) out.push(`uptime idle ${a.uptimeIdle} -> ${b.uptimeIdle} at ${when} s`);
    for (const [label, now] of b.lines) {
      const before = a.lines.get(label);
      if (before) now.forEach((v, k) => v < before[k] && out.push(`${label} field ${k + 1}: ${before[k]} -> ${v} at ${when} s`));
    }
  }
  return out;
}

/** Samples whose online, cpuinfo and stat's cpuN lines disagree on the number of CPUs. */
export function disagreeing(r: SampledRun): Sample[] {
  return r.samples.filter((x) => new Set([x.online, x.processors, x.lines.size - 1]).size > 1);
}

/**
 * The `cpu` lines 1.5 s after each phase's limits were in place (timed from when runc update
 * returned, not from when it was due: a busy test host runs timers late).
 */
export function linesPerPhase(r: SampledRun): string[] {
  return PHASES.map((_, i) => [...(sampleInPhase(r, i)?.lines.keys() ?? [])].join(","));
}

const sampleInPhase = (r: SampledRun, i: number): Sample | undefined => r.samples.find((s) => s.t >= r.phaseStarts[i] + 1.5);

/** When each phase began and ended, and when the sample linesPerPhase took was, in s from t0: for a failure's message. */
function timeline(r: SampledRun): string {
  const at = (t: number | undefined) => (t === undefined ? "none" : (t - r.t0).toFixed(2));
  return PHASES.map(
    (_, i) => `phase ${i + 1} ${at(r.phaseStarts[i])}-${at(r.phaseEnds[i])} s, sample at ${at(sampleInPhase(r, i)?.t)}`,
  ).join("; ");
}

/** A sample whose read of /proc/stat took longer than this cannot be placed in time closely enough to be weighed against the cgroup's usage. */
const PLACED_S = 0.05;

/**
 * Per phase, over its steady middle: the utilisation top computes from the `cpu` line, and the
 * cgroup's usage over the same span divided by the CPUs it was given (capped at 100%). Only
 * samples whose stat read was quick mark the span's ends: a sampler stalled inside the read
 * (throttled at quota 0.5, say) shows a later moment than its time says.
 */
export function utilisation(r: SampledRun): { quota: number; cpus: string; shown: number; real: number }[] {
  const at = <T extends { t: number }>(xs: T[], t: number) => xs.reduce((best, x) => (Math.abs(x.t - t) < Math.abs(best.t - t) ? x : best));
  const busyTicks = (f: number[]) => f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
  const idleTicks = (f: number[]) => f[3] + f[4];
  const placed = r.samples.filter((s) => s.statTook <= PLACED_S);
  if (placed.length < 2)
    throw new Error(`only ${placed.length} of ${r.samples.length} samples read /proc/stat within ${PLACED_S * 1000} ms`);
  return PHASES.map((p, i) => {
    const [a, b] = [at(placed, r.phaseStarts[i] + 1.2), at(placed, r.phaseEnds[i] - 0.3)];
    const [fa, fb] = [a.lines.get("cpu") as number[], b.lines.get("cpu") as number[]];
    const dBusy = busyTicks(fb) - busyTicks(fa);
    const dIdle = idleTicks(fb) - idleTicks(fa);
    const [ua, ub] = [at(r.usage, a.t), at(r.usage, b.t)];
    const real = (100 * (ub.ns - ua.ns)) / 1e9 / ((ub.t - ua.t) * p.capacity);
    return { quota: p.quota, cpus: p.cpus, shown: (100 * dBusy) / (dBusy + dIdle), real: Math.min(100, real) };
  });
}

/**
 * What every sampled run must show: no counter back, the files agreeing on the CPU count but
 * for at most one sample per change of it (3; the files are read one after the other, and a
 * sample may straddle the moment the daemon takes up new limits), the CPU lines of each phase,
 * and top's utilisation within 10 points of the cgroup's. Returns the figures, for the log.
 */
export function assertCounters(r: SampledRun): string {
  const backwards = backwardSteps(r);
  const split = disagreeing(r).length;
  const u = utilisation(r);
  const updates = r.phaseStarts.slice(1).map((s, i) => s - r.phaseEnds[i]);
  const slow = r.samples.filter((s) => s.statTook > PLACED_S).length;
  const report = `${r.samples.length} samples (the longest gap ${largestGap(r)}; ${slow} with a stat read over ${PLACED_S * 1000} ms), ${backwards.length} backward steps, ${split} disagreeing on the CPU count; runc update took at most ${Math.max(...updates).toFixed(2)} s; ${u
    .map((p) => `quota ${p.quota} cpus ${p.cpus}: top ${p.shown.toFixed(0)}%, cgroup ${p.real.toFixed(0)}%`)
    .join("; ")}`;
  assert.deepEqual(backwards.slice(0, 10), [], report);
  assert.ok(split <= 3, report);
  assert.deepEqual(linesPerPhase(r), PHASE_LINES, `${report}; ${timeline(r)}`);
  for (const p of u) assert.ok(Math.abs(p.shown - p.real) <= 10, report);
  return report;
}

/** The longest time without a sample, and when it began (s from t0). */
function largestGap(r: SampledRun): string {
  let best = { gap: 0, from: 0 };
  for (let i = 1; i < r.samples.length; i++) {
    const gap = r.samples[i].t - r.samples[i - 1].t;
    if (gap > best.gap) best = { gap, from: r.samples[i - 1].t - r.t0 };
  }
  return `${best.gap.toFixed(2)} s at ${best.from.toFixed(2)} s`;
}

/** A 256 MiB container with the first phase's limits, reading `source`'s files: what samplePhases runs in. */
export function phasesContainer(source: string): Container {
  return new Container({ memoryBytes: 256 * 1024 * 1024, cpuQuota: PHASES[0].quota, cpus: PHASES[0].cpus, source });
}
