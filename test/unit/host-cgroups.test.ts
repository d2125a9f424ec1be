// Finding the host's cgroup trees from inside a container: the highest mount of each
// hierarchy wins, a cgroup namespace is seen through by finding our own process, and a
// reader that cannot be placed is said to be so instead of being given the wrong cgroup.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, it } from "node:test";
import { KeptFiles } from "../../src/cgroup/files";
import { hostCgroupProblem, resolveNamespaceRoots } from "../../src/cgroup/host";
import { layoutFromMounts } from "../../src/cgroup/layout";
import { CgroupReader } from "../../src/cgroup/reader";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "pv-hostcg-"));
after(() => fs.rmSync(root, { recursive: true, force: true }));
function tree(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(root, "t-"));
  for (const [f, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.writeFileSync(path.join(dir, f), text);
  }
  return dir;
}
const v1 = (mountPoint: string, ctrl: string, root: string) => ({ mountPoint, root, fsType: "cgroup", superOptions: `rw,${ctrl}` });
const v2 = (mountPoint: string, root: string) => ({ mountPoint, root, fsType: "cgroup2", superOptions: "rw" });

describe("cgroup v1 in a container: its own sub-tree and the host's tree", () => {
  const own = tree({ "memory.stat": "" });
  const host = tree({ "memory/kubepods/pod1/ctr/memory.stat": "", "memory/kubepods/pod9/other/memory.stat": "" });

  it("the host's whole tree is read, whichever order the mounts come in", () => {
    for (const mounts of [
      [v1(own, "memory", "/kubepods/pod9/other"), v1(path.join(host, "memory"), "memory", "/")],
      [v1(path.join(host, "memory"), "memory", "/"), v1(own, "memory", "/kubepods/pod9/other")],
    ]) {
      const reader = new CgroupReader(layoutFromMounts(mounts), new KeptFiles());
      const cg = reader.fromProcCgroup("4:memory:/kubepods/pod1/ctr\n");
      assert.equal(cg.unplaced, undefined);
      assert.equal(cg.byController.memory?.dir, path.join(host, "memory/kubepods/pod1/ctr"));
    }
  });

  it("with only its own sub-tree, another container is unplaced (not given a made-up directory)", () => {
    const reader = new CgroupReader(layoutFromMounts([v1(own, "memory", "/kubepods/pod9/other")]), new KeptFiles());
    assert.equal(reader.fromProcCgroup("4:memory:/kubepods/pod1/ctr\n").unplaced, "memory:/kubepods/pod1/ctr");
    // Its own cgroup, and one below it, are inside what it sees.
    assert.equal(reader.fromProcCgroup("4:memory:/kubepods/pod9/other\n").byController.memory?.dir, own);
    assert.equal(reader.fromProcCgroup("4:memory:/kubepods/pod9/other/x\n").byController.memory?.dir, path.join(own, "x"));
    // A sibling whose name starts the same is not below it.
    assert.equal(reader.fromProcCgroup("4:memory:/kubepods/pod9/other2\n").unplaced, "memory:/kubepods/pod9/other2");
  });

  it("a path placed by the rules but missing on disk is unplaced too", () => {
    const reader = new CgroupReader(layoutFromMounts([v1(path.join(host, "memory"), "memory", "/")]), new KeptFiles());
    assert.match(reader.fromProcCgroup("4:memory:/not/there\n").unplaced ?? "", /^memory:.*\/not\/there$/);
  });

  it("the start-up check: the host's init at the root is fine; outside the trees, or not at the root, is not", () => {
    const files = (procRoot: string) => ({ read: (p: string) => (p === "/proc/1/cgroup" ? procRoot : undefined) }) as unknown as KeptFiles;
    const hostLayout = layoutFromMounts([v1(path.join(host, "memory"), "memory", "/")]);
    const ownLayout = layoutFromMounts([v1(own, "memory", "/kubepods/pod9/other")]);
    const check = (layout: typeof hostLayout, text: string | undefined) => hostCgroupProblem(layout, files(text as string));
    assert.equal(check(hostLayout, "9:name=systemd:/init.scope\n4:memory:/\n0::/init.scope\n"), undefined);
    assert.equal(check(ownLayout, "4:memory:/\n"), "pid 1's cgroup memory:/ is outside the cgroup trees mounted here");
    assert.equal(
      check(hostLayout, "4:memory:/kubepods/pod1/ctr\n"),
      "pid 1 is in cgroup memory:/kubepods/pod1/ctr, so it is not the host's init (hostPID)",
    );
    assert.equal(check(hostLayout, undefined), "/proc/1/cgroup cannot be read");
    assert.equal(check(layoutFromMounts([]), "4:memory:/\n"), "no cgroup hierarchy with the memory, cpu or cpuset controller is mounted");
  });
});

