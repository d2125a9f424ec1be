// /proc/stat and /proc/uptime as a monitoring agent samples them: every 10 ms for 20 s in a
// runc container with a busy loop, while its CPU quota and cpuset change under it. No counter
// may ever go backwards, and over each steady stretch the utilisation that top would compute
// from the `cpu` line must match the cgroup's own usage, read from the host, against the CPUs
// the container is given (its quota, or its cpuset when that is smaller).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { type Daemon, servingOf, startProcview } from "../helpers/daemons";
import { Container } from "../helpers/runc";

const MiB = 1024 * 1024;

/** The phases, each 4 s: the limits set at its start and the CPUs of capacity that gives. */
const PHASES = [
  { quota: 0.5, cpus: "0-1", capacity: 0.5 },
  { quota: 2, cpus: "0-1", capacity: 2 },
  { quota: 0.5, cpus: "0-1", capacity: 0.5 },
  { quota: 2, cpus: "1", capacity: 1 },
  { quota: 2, cpus: "0-1", capacity: 2 },
];
const PHASE_S = 4;

const SAMPLER = [
  "import time",
  `end = time.time() + ${PHASES.length * PHASE_S}`,
  "out = []",
  "while time.time() < end:",
  "    t = time.time()",
  "    stat = open('/proc/stat').read()",
  "    idle = open('/proc/uptime').read().split()[1]",
  "    out.append('%.3f %s %s' % (t, idle, '|'.join(l for l in stat.split('\\n') if l.startswith('cpu'))))",
  "    time.sleep(0.01)",
  "print('\\n'.join(out))",
].join("\n");

interface Sample {
  t: number;
  uptimeIdle: number;
  lines: Map<string, number[]>;
}

function parse(out: string): Sample[] {
  return out
    .trim()
    .split("\n")
    .map((l) => {
      const [t, idle, ...rest] = l.split(" ");
      const lines = new Map<string, number[]>();
      for (const line of rest.join(" ").split("|")) {
        const [label, ...fields] = line.trim().split(/\s+/);
        lines.set(label, fields.map(Number));
      }
      return { t: Number(t), uptimeIdle: Number(idle), lines };
    });
}

/** The cgroup's cpuacct.usage (ns) in the host's tree. */
function usageFile(c: Container): string {
  for (const line of fs.readFileSync(`/proc/${c.pid}/cgroup`, "utf8").trim().split("\n")) {
    const [, ctrls, p] = line.split(":");
    if (ctrls.split(",").includes("cpuacct")) return path.join("/sys/fs/cgroup", ctrls, p, "cpuacct.usage");
  }
  throw new Error("no cpuacct cgroup");
}

