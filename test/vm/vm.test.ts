// `npm run test:vm`: boots Debian's 6.1 and 6.12 kernels (test/vm/bed.ts) on a pure cgroup v2
// hierarchy and runs test/vm/cgroup-v2.test.ts inside each; every test in there must pass.
import assert from "node:assert/strict";
import * as path from "node:path";
import { describe, it } from "node:test";
import { boot, kernel } from "./bed";

const INSIDE = path.join(__dirname, "cgroup-v2.test.js");

for (const series of ["6.1", "6.12"]) {
  describe(`Debian's ${series} kernel, cgroup v2`, () => {
    it("procview on the host and in its DaemonSet pod serves each container its own figures", async () => {
      const k = kernel(series);
      const r = await boot(k, `node --test --test-reporter=tap --test-concurrency=1 --test-timeout=600000 ${INSIDE}`, 15 * 60_000);
      const out = r.output.replace(/\r/g, "");
      const summary = (key: string) => Number(new RegExp(`^# ${key} (\\d+)$`, "m").exec(out)?.[1] ?? Number.NaN);
      const tail = out.split("\n").slice(-60).join("\n");
      assert.ok(!r.timedOut, `the guest did not power off within 15 min:\n${tail}`);
      assert.match(out, new RegExp(`procview-vm: guest up, kernel ${k.release.replace(/[.+]/g, "\\$&")}`), tail);
      assert.equal(summary("fail"), 0, tail);
      assert.ok(summary("pass") >= 9, tail);
      for (const line of out
        .split("\n")
        .filter((l) => l.includes(" kills: ") || l.includes("orphaned read") || l.includes("diskstats in the container")))
        console.log(`# ${series}: ${line.replace(/^[# ]+/, "")}`);
      for (const line of out.split("\n").filter((l) => l.includes("256 MiB / 0.5 CPU container")))
        console.log(`# ${series}: ${line.replace(/^[# ]+/, "")}`);
      console.log(`# ${k.release}: ${summary("pass")} tests passed in the guest; boot to power-off ${(r.ms / 1000).toFixed(1)} s`);
    });
  });
}