describe("cgroup v2 with a private cgroup namespace", () => {
  // The host's tree; our namespace's root is /kubepods/podD/daemon, where our pid is.
  const host = tree({
    "cgroup.controllers": "cpu memory io\n",
    "kubepods/podD/daemon/cgroup.procs": `1\n${process.pid}\n`,
    "kubepods/podD/daemon/memory.max": "max\n",
    "kubepods/podA/app/cgroup.procs": "4242\n",
    "kubepods/podA/app/memory.max": "268435456\n",
    "kubepods/podB/x/cgroup.procs": "17\n",
  });
  const own = path.join(host, "kubepods/podD/daemon");

  it("the host's tree, shown as /../../.. from inside, is read from where our own pid sits", () => {
    // Mounted twice: the namespace's own view ("/") and the host's (a hostPath volume).
    const layout = layoutFromMounts([v2(own, "/"), v2(host, "/../../..")]);
    assert.deepEqual(resolveNamespaceRoots(layout, "0::/\n", process.pid), []);
    assert.equal(layout.unified?.nsRoot, "/kubepods/podD/daemon");
    const reader = new CgroupReader(layout, new KeptFiles());
    // Another pod's container, as /proc/PID/cgroup shows it from inside our namespace.
    const app = reader.fromProcCgroup("0::/../../podA/app\n");
    assert.equal(app.unplaced, undefined);
    assert.equal(app.byController.memory?.dir, path.join(host, "kubepods/podA/app"));
    assert.equal(reader.fromProcCgroup("0::/\n").byController.memory?.dir, own);
    // Above the host's root: nowhere.
    assert.equal(reader.fromProcCgroup("0::/../../../../x\n").unplaced, "memory:/../../../../x");
    // The host's init, seen from inside: three levels up is the root, so the pod sees the host.
    const files = (t: string) => ({ read: (p: string) => (p === "/proc/1/cgroup" ? t : undefined) }) as unknown as KeptFiles;
    fs.mkdirSync(path.join(host, "init.scope"), { recursive: true });
    assert.equal(hostCgroupProblem(layout, files("0::/../../../init.scope\n")), undefined);
    assert.equal(
      hostCgroupProblem(layout, files("0::/../../podA/app\n")),
      "pid 1 is in cgroup (v2):/../../podA/app, so it is not the host's init (hostPID)",
    );
  });

  it("our process not found at that depth, or only the namespace's own view: '/..' readers stay unplaced", () => {
    const layout = layoutFromMounts([v2(host, "/../../..")]);
    assert.deepEqual(resolveNamespaceRoots(layout, "0::/\n", 999_999_999), ["unified"]);
    const onlyOwn = layoutFromMounts([v2(own, "/")]);
    assert.deepEqual(resolveNamespaceRoots(onlyOwn, "0::/\n", process.pid), []);
    const reader = new CgroupReader(onlyOwn, new KeptFiles());
    assert.match(reader.fromProcCgroup("0::/../../podA/app\n").unplaced ?? "", /^\w+:\/\.\.\/\.\.\/podA\/app$/);
  });

  it("when we sit below our namespace's root, the search goes that much deeper", () => {
    const deep = tree({ "cgroup.controllers": "memory\n", "k/p/d/init/cgroup.procs": `${process.pid}\n`, "k/q/a/memory.max": "1\n" });
    const layout = layoutFromMounts([v2(deep, "/../../..")]);
    assert.deepEqual(resolveNamespaceRoots(layout, "0::/init\n", process.pid), []);
    assert.equal(layout.unified?.nsRoot, "/k/p/d");
    const reader = new CgroupReader(layout, new KeptFiles());
    assert.equal(reader.fromProcCgroup("0::/../../q/a\n").byController.memory?.dir, path.join(deep, "k/q/a"));
  });
});
