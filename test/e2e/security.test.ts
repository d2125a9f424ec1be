// procview against the containers it serves, tried as an attacker in a container would:
// images whose sh, mount, umount, nsenter and busybox write a marker if anything runs
// them; an image with no shell at all; images whose /run, /run/procview, /proc or /sys are
// symlinks out of their root; a container reading everything the daemon leaves where it
// can see; container ids that name several containers. Real runc containers throughout.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, describe, it } from "node:test";
import { BIN, cleanMountpoint, type Daemon, startProcview, tempDir } from "../helpers/daemons";
import { Container } from "../helpers/runc";

const MiB = 1024 * 1024;
const hostMemTotalKb = () => Number(/^MemTotal:\s+(\d+)/m.exec(fs.readFileSync("/proc/meminfo", "utf8"))?.[1]);
const memTotalKb = (c: Container, cat = "cat") => Number(/^MemTotal:\s+(\d+)/m.exec(c.exec([cat, "/proc/meminfo"]))?.[1]);

const containers: Container[] = [];
const daemons: Daemon[] = [];
const dirs: string[] = [];
after(async () => {
  for (const c of containers) c.destroy();
  for (const d of daemons) await d.stop();
  for (const d of dirs) {
    cleanMountpoint(d);
    fs.rmSync(d, { recursive: true, force: true });
  }
});

function track<T extends Container>(c: T): T {
  containers.push(c);
  return c;
}
function dir(prefix: string): string {
  const d = tempDir(prefix);
  dirs.push(d);
  return d;
}

function cli(args: string[], input?: string) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", input, timeout: 60_000 });
}

async function waitFor(cond: () => boolean, what: string, d: Daemon): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; daemon said: ${d.output()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function killHard(d: Daemon): Promise<void> {
  const kids = fs.readFileSync(`/proc/${d.proc.pid}/task/${d.proc.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
  for (const k of kids) process.kill(Number(k), "SIGKILL");
  d.proc.kill("SIGKILL");
  await new Promise((r) => d.proc.once("exit", r));
}

/** An image whose tools report being run: in the container's root (/marker) or the host's (markerDir). */
function hostileTools(markerDir: string) {
  return (rootfs: string) => {
    for (const d of ["bin", "sbin"]) {
      fs.rmSync(path.join(rootfs, d));
      fs.mkdirSync(path.join(rootfs, d));
      for (const tool of ["sh", "bash", "mount", "umount", "nsenter", "busybox"]) {
        const p = path.join(rootfs, d, tool);
        fs.writeFileSync(p, `#!/usr/bin/dash\necho "$0 $*" >> /marker/executed\necho "$0 $*" >> ${markerDir}/executed\nexit 1\n`, {
          mode: 0o755,
        });
      }
    }
  };
}
const markerMount = (markerDir: string) => ({ destination: "/marker", type: "bind", source: markerDir, options: ["rbind", "rw"] });
const markers = (markerDir: string) => (fs.existsSync(`${markerDir}/executed`) ? fs.readFileSync(`${markerDir}/executed`, "utf8") : "");

