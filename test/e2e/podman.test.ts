// The OCI hook through podman's hooks.d, gated on an annotation, as podman and CRI-O run it.
// podman 4.3 here: runc runtime, vfs storage in private dirs, cgroupfs, and explicit
// ulimits (it cannot raise NOFILE past this sandbox's hard limit). No host /etc inside,
// so no awk (an /etc/alternatives link): sed does the parsing.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { BIN, type Daemon, startProcview, tempDir } from "../helpers/daemons";

let d: Daemon;
let base: string;

before(async () => {
  d = await startProcview();
  base = tempDir("procview-podman-");
  const rootfs = path.join(base, "rootfs");
  for (const dir of ["usr", "etc", "proc", "sys", "dev", "tmp", "run", "var"]) fs.mkdirSync(path.join(rootfs, dir), { recursive: true });
  for (const l of ["bin", "lib", "lib64", "sbin"]) fs.symlinkSync(`usr/${l}`, path.join(rootfs, l));
  fs.mkdirSync(path.join(base, "hooks"));
  // The hooks.d file we ship, pointed at this checkout and this test's mountpoint.
  const hook = JSON.parse(fs.readFileSync(path.resolve(__dirname, "../../../deploy/oci-hooks/procview.json"), "utf8"));
  hook.hook.path = BIN;
  hook.hook.args = ["procview", "oci-hook", "--mountpoint", d.dir];
  fs.writeFileSync(path.join(base, "hooks/procview.json"), JSON.stringify(hook));
});

after(async () => {
  await d?.stop();
  fs.rmSync(base, { recursive: true, force: true });
  // podman leaves its conmon cgroup behind.
  for (const c of fs.readdirSync("/sys/fs/cgroup")) {
    for (const dir of [`/sys/fs/cgroup/${c}/libpod_parent/conmon`, `/sys/fs/cgroup/${c}/libpod_parent`]) {
      try {
        fs.rmdirSync(dir);
      } catch {
        // not there, or still in use
      }
    }
  }
});

function podmanRun(annotations: string[], command: string): string {
  const r = spawnSync(
    "podman",
    [
      ...["--root", path.join(base, "root"), "--runroot", path.join(base, "runroot"), "--storage-driver", "vfs"],
      ...["--runtime", "runc", "--cgroup-manager", "cgroupfs", "--hooks-dir", path.join(base, "hooks")],
      ...["run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "-m", "256m", "--cpus", "0.5"],
      ...annotations.flatMap((a) => ["--annotation", a]),
      ...["-v", "/usr:/usr:ro", "--rootfs", path.join(base, "rootfs"), "sh", "-c", command],
    ],
    { encoding: "utf8", timeout: 120_000 },
  );
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

describe("procview oci-hook through podman's hooks.d", () => {
  it("a container annotated io.procview.inject=true sees its 256 MiB and 1 CPU", () => {
    const out = podmanRun(
      ["io.procview.inject=true"],
      "free -b | sed -n 's/^Mem: *\\([0-9]*\\).*/\\1/p'; grep -c ^processor /proc/cpuinfo; cat /sys/devices/system/cpu/online",
    );
    assert.deepEqual(out.trim().split("\n"), ["268435456", "1", "0"]);
  });

  it("without the annotation the hook does not run: the host's figures", () => {
    const host = /^MemTotal:\s+(\d+)/m.exec(fs.readFileSync("/proc/meminfo", "utf8"))?.[1];
    const out = podmanRun([], "sed -n 's/^MemTotal: *\\([0-9]*\\).*/\\1/p' /proc/meminfo");
    assert.equal(out.trim(), host);
  });
});
