// procview's CSI node plugin, called as the kubelet calls it: real gRPC over a Unix socket,
// the messages encoded here from the CSI v1 specification's field numbers (not from
// procview's own .proto), real mounts, and a real runc container that binds its files out
// of the published volume with subPath-style binds, as the kubelet makes them. The pods
// directory is a shared mount with a peer elsewhere, as the kubelet's is on a node: a
// volume must never let an unmount there reach procview's own mountpoint.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { CsiCaller, decode, INVALID_ARGUMENT, OK, type Publish, publishRequest, str, unpublishRequest } from "../helpers/csi";
import { childrenOf, cleanMountpoint, type Daemon, startProcview, tempDir } from "../helpers/daemons";
import { Container } from "../helpers/runc";

const MiB = 1024 * 1024;
const sh = (cmd: string) => spawnSync("sh", ["-c", cmd], { encoding: "utf8" });
const mountinfo = () => fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n");
const mountsAt = (p: string) => mountinfo().filter((l) => l.split(" ")[4] === p).length;
const mountsUnder = (p: string) => mountinfo().filter((l) => (l.split(" ")[4] ?? "").startsWith(`${p}/`));
const memTotalKb = (text: string) => Number(/^MemTotal:\s+(\d+)/m.exec(text)?.[1]);

// --- the node --------------------------------------------------------------------------
const work = tempDir("procview-csi-");
const pods = path.join(work, "pods");
const peer = path.join(work, "pods-peer");
const sock = path.join(work, "plugin/csi.sock");
const volume = (uid: string) => path.join(pods, uid, "volumes/kubernetes.io~csi/procview/mount");
const args = ["--csi-endpoint", `unix://${sock}`, "--csi-pods-dir", pods, "--csi-node-id", "node-a"];
let daemon: Daemon;
let caller: CsiCaller;
const call = (method: string, body?: Buffer) => caller.call(method, body);
const mountpoint = tempDir("procview-mnt-");
const containers: Container[] = [];

before(async () => {
  // The kubelet's pods directory is shared, and has a peer: what is mounted there is seen there.
  fs.mkdirSync(pods, { recursive: true });
  fs.mkdirSync(peer);
  for (const a of [
    ["--bind", pods, pods],
    ["--make-shared", pods],
    ["--bind", pods, peer],
  ])
    assert.equal(spawnSync("mount", a).status, 0, `mount ${a.join(" ")}`);
  daemon = await startProcview(args, mountpoint);
  caller = new CsiCaller(sock);
});

after(async () => {
  caller?.close();
  for (const c of containers) c.destroy();
  await daemon?.stop();
  for (const d of [peer, pods]) while (mountsAt(d)) spawnSync("umount", ["-l", d]);
  cleanMountpoint(mountpoint);
  fs.rmSync(work, { recursive: true, force: true });
});

describe("CSI identity, as node-driver-registrar and the kubelet ask", () => {
  it("GetPluginInfo names csi.procview.io; Probe is ready; NodeGetInfo gives the node; the socket is root-only", async () => {
    const info = await call("/csi.v1.Identity/GetPluginInfo");
    assert.equal(info.code, OK, info.details);
    assert.equal(str(info.fields, 1), "csi.procview.io");
    assert.match(str(info.fields, 2), /^\d+\.\d+\.\d+$/);
    const probe = await call("/csi.v1.Identity/Probe");
    assert.equal(probe.code, OK);
    assert.deepEqual(decode(probe.fields.get(1)?.[0] as Uint8Array).get(1), [1], "ready: BoolValue{value: true}");
    const node = await call("/csi.v1.Node/NodeGetInfo");
    assert.equal(str(node.fields, 1), "node-a");
    assert.equal((await call("/csi.v1.Node/NodeGetCapabilities")).code, OK);
    assert.equal(fs.statSync(sock).mode & 0o777, 0o600);
    // What procview does not do, it says so: staging is for persistent volumes.
    assert.equal((await call("/csi.v1.Node/NodeStageVolume")).code, grpc.status.UNIMPLEMENTED);
  });
});