describe("nothing of a container's image is ever run", () => {
  it("a hostile image and a distroless one through stop, start, SIGKILL, remount, umount and the OCI hook: no marker, own figures after each step", async () => {
    const mnt = dir("procview-mnt-");
    const marker = dir("pv-marker-");
    let d = await startProcview([], mnt);
    const hostile = track(
      new Container({
        memoryBytes: 256 * MiB,
        cpus: "0-1",
        source: mnt,
        prepareRootfs: hostileTools(marker),
        mounts: [markerMount(marker)],
      }),
    );
    const bare = track(new Container({ memoryBytes: 512 * MiB, cpus: "0-1", source: mnt, image: "distroless" }));
    const seen = () => [memTotalKb(hostile), memTotalKb(bare, "/app/cat")];
    const own = [262144, 524288];
    const host = [hostMemTotalKb(), hostMemTotalKb()];
    const step = (name: string, want: number[]) => {
      assert.deepEqual(seen(), want, name);
      assert.equal(markers(marker), "", `${name}: the image's tools were run`);
    };
    step("served", own);

    d.proc.kill("SIGTERM");
    assert.equal(await new Promise((r) => d.proc.once("exit", r)), 0);
    step("daemon stopped (upgrade): the host's files", host);

    d = await startProcview([], mnt);
    await waitFor(() => /re-bound 16 mount\(s\) in 2 container\(s\)/.test(d.output()), "the handed-over containers", d);
    step("daemon started: re-bound", own);

    await killHard(d);
    d = await startProcview([], mnt);
    await waitFor(() => /re-bound 16 mount\(s\) in 2 container\(s\)/.test(d.output()), "the stale containers", d);
    step("SIGKILL and start: stale mounts re-bound", own);

    await killHard(d);
    d = await startProcview(["--no-remount"], mnt);
    daemons.push(d);
    const remount = cli(["remount", "--all", "--mountpoint", mnt]);
    assert.equal(remount.status, 0, remount.stderr);
    assert.match(remount.stdout, /^re-bound 16 mount\(s\) in 2 container\(s\)$/m);
    step("procview remount --all", own);

    const umount = cli(["umount", "--container-id", hostile.id, "--mountpoint", mnt]);
    assert.equal(umount.status, 0, umount.stderr);
    assert.match(umount.stdout, /^detached 8 mount\(s\) in 1 container\(s\)$/m);
    step("procview umount --container-id: that container only", [hostMemTotalKb(), 524288]);

    const hooked = track(
      new Container({
        memoryBytes: 256 * MiB,
        cpus: "0-1",
        prepareRootfs: hostileTools(marker),
        mounts: [markerMount(marker)],
        hooks: { createRuntime: [{ path: process.execPath, args: ["node", BIN, "oci-hook", "--mountpoint", mnt], timeout: 30 }] },
      }),
    );
    assert.equal(memTotalKb(hooked), 262144, "the OCI hook bound the files");
    assert.equal(markers(marker), "", "OCI hook: the image's tools were run");
  });
});

describe("symlinks in an image never lead the OCI hook out of the container's root", () => {
  // Each image has one link pointing at an empty host directory, directly or by "..".
  const cases: [string, (rootfs: string, target: string) => void][] = [
    ["/run -> host path", (r, t) => relink(r, "run", t)],
    ["/run -> ../../.. chain", (r, t) => relink(r, "run", `${"../".repeat(12)}${t.slice(1)}`)],
    ["/run/procview -> host path", (r, t) => fs.symlinkSync(t, path.join(r, "run/procview"))],
    ["/run/procview -> ../../.. chain", (r, t) => fs.symlinkSync(`${"../".repeat(12)}${t.slice(1)}`, path.join(r, "run/procview"))],
    ["/proc -> host path", (r, t) => relink(r, "proc", t)],
    ["/sys -> ../../.. chain", (r, t) => relink(r, "sys", `${"../".repeat(12)}${t.slice(1)}`)],
  ];
  function relink(rootfs: string, name: string, target: string) {
    fs.rmSync(path.join(rootfs, name), { recursive: true, force: true });
    fs.symlinkSync(target, path.join(rootfs, name));
  }
  const hostMounts = () => fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").length;

  it("nothing created or mounted outside the root; a container that starts gets its own files", async () => {
    const mnt = dir("procview-mnt-");
    const d = await startProcview([], mnt);
    daemons.push(d);
    const outcomes: string[] = [];
    for (const [name, link] of cases) {
      const target = dir("pv-escape-");
      const before = hostMounts();
      let c: Container | undefined;
      try {
        c = track(
          new Container({
            memoryBytes: 256 * MiB,
            cpus: "0-1",
            prepareRootfs: (r) => link(r, target),
            hooks: { createRuntime: [{ path: process.execPath, args: ["node", BIN, "oci-hook", "--mountpoint", mnt], timeout: 30 }] },
          }),
        );
      } catch (e) {
        // runc itself may refuse an image whose /proc or /sys is a link.
        outcomes.push(`${name}: runc refused (${(e as Error).message.split("\n").pop()?.slice(0, 80)})`);
      }
      assert.deepEqual(fs.readdirSync(target), [], `${name}: something was created in ${target} on the host`);
      assert.equal(hostMounts(), before, `${name}: the host's mount table changed`);
      assert.ok(!fs.readFileSync("/proc/self/mountinfo", "utf8").includes(target), `${name}: ${target} is mounted on the host`);
      if (c && !name.startsWith("/proc")) {
        assert.equal(memTotalKb(c), 262144, `${name}: the container's own /proc/meminfo`);
        outcomes.push(`${name}: started, own figures`);
      }
    }
    console.log(`# ${outcomes.join("; ")}`);
  });
});

