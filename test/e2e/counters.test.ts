// /proc/stat and /proc/uptime as a monitoring agent samples them (test/helpers/counters): every
// 10 ms for 20 s in a runc container with a busy loop, while its CPU quota and cpuset change
// under it and the serving process is killed twice. No counter may ever go backwards, the
// files agree on the CPU count, and over each steady stretch the utilisation that top would
// compute from the `cpu` line matches the cgroup's own usage, read from the host, against the
// CPUs the container is given (its quota, or its cpuset when that is smaller).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { assertCounters, phasesContainer, sampleOnce, samplePhases } from "../helpers/counters";
import { type Daemon, servingOf, startProcview } from "../helpers/daemons";
import { Container } from "../helpers/runc";

describe("/proc/stat and uptime sampled every 10 ms while the limits change", () => {
  let pv: Daemon;
  let c: Container;
  before(async () => {
    pv = await startProcview();
    c = phasesContainer(pv.dir);
  });
  after(async () => {
    c?.destroy();
    await pv?.stop();
  });

  it("quota 0.5 -> 2 -> 0.5, then cpuset 1 -> 0-1, two serving-process kills: no counter goes backwards; utilisation matches the cgroup's usage", async () => {
    // The serving process SIGKILLed twice along the way: its successor carries the clocks on.
    const kill = () => {
      const serving = servingOf(pv.proc.pid as number);
      for (const p of serving) process.kill(p, "SIGKILL");
      return serving.length;
    };
    const r = await samplePhases(c, kill);
    assert.equal(r.kills, 2, "the serving process was killed twice");
    console.log(`# ${assertCounters(r)}`);
  });

  it("across a daemon restart (stop, then a new daemon re-binds): every counter is at least what it was", async () => {
    const before = sampleOnce(c);
    pv.proc.kill("SIGTERM");
    assert.equal(await new Promise((r) => pv.proc.once("exit", r)), 0);
    pv = await startProcview([], pv.dir);
    for (
      const end = Date.now() + 30_000;
      !/re-bound \d+ mount\(s\) in 1 container/.test(pv.output());
      await new Promise((r) => setTimeout(r, 50))
    )
      if (Date.now() > end) throw new Error(`not re-bound: ${pv.output()}`);
    const after = sampleOnce(c);
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
