// procview where it is deployed: inside its own DaemonSet container (the spec read from
// deploy/base/daemonset.yaml and run with runc: privileged, the host's pid namespace, the
// mountpoint Bidirectional), on this cgroup v1 host where runc binds each hierarchy to the
// container's own cgroup. Limited containers beside it must see their own limits.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { seenIn } from "../helpers/checks";
import { isMounted, tempDir } from "../helpers/daemons";
import { CsiCaller, OK, publishRequest, str, unpublishRequest } from "../helpers/csi";
import { NODE_NAME, sharedMount, startDaemonSetPod } from "../helpers/daemonset";
import { kitObject } from "../helpers/deploy";
import { handoverLine, readInLoop, totals, watchCounters } from "../helpers/storm";
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

describe("a DaemonSet upgrade as deploy/base rolls it: the new pod starts beside the old (maxSurge 1), then the old one stops", () => {
  it("the new pod takes the old one's connection over: pods' readers never fail or get the node's figures, and the old pod's stop leaves every mount in place", async () => {
    const strategy = kitObject("deploy/base/daemonset.yaml", "DaemonSet").spec.updateStrategy.rollingUpdate;
    assert.deepEqual([strategy.maxSurge, strategy.maxUnavailable], [1, 0]);
    const old = startNode();
    let next: Container | undefined;
    const cs: Container[] = [];
    try {
      await until("the old pod serves", () => old.pod.output().includes("procview: serving"), old);
      cs.push(new Container({ memoryBytes: 256 * MiB, cpus: "0-1", source: old.mountpoint }));
      cs.push(new Container({ memoryBytes: 512 * MiB, cpus: "0-1", source: old.mountpoint }));
      const readers = cs.flatMap((c, i) => [0, 1].map(() => readInLoop(c, (i ? 512 : 256) * 1024, 12)));
      const sampler = watchCounters(cs[0], 12);
      await new Promise((r) => setTimeout(r, 2000));
      // The kubelet starts the new pod with the same hostPath volumes.
      const state = path.join(old.dir, "procview.state");
      next = startDaemonSetPod({ "/var/lib/procview": old.mountpoint, "/var/lib/procview.state": state });
      const pod = next;
      await until("the new pod serves", () => pod.output().includes("procview: serving"), { ...old, pod });
      assert.match(pod.output(), /took the connection over from pid \d+ in \d+ ms/);
      // Ready: the DaemonSet controller deletes the old pod.
      assert.match(pod.exec(["/opt/procview/bin/procview", "check", "--mountpoint", "/var/lib/procview"]), /^ok: /);
      assert.ok(await old.pod.stop("TERM", 20_000), `the old pod did not stop: ${old.pod.output()}`);
      assert.match(old.pod.output(), /handed the connection over to pid/);
      old.pod.destroy();
      const t = totals(await Promise.all(readers));
      const counters = await sampler;
      console.log(`# ${handoverLine(pod.output(), t, counters)}`);
      assert.deepEqual([t.fail, t.wrong, t.slow], [0, 0, 0]);
      assert.ok(t.ok > 100, `${t.ok} reads`);
      assert.deepEqual([counters.fail, counters.backward, counters.steps], [0, 0, []]);
      assert.deepEqual(
        cs.map((c) => Number(c.sh("awk '/^MemTotal/{print $2}' /proc/meminfo"))),
        [256 * 1024, 512 * 1024],
        "after the old pod is gone",
      );
      assert.equal(isMounted(old.mountpoint), true);
    } finally {
      for (const c of cs) c.destroy();
      if (next) {
        old.pod.destroy();
        await stopNode({ ...old, pod: next });
      } else await stopNode(old);
    }
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

describe("deploy/overlays/csi's DaemonSet pod: inline CSI volumes for Pod Security restricted namespaces", () => {
  // The node's directories the overlay's pod mounts, each stood in for here.
  let dir: string;
  let node: { pod: Container; undo: () => void };
  let caller: CsiCaller;
  const paths = () => ({
    mountpoint: path.join(dir, "procview"),
    state: path.join(dir, "procview.state"),
    pods: path.join(dir, "kubelet/pods"),
    plugin: path.join(dir, "kubelet/plugins/csi.procview.io"),
    registry: path.join(dir, "kubelet/plugins_registry"),
  });
  const containers: Container[] = [];
  before(async () => {
    dir = tempDir("pv-node-");
    const p = paths();
    for (const d of Object.values(p)) fs.mkdirSync(d, { recursive: true, mode: 0o700 });
    // The node's / is shared (systemd): the pod's Bidirectional mounts reach the host through it.
    const undoMountpoint = sharedMount(p.mountpoint);
    const undoPods = sharedMount(p.pods);
    const pod = startDaemonSetPod(
      {
        "/var/lib/procview": p.mountpoint,
        "/var/lib/procview.state": p.state,
        "/var/lib/kubelet/pods": p.pods,
        "/var/lib/kubelet/plugins/csi.procview.io": p.plugin,
        "/var/lib/kubelet/plugins_registry": p.registry,
      },
      undefined,
      "deploy/overlays/csi",
    );
    node = {
      pod,
      undo: () => {
        undoPods();
        undoMountpoint();
      },
    };
    for (const end = Date.now() + 30_000; !pod.output().includes("CSI node plugin listening"); await new Promise((r) => setTimeout(r, 100)))
      if (Date.now() > end) throw new Error(`the CSI plugin did not start: ${pod.output()}`);
    caller = new CsiCaller(path.join(p.plugin, "csi.sock"));
  });
  after(async () => {
    caller?.close();
    for (const c of containers) c.destroy();
    if (node) {
      const stopped = await node.pod.stop("TERM", 20_000);
      node.pod.destroy();
      // Volumes the test left published are the kubelet's to unmount: here, the test's.
      spawnSync("umount", ["-R", "-l", paths().pods]);
      node.undo();
      assert.ok(stopped, `the daemon did not stop on SIGTERM: ${node.pod.output()}`);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("the kubelet's calls on the registered socket: the node's name, and a volume a limited container reads its own figures from", async () => {
    const info = await caller.call("/csi.v1.Identity/GetPluginInfo");
    assert.equal(str(info.fields, 1), "csi.procview.io", info.details);
    assert.equal(str((await caller.call("/csi.v1.Node/NodeGetInfo")).fields, 1), NODE_NAME);
    // The kubelet names the target by its path on the node.
    const target = "/var/lib/kubelet/pods/0f6c7a52-6d0e-4a37-9c5b-1d2e3f4a5b6c/volumes/kubernetes.io~csi/procview/mount";
    const onHost = path.join(paths().pods, path.relative("/var/lib/kubelet/pods", target));
    fs.mkdirSync(path.dirname(onHost), { recursive: true });
    const r = await caller.call("/csi.v1.Node/NodePublishVolume", publishRequest({ target }));
    assert.equal(r.code, OK, `${r.details}\n${node.pod.output()}`);
    assert.ok(fs.readdirSync(path.join(onHost, "proc")).includes("meminfo"), "the volume reached the node");
    // The pod, as the kubelet starts it: files by subPath, the volume itself at /run/procview.
    const c = new Container({ memoryBytes: 256 * MiB, cpuQuota: 0.5, cpus: "0-1", source: onHost });
    containers.push(c);
    const seen = seenIn(c);
    assert.deepEqual([seen.freeTotal, seen.cpuinfoProcessors, seen.getconfOnln], [256 * MiB, 1, 1]);

    assert.equal((await caller.call("/csi.v1.Node/NodeUnpublishVolume", unpublishRequest(target))).code, OK);
    assert.ok(!fs.existsSync(onHost));
    // The node's own mountpoint is untouched by the volume's unmount.
    const hostKb = Number(/^MemTotal:\s+(\d+)/m.exec(fs.readFileSync(path.join(paths().mountpoint, "proc/meminfo"), "utf8"))?.[1]);
    assert.equal(hostKb, hostMemTotalKb());
  });
});