describe("/proc/stat and uptime sampled every 10 ms while the limits change", () => {
  let pv: Daemon;
  let c: Container;
  before(async () => {
    pv = await startProcview();
    c = new Container({ memoryBytes: 256 * MiB, cpuQuota: PHASES[0].quota, cpus: PHASES[0].cpus, source: pv.dir });
  });
  after(async () => {
    c?.destroy();
    await pv?.stop();
  });

  it("quota 0.5 -> 2 -> 0.5, then cpuset 1 -> 0-1, two serving-process kills: no counter goes backwards; utilisation matches the cgroup's usage", async () => {
    const busy = c.shAsync(`timeout ${PHASES.length * PHASE_S + 3} sh -c 'while :; do :; done'; true`);
    const file = usageFile(c);
    const usage: [number, number][] = [];
    const started = Date.now();
    const sampleUsage = setInterval(() => usage.push([Date.now() / 1000, Number(fs.readFileSync(file, "utf8"))]), 50);
    // The serving process SIGKILLed twice along the way: its successor carries the clocks on.
    let kills = 0;
    const killings = [PHASE_S * 1000 + 2000, 3 * PHASE_S * 1000 + 2000].map((ms) =>
      setTimeout(() => {
        for (const p of servingOf(pv.proc.pid as number)) {
          process.kill(p, "SIGKILL");
          kills++;
        }
      }, ms),
    );
    const changes = PHASES.slice(1).map((p, i) =>
      setTimeout(
        () => {
          const r = spawnSync(
            "runc",
            ["update", "--cpu-period", "100000", "--cpu-quota", String(p.quota * 100000), "--cpuset-cpus", p.cpus, c.id],
            {
              encoding: "utf8",
            },
          );
          if (r.status !== 0) console.log(`# runc update failed: ${r.stderr}`);
        },
        (i + 1) * PHASE_S * 1000,
      ),
    );
    let samples: Sample[];
    try {
      samples = parse(await c.shAsync(`python3 -c "$(cat <<'EOF'\n${SAMPLER}\nEOF\n)"`));
    } finally {
      clearInterval(sampleUsage);
      for (const t of [...changes, ...killings]) clearTimeout(t);
    }
    assert.equal(kills, 2, "the serving process was killed twice");
    await busy;
    const t0 = started / 1000;
    console.log(`# ${samples.length} samples in ${(samples[samples.length - 1].t - samples[0].t).toFixed(1)} s`);

    // Not one counter of not one line decreases between two samples, nor uptime's idle.
    const backwards: string[] = [];
    for (let i = 1; i < samples.length; i++) {
      const [a, b] = [samples[i - 1], samples[i]];
      if (b.uptimeIdle < a.uptimeIdle) backwards.push(`uptime idle ${a.uptimeIdle} -> ${b.uptimeIdle} at ${(b.t - t0).toFixed(2)} s`);
      for (const [label, now] of b.lines) {
        const before = a.lines.get(label);
        if (!before) continue;
        now.forEach((v, k) => {
          if (v < before[k]) backwards.push(`${label} field ${k + 1}: ${before[k]} -> ${v} at ${(b.t - t0).toFixed(2)} s`);
        });
      }
    }
    assert.deepEqual(backwards.slice(0, 10), [], `${backwards.length} backward steps`);
    // The CPU lines follow the limits: 1 shown CPU at quota 0.5 or cpuset "1", 2 at quota 2 on 0-1.
    const cpuLines = (t: number) => [...(samples.find((s) => s.t >= t)?.lines.keys() ?? [])].join(",");
    assert.deepEqual(
      PHASES.map((_, i) => cpuLines(t0 + i * PHASE_S + 2)),
      ["cpu,cpu0", "cpu,cpu0,cpu1", "cpu,cpu0", "cpu,cpu0", "cpu,cpu0,cpu1"],
    );

    // Utilisation over the steady middle of each phase, from the `cpu` line as top computes it,
    // against the cgroup's usage over the same span divided by the CPUs it was given.
    const at = <T extends { t: number }>(xs: T[], t: number) =>
      xs.reduce((best, x) => (Math.abs(x.t - t) < Math.abs(best.t - t) ? x : best));
    const usageAt = (t: number) =>
      at(
        usage.map(([ut, ns]) => ({ t: ut, ns })),
        t,
      );
    const report: string[] = [];
    PHASES.forEach((p, i) => {
      const [from, to] = [t0 + i * PHASE_S + 1.2, t0 + (i + 1) * PHASE_S - 0.3];
      const [a, b] = [at(samples, from), at(samples, to)];
      const cpu = (s: Sample) => s.lines.get("cpu") as number[];
      const busyTicks = (f: number[]) => f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
      const idleTicks = (f: number[]) => f[3] + f[4];
      const dBusy = busyTicks(cpu(b)) - busyTicks(cpu(a));
      const dIdle = idleTicks(cpu(b)) - idleTicks(cpu(a));
      const shown = (100 * dBusy) / (dBusy + dIdle);
      const [ua, ub] = [usageAt(a.t), usageAt(b.t)];
      const real = (100 * (ub.ns - ua.ns)) / 1e9 / ((ub.t - ua.t) * p.capacity);
      report.push(`quota ${p.quota} cpus ${p.cpus}: top ${shown.toFixed(0)}%, cgroup ${real.toFixed(0)}%`);
      assert.ok(Math.abs(shown - Math.min(100, real)) <= 10, `${report.join("; ")}`);
    });
    console.log(`# ${report.join("; ")}`);
  });

  it("across a daemon restart (stop, then a new daemon re-binds): every counter is at least what it was", async () => {
    const read = () =>
      parse(c.sh(`python3 -c "$(cat <<'EOF'\n${SAMPLER.replace(/end = time.time\(\) \+ \d+/, "end = time.time() + 0.05")}\nEOF\n)"`))[0];
    const before = read();
    pv.proc.kill("SIGTERM");
    assert.equal(await new Promise((r) => pv.proc.once("exit", r)), 0);
    pv = await startProcview([], pv.dir);
    for (
      const end = Date.now() + 30_000;
      !/re-bound \d+ mount\(s\) in 1 container/.test(pv.output());
      await new Promise((r) => setTimeout(r, 50))
    )
      if (Date.now() > end) throw new Error(`not re-bound: ${pv.output()}`);
    const after = read();
    const lower: string[] = [];
    if (after.uptimeIdle < before.uptimeIdle) lower.push(`uptime idle ${before.uptimeIdle} -> ${after.uptimeIdle}`);
    for (const [label, was] of before.lines) {
      const now = after.lines.get(label);
      if (now) now.forEach((v, k) => v < was[k] && lower.push(`${label} field ${k + 1}: ${was[k]} -> ${v}`));
    }
    console.log(`# across the restart: cpu ${before.lines.get("cpu")?.join(" ")} -> ${after.lines.get("cpu")?.join(" ")}`);
    assert.deepEqual(lower, []);
    assert.equal(after.lines.get("cpu0")?.length, 10, "the container's own lines again, not the host's");
    assert.ok(
      (after.lines.get("cpu")?.[3] ?? 0) < (before.lines.get("cpu")?.[3] ?? 0) + 100 * 60,
      "idle grew by less than a minute: the container's, not the host's",
    );
  });
});