describe("what a container can see of the daemon", () => {
  it("everything under /run/procview, read as uid 1000, says nothing about other containers; the handover record is root-only, elsewhere", async () => {
    const mnt = dir("procview-mnt-");
    fs.chmodSync(mnt, 0o755); // as /var/lib/procview is: readable by anyone
    let d = await startProcview([], mnt);
    const cs = [0, 1, 2].map(() => track(new Container({ memoryBytes: 256 * MiB, cpus: "0-1", source: mnt })));
    const others = cs.slice(1).flatMap((c) => [c.id, String(c.pid)]);
    const everything = (c: Container) => {
      const list = c.exec(["find", "/run/procview", "-maxdepth", "3"], "1000:1000");
      const files = c
        .exec(["find", "/run/procview", "-maxdepth", "3", "-type", "f", "-readable"], "1000:1000")
        .trim()
        .split("\n")
        .filter(Boolean);
      const text = files.map((f) => c.exec(["cat", f], "1000:1000")).join("\n");
      return { list, text };
    };

    d.proc.kill("SIGTERM");
    await new Promise((r) => d.proc.once("exit", r));
    // Between daemons: the record exists, and not where containers look.
    const state = `${mnt}.state`;
    dirs.push(state);
    assert.equal(fs.statSync(state).mode & 0o777, 0o700);
    assert.equal(fs.statSync(path.join(state, "handover.json")).mode & 0o777, 0o600);
    const between = everything(cs[0]);
    assert.deepEqual(between.list.trim().split("\n").sort(), [
      "/run/procview",
      "/run/procview/.fs",
      "/run/procview/proc",
      "/run/procview/sys",
    ]);
    assert.equal(between.text, "");

    d = await startProcview([], mnt);
    daemons.push(d);
    await waitFor(() => /re-bound 24 mount\(s\) in 3 container\(s\)/.test(d.output()), "the re-bind", d);
    const serving = everything(cs[0]);
    assert.doesNotMatch(serving.list, /handover|\.json|state/);
    assert.match(serving.list, /^\/run\/procview\/\.fs\/proc$/m);
    assert.doesNotMatch(serving.text, /mnt:\[/);
    for (const o of others) assert.ok(!new RegExp(`\\b${o}\\b`).test(serving.text), `another container's ${o} is visible`);
  });
});

describe("--container-id", () => {
  it("takes a full id or a unique prefix of 12 or more characters; ambiguity, substrings and short prefixes are refused and touch nothing", async () => {
    const mnt = dir("procview-mnt-");
    const d = await startProcview([], mnt);
    daemons.push(d);
    const named = (name: string) => track(new Container({ memoryBytes: 256 * MiB, cpus: "0-1", source: mnt, name }));
    // a's id is a prefix of b's; c's id looks like a runtime's (hex) and starts like no other.
    const a = named(`pvid-${process.pid}-aaaa1`);
    const b = named(`pvid-${process.pid}-aaaa10`);
    const c = named(`${process.pid}feedc0ffee0123456789abcdef`);
    const cs = [a, b, c];
    const umount = (id: string) => cli(["umount", "--container-id", id, "--mountpoint", mnt]);
    const own = () => cs.map((x) => memTotalKb(x) === 262144);

    const refused: [string, RegExp][] = [
      [`pvid-${process.pid}-aaaa`, /names 2 containers/],
      [c.id.slice(0, 11), /too short/],
      [c.id.slice(2), /no running container/],
      ["no-such-container-id", /no running container/],
    ];
    for (const [id, message] of refused) {
      const r = umount(id);
      assert.equal(r.status, 1, `${id}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, message);
      assert.deepEqual(own(), [true, true, true], `${id}: a container was touched`);
    }
    // A full id that is also the prefix of another: the full id wins.
    const exact = umount(a.id);
    assert.equal(exact.status, 0, exact.stderr);
    assert.match(exact.stdout, /^detached 8 mount\(s\) in 1 container\(s\)$/m);
    assert.deepEqual(own(), [false, true, true]);
    // A unique prefix of 14 characters.
    const prefix = umount(c.id.slice(0, 14));
    assert.equal(prefix.status, 0, prefix.stderr);
    assert.deepEqual(own(), [false, true, false]);
    assert.equal(memTotalKb(c), hostMemTotalKb());
  });
});
