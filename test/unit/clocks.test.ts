// The containers' CPU clocks in the shared mapping, as two serving processes see it: the
// standby maps it long before it is promoted, while the serving process keeps adding and
// replacing containers' clocks. What the standby reads after promotion must be what its
// predecessor wrote last, or a container's /proc/stat steps back at the takeover.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { describe, it } from "node:test";
import { clockStore, MAX_CLOCKS, openClocksFile } from "../../src/daemon/clocks";
import { sharedMapHelper } from "../../src/fuse/journal";

const clock = (ticks: number) => ({
  perCpu: [{ user: ticks, nice: 0, system: 1, idle: 100 * ticks, iowait: 0, irq: 0, softirq: 0, steal: 0, guest: 0, guestNice: 0 }],
  total: { user: ticks, nice: 0, system: 1, idle: 100 * ticks, iowait: 0, irq: 0, softirq: 0, steal: 0, guest: 0, guestNice: 0 },
  debt: [0],
  usage: { userNs: ticks * 1e7, systemNs: 1e7, perCpu: null },
  elapsed: ticks,
});

describe(
  "CPU clocks shared between a serving process and its standby",
  { skip: !sharedMapHelper() && "the native helper is not built" },
  () => {
    it("a standby mapped before the clocks were written reads them; a replaced slot is not mistaken for another container's", () => {
      const fd = openClocksFile(2, "/nonexistent/procview-clocks") as number;
      try {
        const standby = clockStore(fd, 2);
        const serving = clockStore(fd, 2);
        serving.set("/kubepods/pod-a", clock(407) as never);
        assert.equal(standby.get("/kubepods/pod-a")?.perCpu[0].user, 407);
        // The serving process fills every slot: pod-a's is recycled for a newer container.
        for (let i = 0; i < MAX_CLOCKS; i++) serving.set(`/kubepods/churn-${i}`, clock(1) as never);
        assert.equal(standby.get("/kubepods/pod-a"), undefined);
        assert.equal(standby.get(`/kubepods/churn-${MAX_CLOCKS - 1}`)?.perCpu[0].user, 1);
      } finally {
        fs.closeSync(fd);
      }
    });
  },
);