describe("an inline ephemeral volume", () => {
  it("publish: the volume holds procview's files; a limited container bound from it reads its own figures", async () => {
    const target = volume("pod-a");
    fs.mkdirSync(path.dirname(target), { recursive: true });
    const r = await call("/csi.v1.Node/NodePublishVolume", publishRequest({ target }));
    assert.equal(r.code, OK, r.details);
    assert.equal(sh(`ls -l ${target}/proc | grep uptime`).status, 0);
    // Through the peer too: the volume is on the kubelet's side of the node.
    assert.equal(
      memTotalKb(fs.readFileSync(path.join(peer, "pod-a/volumes/kubernetes.io~csi/procview/mount/proc/meminfo"), "utf8")),
      memTotalKb(fs.readFileSync("/proc/meminfo", "utf8")),
    );
    const c = new Container({ memoryBytes: 256 * MiB, cpus: "0-1", source: target });
    containers.push(c);
    assert.equal(memTotalKb(c.sh("cat /proc/meminfo")), 262144);
    // The kubelet retries: a second publish changes nothing.
    assert.equal((await call("/csi.v1.Node/NodePublishVolume", publishRequest({ target }))).code, OK);
    assert.equal(mountsAt(target), 1);
  });

  it("refuses, with INVALID_ARGUMENT and a reason, every request it must not act on; nothing is mounted", async () => {
    fs.mkdirSync(path.join(pods, "pod-x"), { recursive: true });
    fs.symlinkSync("/etc", path.join(pods, "pod-x/link"));
    const before = mountinfo().length;
    const cases: [string, Publish, RegExp][] = [
      ["relative path", { target: "pods/pod-b/mount" }, /not a plain absolute path/],
      ["dot-dot", { target: `${pods}/pod-b/../../escape` }, /not a plain absolute path/],
      ["outside the pods directory", { target: path.join(work, "elsewhere") }, /not inside the kubelet's pods directory/],
      ["the pods directory itself", { target: pods }, /not inside/],
      ["through a symlink", { target: path.join(pods, "pod-x/link/procview") }, /symbolic link/],
      ["not ephemeral (a persistent volume)", { target: volume("pod-b"), ephemeral: false }, /only inline ephemeral/],
      ["a block volume", { target: volume("pod-b"), block: true }, /block/],
      ["no volume_id", { target: volume("pod-b"), volumeId: "" }, /volume_id is required/],
    ];
    for (const [name, p, why] of cases) {
      const r = await call("/csi.v1.Node/NodePublishVolume", publishRequest(p));
      assert.equal(r.code, INVALID_ARGUMENT, `${name}: ${r.code} ${r.details}`);
      assert.match(r.details, why, name);
    }
    assert.equal(mountinfo().length, before);
    assert.ok(!fs.existsSync("/etc/procview"), "nothing created through the symlink");
    assert.ok(!fs.existsSync(path.join(work, "elsewhere")));
  });

  it("concurrent calls, as a kubelet retrying and starting many pods makes them: one mount per volume, all gone after", async () => {
    const targets = Array.from({ length: 8 }, (_, i) => volume(`pod-many-${i}`));
    const same = volume("pod-same");
    const published = await Promise.all([
      ...targets.map((target) => call("/csi.v1.Node/NodePublishVolume", publishRequest({ target }))),
      ...Array.from({ length: 8 }, () => call("/csi.v1.Node/NodePublishVolume", publishRequest({ target: same }))),
    ]);
    assert.deepEqual(
      published.map((r) => r.code),
      Array(16).fill(OK),
      published.map((r) => r.details).join("; "),
    );
    assert.deepEqual([...targets, same].map(mountsAt), Array(9).fill(1));
    for (const t of [...targets, same]) assert.equal(sh(`cat ${t}/proc/uptime`).status, 0, t);
    const gone = await Promise.all(
      [...targets, same, same, same].map((target) => call("/csi.v1.Node/NodeUnpublishVolume", unpublishRequest(target))),
    );
    assert.deepEqual(
      gone.map((r) => r.code),
      Array(11).fill(OK),
    );
    for (const t of [...targets, same]) assert.ok(!fs.existsSync(t), t);
    assert.deepEqual(
      mountsUnder(pods).filter((l) => l.includes("pod-many") || l.includes("pod-same")),
      [],
    );
  });

  it("a daemon killed and started again: the volume gets the new filesystem and the container is re-bound", async () => {
    const target = volume("pod-a");
    for (const pid of childrenOf(daemon.proc.pid as number)) process.kill(pid, "SIGKILL");
    daemon.proc.kill("SIGKILL");
    await new Promise((r) => daemon.proc.once("exit", r));
    daemon = await startProcview(args, mountpoint);
    const deadline = Date.now() + 30_000;
    while (!/re-bound \d+ mount/.test(daemon.output()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(memTotalKb(containers[0].sh("cat /proc/meminfo")), 262144, daemon.output());
    assert.equal(sh(`ls -l ${target}/proc | grep meminfo`).status, 0);
    assert.equal(mountsAt(`${target}/.fs`), 1, "the old filesystem left the volume, the new one came");
  });

  it("unpublish: the volume goes, on both sides, and procview's own mountpoint and other volumes stay", async () => {
    const other = volume("pod-c");
    assert.equal((await call("/csi.v1.Node/NodePublishVolume", publishRequest({ target: other }))).code, OK);
    const target = volume("pod-a");
    const r = await call("/csi.v1.Node/NodeUnpublishVolume", unpublishRequest(target));
    assert.equal(r.code, OK, r.details);
    assert.ok(!fs.existsSync(target));
    assert.deepEqual(mountsUnder(path.join(pods, "pod-a")), []);
    assert.deepEqual(mountsUnder(path.join(peer, "pod-a")), []);
    // What an unmount reaching the anchor would have taken away:
    assert.equal(
      memTotalKb(fs.readFileSync(path.join(mountpoint, "proc/meminfo"), "utf8")),
      memTotalKb(fs.readFileSync("/proc/meminfo", "utf8")),
    );
    assert.equal(sh(`ls ${other}/proc | grep -c meminfo`).stdout.trim(), "1");
    assert.equal(memTotalKb(containers[0].sh("cat /proc/meminfo")), 262144, "the container's own binds are its own");
    // Again, as a kubelet retrying does: still OK.
    assert.equal((await call("/csi.v1.Node/NodeUnpublishVolume", unpublishRequest(target))).code, OK);
    assert.equal((await call("/csi.v1.Node/NodeUnpublishVolume", unpublishRequest(other))).code, OK);
  });

  it("a stopped daemon removes its socket and leaves nothing mounted but the volumes it did not unpublish", async () => {
    const target = volume("pod-d");
    assert.equal((await call("/csi.v1.Node/NodePublishVolume", publishRequest({ target }))).code, OK);
    assert.equal(await daemon.stop(), 0);
    assert.ok(!fs.existsSync(sock));
    assert.deepEqual(mountsUnder(`${mountpoint}.state`), []);
    // The volume stays for the next daemon; the kubelet unpublishes it when its pod goes.
    assert.equal(mountsAt(target), 1);
    spawnSync("umount", ["-l", target]);
  });
});
