// Runs inside the VM (test/vm/vm.test.ts boots it): a pure cgroup v2 host on one of
// Debian's kernels. procview on the host and procview inside its own DaemonSet pod with a
// private cgroup namespace, each serving limited runc containers.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { seenIn } from "../helpers/checks";
import { type Daemon, isMounted, startProcview, tempDir } from "../helpers/daemons";
import { sharedMount, startDaemonSetPod } from "../helpers/daemonset";
import { Container } from "../helpers/runc";

const MiB = 1024 * 1024;

it("the guest is a pure cgroup v2 host", () => {
  assert.equal(fs.readFileSync("/proc/self/cgroup", "utf8"), "0::/\n");
  assert.ok(fs.existsSync("/sys/fs/cgroup/cgroup.controllers"));
});

function limitedPair(source: string): [Container, Container] {
  return [
    new Container({ memoryBytes: 256 * MiB, cpuQuota: 0.5, cpus: "0-1", source }),
    new Container({ memoryBytes: 512 * MiB, cpus: "0-1", source }),
  ];
}

function assertOwnFigures(a: Container, b: Container): void {
  const [sa, sb] = [seenIn(a), seenIn(b)];
  console.log(`# 256 MiB / 0.5 CPU container: ${JSON.stringify(sa)}`);
  assert.deepEqual(
    [sa.freeTotal, sa.nodeTotalmem, sa.cpuinfoProcessors, sa.pythonCpuCount, sa.getconfOnln, sa.statCpuLines, sa.swapsDevices],
    [256 * MiB, 256 * MiB, 1, 1, 1, "cpu,cpu0,", 0],
  );
  assert.deepEqual(
    [sb.freeTotal, sb.cpuinfoProcessors, sb.pythonCpuCount, sb.getconfOnln, sb.statCpuLines],
    [512 * MiB, 2, 2, 2, "cpu,cpu0,cpu1,"],
  );
  // The pressure files are the cgroup's own (the container's "some" total, not the host's).
  assert.match(a.sh("cat /run/procview/proc/pressure/memory"), /^some avg10=\d+\.\d\d .* total=\d+\nfull /);
}

describe("procview on the v2 host", () => {
  let pv: Daemon;
  const cs: Container[] = [];
  before(async () => {
    pv = await startProcview();
  });
  after(async () => {
    for (const c of cs) c.destroy();
    assert.equal(await pv?.stop(), 0);
  });

  it("two limited containers each read their own limits", () => {
    cs.push(...limitedPair(pv.dir));
    assertOwnFigures(cs[0], cs[1]);
  });
});

describe("procview in its DaemonSet pod, private cgroup namespace", () => {
  let dir: string;
  let undo: () => void;
  let pod: Container;
  const cs: Container[] = [];
  before(async () => {
    dir = tempDir("pv-node-");
    const mountpoint = path.join(dir, "procview");
    fs.mkdirSync(mountpoint);
    fs.mkdirSync(path.join(dir, "procview.state"));
    undo = sharedMount(mountpoint);
    pod = startDaemonSetPod({ "/var/lib/procview": mountpoint, "/var/lib/procview.state": path.join(dir, "procview.state") });
    for (const end = Date.now() + 120_000; !(isMounted(mountpoint) && pod.output().includes("procview: serving"));) {
      if (Date.now() > end) throw new Error(`the pod did not serve: ${pod.output()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  });
  after(async () => {
    for (const c of cs) c.destroy();
    await pod?.stop("TERM", 30_000);
    pod?.destroy();
    undo?.();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("the pod's own view of other pods is /../..; it still serves each container its limits, with no warning", () => {
    assert.match(pod.exec(["cat", "/proc/1/cgroup"]), /^0::\/\.\.(\/\.\.)*\n$/);
    cs.push(...limitedPair(path.join(dir, "procview")));
    assertOwnFigures(cs[0], cs[1]);
    assert.doesNotMatch(pod.output(), /warning|outside the cgroup trees/);
  });
});
