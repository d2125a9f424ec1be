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
      // PROCVIEW_VM_ONLY: a name pattern for the guest's tests (to repeat one while working on it).
      const only = process.env.PROCVIEW_VM_ONLY ? ` --test-name-pattern='${process.env.PROCVIEW_VM_ONLY.replace(/'/g, "")}'` : "";
      const command = `node --test --test-reporter=tap --test-concurrency=1 --test-timeout=600000${only} ${INSIDE}`;
      let r = await boot(k, command, 15 * 60_000);
      // The emulator, not the guest's tests: boot again, and say so. Such failures have come
      // 10-20 s after boot, so a third boot is tried too while the lost ones took under 6 min.
      for (let lost = 0, boots = 1; r.lockedUp; boots++) {
        const stuck = r.output
          .split("\n")
          .filter((l) => /soft lockup|Kernel panic|Oops|RIP:/.test(l))
          .slice(0, 6);
        lost += r.ms;
        const again = boots === 1 || (boots === 2 && lost < 6 * 60_000);
        assert.ok(again, `the guest's kernel locked up or panicked ${boots} times under emulation:\n${r.output.slice(-3000)}`);
        console.log(
          `# ${series}: the guest's kernel locked up or panicked under emulation ${(r.ms / 1000).toFixed(0)} s into boot ${boots}; booting again. It printed:\n# ${stuck.join("\n# ")}`,
        );
        r = await boot(k, command, 15 * 60_000);
      }
      const out = r.output.replace(/\r/g, "");
      const summary = (key: string) => Number(new RegExp(`^# ${key} (\\d+)$`, "m").exec(out)?.[1] ?? Number.NaN);
      // The guest's failures first (their names and errors), then the end of its console.
      const lines = out.split("\n");
      const failures = lines.flatMap((l, i) => (/not ok/.test(l) ? lines.slice(i, i + 12).filter((e) => !/^\s+at /.test(e)) : []));
      const tail = [...failures, ...out.split("\n").slice(-40)].join("\n");
      for (const line of lines.filter((l) =>
        / kills: |orphaned read|journal off|diskstats in the container|256 MiB \/ 0.5 CPU container|sampler: |read failed|daemon: |took the connection over/.test(
          l,
        ),
      ))
        console.log(`# ${series}: ${line.replace(/^[# \\]+/, "")}`);
      assert.ok(!r.timedOut, `the guest did not power off within 15 min:\n${tail}`);
      assert.match(out, new RegExp(`procview-vm: guest up, kernel ${k.release.replace(/[.+]/g, "\\$&")}`), tail);
      assert.equal(summary("fail"), 0, tail);
      if (!only) assert.ok(summary("pass") >= 12, tail);
      console.log(`# ${k.release}: ${summary("pass")} tests passed in the guest; boot to power-off ${(r.ms / 1000).toFixed(1)} s`);
    });
  });
}
