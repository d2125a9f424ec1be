// procview where it is deployed: inside its own DaemonSet container (the spec read from
// deploy/base/daemonset.yaml and run with runc: privileged, the host's pid namespace, the
// mountpoint Bidirectional), on this cgroup v1 host where runc binds each hierarchy to the
// container's own cgroup. Limited containers beside it must see their own limits.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { seenIn } from "../helpers/checks";
import { isMounted, tempDir } from "../helpers/daemons";
import { sharedMount, startDaemonSetPod } from "../helpers/daemonset";
import { Container } from "../helpers/runc";

const MiB = 1024 * 1024;

interface Node {
  dir: string;
  mountpoint: string;
  pod: Container;
  undo: () => void;
}

/** A node's two hostPath directories, and the DaemonSet's pod on it. */
function startNode(change?: Parameters<typeof startDaemonSetPod>[1]): Node {
  const dir = tempDir("pv-node-");
  const mountpoint = path.join(dir, "procview");
  const state = path.join(dir, "procview.state");
  fs.mkdirSync(mountpoint);
  fs.mkdirSync(state, { mode: 0o700 });
  const undo = sharedMount(mountpoint);
  const pod = startDaemonSetPod({ "/var/lib/procview": mountpoint, "/var/lib/procview.state": state }, change);
  return { dir, mountpoint, pod, undo };
}

async function until(what: string, cond: () => boolean, node: Node): Promise<void> {
  for (const end = Date.now() + 30_000; !cond(); await new Promise((r) => setTimeout(r, 100)))
    if (Date.now() > end) throw new Error(`${what}: not within 30 s; the pod said: ${node.pod.output()}`);
}

async function stopNode(n: Node | undefined): Promise<void> {
  if (!n) return;
  const stopped = await n.pod.stop("TERM", 20_000);
  n.pod.destroy();
  n.undo();
  fs.rmSync(n.dir, { recursive: true, force: true });
  assert.ok(stopped, `the daemon did not stop on SIGTERM: ${n.pod.output()}`);
}

const hostMemTotalKb = () => Number(/^MemTotal:\s+(\d+)/m.exec(fs.readFileSync("/proc/meminfo", "utf8"))?.[1]);

describe("the DaemonSet's pod on a cgroup v1 node", () => {
  let node: Node;
  const containers: Container[] = [];
  before(async () => {
    node = startNode();
    await until("the FUSE mount reaches the host", () => isMounted(node.mountpoint), node);
    await until("the pod serves", () => node.pod.output().includes("procview: serving"), node);
  });
  after(async () => {
    for (const c of containers) c.destroy();
    await stopNode(node);
  });

  it("starts without a warning and its own probe command passes", () => {
    assert.doesNotMatch(node.pod.output(), /warning/);
    const check = node.pod.exec(["/opt/procview/bin/procview", "check", "--mountpoint", "/var/lib/procview"]);
    assert.match(check, /^ok: /);
  });

  it("two limited containers beside it each see their own limits", () => {
    const a = new Container({ memoryBytes: 256 * MiB, cpuQuota: 0.5, cpus: "0-1", source: node.mountpoint });
    containers.push(a);
    const b = new Container({ memoryBytes: 512 * MiB, cpus: "0-1", source: node.mountpoint });
    containers.push(b);
    const [sa, sb] = [seenIn(a), seenIn(b)];
    assert.deepEqual(
      [sa.freeTotal, sa.cpuinfoProcessors, sa.pythonCpuCount, sa.getconfOnln, sa.statCpuLines],
      [256 * MiB, 1, 1, 1, "cpu,cpu0,"],
    );
    assert.deepEqual(
      [sb.freeTotal, sb.cpuinfoProcessors, sb.pythonCpuCount, sb.getconfOnln, sb.statCpuLines],
      [512 * MiB, 2, 2, 2, "cpu,cpu0,cpu1,"],
    );
  });

  it("a host process reading the mount gets the host's figures", () => {
    const viaMount = Number(/^MemTotal:\s+(\d+)/m.exec(fs.readFileSync(path.join(node.mountpoint, "proc/meminfo"), "utf8"))?.[1]);
    assert.equal(viaMount, hostMemTotalKb());
  });
});

describe("a pod that cannot see the host's cgroups (no hostPath of /sys/fs/cgroup)", () => {
  let node: Node;
  before(async () => {
    node = startNode((pod) => {
      pod.containers[0].volumeMounts = pod.containers[0].volumeMounts?.filter((m) => m.name !== "cgroup");
    });
    await until("the pod serves", () => node.pod.output().includes("procview: serving"), node);
  });
  after(async () => {
    await stopNode(node);
  });

  it("serve warns in one line with the fix, and check fails instead of passing", () => {
    const warning = node.pod
      .output()
      .split("\n")
      .filter((l) => l.includes("warning"));
    assert.equal(warning.length, 1, node.pod.output());
    assert.match(
      warning[0],
      /cannot see the host's cgroup trees \(pid 1's cgroup \S+ is outside the cgroup trees mounted here\).*hostPath volume of \/sys\/fs\/cgroup/,
    );
    assert.throws(
      () => node.pod.exec(["/opt/procview/bin/procview", "check", "--mountpoint", "/var/lib/procview"]),
      /exit 1: procview: blind to the host's cgroups: pid 1's cgroup \S+ is outside/,
    );
  });

  it("a container reading through it gets the host's files, and the pod logs that reader once, with its cgroup line", async () => {
    const c = new Container({ memoryBytes: 256 * MiB, source: node.mountpoint });
    try {
      for (let i = 0; i < 3; i++) assert.equal(Number(c.sh("awk '/^MemTotal/{print $2}' /proc/meminfo")), hostMemTotalKb());
      await until("the reader is logged", () => node.pod.output().includes(c.id), node);
      const logged = node.pod
        .output()
        .split("\n")
        .filter((l) => l.includes(c.id));
      assert.equal(logged.length, 1, logged.join("\n"));
      const entry = JSON.parse(logged[0]) as { pid: number; cgroup: string; msg: string };
      assert.match(entry.msg, /outside the cgroup trees this daemon can see/);
      assert.match(entry.cgroup, new RegExp(`memory:[^\\n]*${c.id}`));
      assert.ok(entry.pid > 1);
    } finally {
      c.destroy();
    }
  });
});
