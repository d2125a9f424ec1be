// procview never leaves a container with a broken /proc: the serving process killed over
// and over under load, the whole daemon stopped or killed and started again with 20
// containers, uninstall, and the OCI hook, all with real runc containers.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, describe, it } from "node:test";
import {
  BIN,
  childrenOf,
  childrenTitled,
  cleanMountpoint,
  type Daemon,
  servingOf,
  startProcview,
  tempDir,
  waitServing,
} from "../helpers/daemons";
import { Container } from "../helpers/runc";
import { handoverLine, killEvery, type ReaderCounts, readInLoop, readsLine, totals, watchCounters } from "../helpers/storm";

const MiB = 1024 * 1024;
const memTotalKb = (c: Container) => Number(/^MemTotal:\s+(\d+)/m.exec(c.sh("cat /proc/meminfo"))?.[1]);
const hostMemTotalKb = () => Number(/^MemTotal:\s+(\d+)/m.exec(fs.readFileSync("/proc/meminfo", "utf8"))?.[1]);

/** procview's mounts in the host's own mount table (the daemon's filesystem and its anchor). */
function hostProcviewMounts(): string[] {
  return fs
    .readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter((l) => l.includes("fuse.procview") || l.includes("procview-mnt-"));
}

const containers: Container[] = [];
const daemons: Daemon[] = [];
/** Daemons that handed their connection over: stopped first, leaving the mounts to their successors. */
const givers: Daemon[] = [];
function handedOver(from: Daemon, to: Daemon): void {
  daemons.splice(daemons.indexOf(from), 1, to);
  givers.push(from);
}
after(async () => {
  for (const c of containers) c.destroy();
  for (const g of givers)
    if (g.proc.exitCode === null && g.proc.signalCode === null) {
      g.proc.kill("SIGTERM");
      await Promise.race([new Promise((r) => g.proc.once("exit", r)), new Promise((r) => setTimeout(r, 10_000))]);
    }
  for (const d of daemons) await d.stop();
});

function limited(i: number, source?: string, extra: Partial<ConstructorParameters<typeof Container>[0]> = {}): Container {
  const c = new Container({ memoryBytes: (i % 2 ? 512 : 256) * MiB, cpus: "0-1", source, ...extra });
  containers.push(c);
  return c;
}
const expectedKb = (i: number) => (i % 2 ? 512 : 256) * 1024;

/**
 * 8 readers in 4 containers for 10 s while, every 200 ms, `victims` of the daemon are
 * SIGKILLed: what the readers got, and how many were killed.
 */
async function killStorm(
  victims: (supervisor: number) => number[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ kills: number; ok: number; fail: number; wrong: number; slow: number; diag: string; output: string }> {
  const d = await startProcview([], undefined, env);
  daemons.push(d);
  const cs = [0, 1, 2, 3].map((i) => limited(i, d.dir));
  const runs = cs.flatMap((c, i) => [0, 1].map(() => readInLoop(c, expectedKb(i), 10)));
  const killer = killEvery(200, () => victims(d.proc.pid as number));
  let results: ReaderCounts[];
  try {
    results = await Promise.all(runs);
  } finally {
    // Whatever happens to the readers, the killer stops: a live interval keeps the run alive.
    killer.stop();
  }
  const kills = killer.kills();
  const t = totals(results);
  const diag = `${kills} kills; reads ok ${t.ok}, failed ${t.fail}, wrong ${t.wrong}, slower than 1 s ${t.slow}, worst ${t.worst.toFixed(3)} s`;
  // The daemon itself never goes down: the next daemon would have to re-bind every container.
  assert.equal(d.proc.exitCode, null, diag);
  console.log(`# ${diag}`);
  return { kills, ok: t.ok, fail: t.fail, wrong: t.wrong, slow: t.slow, diag, output: d.output() };
}

describe("the serving process dies every 200 ms for 10 s", () => {
  it("killed whenever one serves: 8 readers in 4 containers get 0 failed reads, none slower than 1 s, every read the container's own figures", async () => {
    const r = await killStorm(servingOf);
    // A kill at every tick that finds a serving process: each successor must start and warm
    // up first (the supervisor's thread serves meanwhile), 0.3-0.6 s under this load.
    assert.ok(r.kills >= 8, r.diag);
    // Handed back to a serving process, the supervisor's thread keeps no descriptor of the
    // containers' cgroups or processes (a removed cgroup's kernel objects would stay with it).
    const supervisor = daemons[daemons.length - 1].proc.pid as number;
    await waitServing(supervisor);
    await new Promise((res) => setTimeout(res, 500));
    const held = fs
      .readdirSync(`/proc/${supervisor}/fd`)
      .map((f) => {
        try {
          return fs.readlinkSync(`/proc/${supervisor}/fd/${f}`);
        } catch {
          return "";
        }
      })
      .filter((l) => l.startsWith("/sys/fs/cgroup/") || /^\/proc\/\d+\//.test(l));
    assert.deepEqual(held, []);
    assert.equal(r.fail, 0, r.diag);
    assert.equal(r.wrong, 0, r.diag);
    assert.equal(r.slow, 0, r.diag);
    assert.ok(r.ok > 100, r.diag);
  });

  it("every serving process killed as soon as it starts (faster than any can): the readers never notice", async () => {
    const r = await killStorm(childrenOf);
    // One at every tick: a new one is started at once after each, until 20 that never got
    // ready in 10 s make the supervisor wait a second between starts.
    assert.ok(r.kills >= 20, r.diag);
    assert.equal(r.fail, 0, r.diag);
    assert.equal(r.wrong, 0, r.diag);
    assert.equal(r.slow, 0, r.diag);
    assert.ok(r.ok > 100, r.diag);
  });
});

describe("without the native helper (a build with no C compiler)", () => {
  it("the serving process serves from a worker thread: killed whenever one serves, 8 readers get 0 failed reads and their own figures", async () => {
    // PROCVIEW_NO_NATIVE=1 runs the daemon as if build/Release/shared_map.node were missing.
    const r = await killStorm(servingOf, { PROCVIEW_NO_NATIVE: "1" });
    assert.match(r.output, /the native helper is not built/);
    assert.ok(r.kills >= 8, r.diag);
    assert.equal(r.fail, 0, r.diag);
    assert.equal(r.wrong, 0, r.diag);
    assert.equal(r.slow, 0, r.diag);
    assert.ok(r.ok > 100, r.diag);
  });
});

describe("the supervisor's own thread serving an idle mount", () => {
  it("waits in read(2) for the next request: under 2 s of the supervisor's CPU in 4 s (a spinning thread takes 4)", async () => {
    const d = await startProcview();
    daemons.push(d);
    const supervisor = d.proc.pid as number;
    // Every serving process killed as soon as it appears: the supervisor's thread serves,
    // on the descriptor the serving processes shared, answering only the watchdog's reads.
    // Serving or still warming up ("procview-standby"), not the watchdog's cat.
    const killer = killEvery(100, () => childrenTitled(supervisor, "procview-"));
    const cpuSeconds = () => {
      const stat = fs.readFileSync(`/proc/${supervisor}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in clock ticks
    };
    try {
      await new Promise((r) => setTimeout(r, 1500));
      const before = cpuSeconds();
      await new Promise((r) => setTimeout(r, 4000));
      const used = cpuSeconds() - before;
      console.log(
        `# the supervisor used ${used.toFixed(2)} s of CPU in 4 s while its thread served (${killer.kills()} serving processes killed)`,
      );
      assert.ok(killer.kills() >= 1, "a serving process was killed");
      assert.ok(used < 2, `${used} s`);
    } finally {
      killer.stop();
    }
  });
});

describe("a hung serving process is replaced", () => {
  it("SIGSTOP: a container's read is answered within 5 s, by the supervisor's thread, with its own figures", async () => {
    const d = await startProcview();
    daemons.push(d);
    const c = limited(1, d.dir);
    assert.equal(Number(c.sh("awk '/^MemTotal/{print $2}' /proc/meminfo")), expectedKb(1));
    const hung = await waitServing(d.proc.pid as number);
    process.kill(hung, "SIGSTOP");
    try {
      const started = Date.now();
      const total = Number(await c.shAsync("awk '/^MemTotal/{print $2}' /proc/meminfo"));
      const ms = Date.now() - started;
      assert.equal(total, expectedKb(1));
      // The watchdog reads every half second and gives a read 1 s: at most about 1.5 s, plus
      // the takeover and the container's exec.
      assert.ok(ms < 3000, `the read took ${ms} ms`);
      assert.match(d.output(), /serving process not answering: killing it/);
      assert.ok(!servingOf(d.proc.pid as number).includes(hung), "the hung process is gone");
      console.log(`# a read through a stopped serving process answered in ${ms} ms`);
    } finally {
      try {
        process.kill(hung, "SIGCONT");
      } catch {
        // killed by the watchdog, as it should be
      }
    }
  });
});

describe("load averages outlive the serving process", () => {
  it("a busy container's load is the same just after its serving process is killed", async () => {
    const d = await startProcview();
    daemons.push(d);
    const c = limited(0, d.dir);
    const load1 = () => Number(c.sh("cut -d' ' -f1 /proc/loadavg"));
    c.sh("nohup sh -c 'while :; do :; done' >/dev/null 2>&1 &");
    load1(); // the first read asks the sampler to watch this container
    await new Promise((r) => setTimeout(r, 11_000)); // two 5-second samples
    const before = load1();
    assert.ok(before > 0, `load ${before} after 11 s of one busy task`);
    for (const pid of servingOf(d.proc.pid as number)) process.kill(pid, "SIGKILL");
    const after = load1();
    // Its busy task would slow every test after this one.
    containers.splice(containers.indexOf(c), 1);
    c.destroy();
    assert.ok(after >= before, `load went from ${before} to ${after} across the crash`);
  });
});

describe("a new daemon takes over the containers of the one before", () => {
  it("stopped (upgrade): containers read the host's files in between, then their own again; nothing leaks to the host", async () => {
    const dir = tempDir("procview-mnt-");
    const first = await startProcview([], dir);
    const cs = Array.from({ length: 20 }, (_, i) => limited(i, dir));
    cs.forEach((c, i) => assert.equal(memTotalKb(c), expectedKb(i)));
    const before = hostProcviewMounts().length;
    first.proc.kill("SIGTERM");
    assert.equal(await new Promise((r) => first.proc.once("exit", r)), 0, "SIGTERM: detached, unmounted, exit 0");
    // Between daemons: the host's own file, never an error.
    assert.equal(memTotalKb(cs[0]), hostMemTotalKb());
    const second = await startProcview([], dir);
    daemons.push(second);
    await waitFor(() => /re-bound 160 mount\(s\) in 20 container\(s\)/.test(second.output()), second);
    cs.forEach((c, i) => assert.equal(memTotalKb(c), expectedKb(i), `container ${i}`));
    assert.equal(hostProcviewMounts().length, before, hostProcviewMounts().join("\n"));
  });

  it("killed (SIGKILL, stale mounts): the next daemon re-binds them", async () => {
    const dir = tempDir("procview-mnt-");
    const first = await startProcview([], dir);
    const cs = Array.from({ length: 3 }, (_, i) => limited(i, dir));
    for (const pid of childrenOf(first.proc.pid as number)) process.kill(pid, "SIGKILL");
    first.proc.kill("SIGKILL");
    await new Promise((r) => first.proc.once("exit", r));
    assert.throws(() => cs[0].sh("cat /proc/meminfo"), /Transport endpoint is not connected/);
    const second = await startProcview([], dir);
    daemons.push(second);
    await waitFor(() => /re-bound 24 mount\(s\) in 3 container\(s\)/.test(second.output()), second);
    cs.forEach((c, i) => assert.equal(memTotalKb(c), expectedKb(i)));
    assert.match(second.output(), /replaced a stale mount/);
  });

  it("a successor that goes away at any step of the handover, or speaks another version, leaves the running daemon serving", async () => {
    const dir = tempDir("procview-mnt-");
    const first = await startProcview([], dir);
    daemons.push(first);
    const cs = [0, 1].map((i) => limited(i, dir));
    const readers = cs.flatMap((c, i) => [0, 1].map(() => readInLoop(c, expectedKb(i), 6)));
    // A successor written from the protocol: hello, the offer with its descriptors, take, parked.
    const successor = (version: number, stopAfter: "offer" | "parked") =>
      spawnSync(
        "python3",
        [
          "-c",
          [
            "import json, os, socket, sys",
            "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])",
            "s.sendall(json.dumps(dict(hello='procview-handover', version=int(sys.argv[2]), pid=os.getpid())).encode() + b'\\n')",
            "data, fds, _, _ = socket.recv_fds(s, 65536, 8)",
            "print(data.decode().split(chr(10))[0], len(fds))",
            "if sys.argv[3] == 'parked':",
            "    s.sendall(b'{\"take\": true}\\n'); got = data.decode()",
            "    while 'parked' not in got and 'refused' not in got:",
            "        chunk = s.recv(65536).decode(); got += chunk",
            "        if not chunk: break",
            "    print([l for l in got.split(chr(10)) if 'parked' in l or 'refused' in l][0])",
          ].join("\n"),
          `${dir}.state/handover.sock`,
          String(version),
          stopAfter,
        ],
        { encoding: "utf8", timeout: 30_000 },
      );
    const other = successor(99, "offer");
    assert.match(other.stdout, /^\{"refused":"this daemon speaks handover version 1, not 99"\} 0$/m);
    const offered = successor(1, "offer");
    assert.match(offered.stdout, new RegExp(`^\\{"version":1,"pid":${first.proc.pid},.*\\} [1-3]$`, "m"), offered.stderr);
    const parked = successor(1, "parked");
    assert.match(parked.stdout, /^\{"parked":true\}$/m, parked.stderr);
    const t = totals(await Promise.all(readers));
    console.log(`# ${readsLine(t)}`);
    assert.deepEqual([t.fail, t.wrong, t.slow], [0, 0, 0]);
    assert.match(first.output(), /the successor went away before taking over: serving on/);
    assert.match(first.output(), /the successor did not start serving: serving again/);
    cs.forEach((c, i) => assert.equal(memTotalKb(c), expectedKb(i)));
    // And it still hands over to a real one.
    const second = await startProcview(["--take-over"], dir);
    handedOver(first, second);
    assert.match(second.output(), /took the connection over/);
    first.proc.kill("SIGTERM");
    assert.equal(await new Promise((r) => first.proc.once("exit", r)), 0);
    cs.forEach((c, i) => assert.equal(memTotalKb(c), expectedKb(i)));
  });

  it("started beside the running one (upgrade with surge): it takes the connection over; containers never read the host's files, counters never step back, and the old daemon's stop touches nothing", async () => {
    const dir = tempDir("procview-mnt-");
    // Both on the same metrics address, as a host-network daemon would be.
    const metricsArgs = ["--metrics-address", "127.0.0.1:19106"];
    const first = await startProcview(metricsArgs, dir);
    daemons.push(first);
    const cs = [0, 1, 2, 3].map((i) => limited(i, dir));
    const mountIds = () => cs.map((c) => c.sh("grep ' /proc/meminfo ' /proc/self/mountinfo | cut -d' ' -f1"));
    const idsBefore = mountIds();
    const hostMounts = hostProcviewMounts().length;
    // 8 readers and a monitoring agent's sampler, for 8 s across the handover and the old daemon's stop.
    const readers = cs.flatMap((c, i) => [0, 1].map(() => readInLoop(c, expectedKb(i), 8)));
    const sampler = watchCounters(cs[0], 8);
    await new Promise((r) => setTimeout(r, 2000));
    const second = await startProcview(["--take-over", ...metricsArgs], dir);
    handedOver(first, second);
    assert.match(second.output(), new RegExp(`took the connection over from pid ${first.proc.pid} in \\d+ ms`));
    await waitFor(() => first.output().includes(`handed the connection over to pid ${second.proc.pid}`), first);
    await new Promise((r) => setTimeout(r, 1000));
    first.proc.kill("SIGTERM");
    assert.equal(await new Promise((r) => first.proc.once("exit", r)), 0, "the old daemon exits 0 on SIGTERM");
    // The metrics address is the new daemon's, counting what it serves.
    let served = "";
    for (
      const end = Date.now() + 10_000;
      !/^procview_served_by\{by="process"\} 1$/m.test(served) && Date.now() < end;
      await new Promise((r) => setTimeout(r, 200))
    )
      served = await fetch("http://127.0.0.1:19106/metrics").then(
        (r) => r.text(),
        () => "",
      );
    assert.match(served, /^procview_served_by\{by="process"\} 1$/m);
    assert.doesNotMatch(second.output(), /serving without metrics/);
    const t = totals(await Promise.all(readers));
    const counters = await sampler;
    console.log(`# ${handoverLine(second.output(), t, counters)}`);
    assert.deepEqual([t.fail, t.wrong, t.slow], [0, 0, 0], "every read answered with the container's own figures within 1 s");
    assert.ok(t.ok > 100, `${t.ok} reads`);
    assert.deepEqual([counters.fail, counters.backward, counters.steps], [0, 0, []]);
    assert.ok(counters.samples > 100, `${counters.samples} samples`);
    // The same mounts in every container (never detached, never re-bound), and on the host.
    assert.deepEqual(mountIds(), idsBefore);
    assert.doesNotMatch(second.output(), /re-bound/);
    assert.equal(hostProcviewMounts().length, hostMounts, hostProcviewMounts().join("\n"));
    cs.forEach((c, i) => assert.equal(memTotalKb(c), expectedKb(i), `container ${i} after the old daemon's stop`));
  });
});

describe("the mountpoint looks like LXCFS's to the scripts people have", () => {
  it("proc and sys are real directories of real files, on the host and in a container, across a SIGKILL and a stop", async () => {
    const dir = tempDir("procview-mnt-");
    const first = await startProcview([], dir);
    const sh = (cmd: string) => spawnSync("sh", ["-c", cmd], { encoding: "utf8" });
    // LXCFS's own functional test, word for word but for the variable.
    assert.equal(sh(`ls -l ${dir}/proc | grep uptime`).status, 0);
    assert.match(sh(`ls -l ${dir}/proc`).stdout, /^-r--r--r-- .* meminfo$/m);
    assert.equal(sh(`stat -c %F ${dir}/proc ${dir}/sys`).stdout, "directory\ndirectory\n");
    const found = sh(`find ${dir} -name meminfo -not -path '*/.fs/*'`).stdout.trim().split("\n");
    assert.deepEqual(found, [`${dir}/proc/meminfo`]);
    assert.equal(sh(`cat ${dir}/sys/devices/system/cpu/online`).stdout, fs.readFileSync("/sys/devices/system/cpu/online", "utf8"));

    const c = limited(0, dir);
    const seenInside = () => c.sh("ls -l /run/procview/proc | grep uptime");
    /** How many mounts sit at PATH in the container: one, whatever the daemons did before. */
    const mountsAt = (p: string) =>
      c
        .sh("cat /proc/self/mountinfo")
        .split("\n")
        .filter((l) => l.split(" ")[4] === p).length;
    assert.match(seenInside(), /uptime/);

    for (const pid of childrenOf(first.proc.pid as number)) process.kill(pid, "SIGKILL");
    first.proc.kill("SIGKILL");
    await new Promise((r) => first.proc.once("exit", r));
    const second = await startProcview([], dir);
    daemons.push(second);
    // The container's 8 files, not the anchor's own directories.
    await waitFor(() => /re-bound 8 mount\(s\) in 1 container\(s\)/.test(second.output()), second);
    assert.equal(memTotalKb(c), expectedKb(0));
    assert.match(seenInside(), /uptime/);
    assert.deepEqual(
      ["/run/procview/.fs", "/run/procview/proc", "/run/procview/sys"].map(mountsAt),
      [1, 1, 1],
      c.sh("cat /proc/self/mountinfo"),
    );
    assert.equal(
      fs
        .readFileSync("/proc/self/mountinfo", "utf8")
        .split("\n")
        .filter((l) => l.split(" ")[4] === `${dir}/proc`).length,
      1,
      "one mount at the host's proc directory",
    );

    second.proc.kill("SIGTERM");
    assert.equal(await new Promise((r) => second.proc.once("exit", r)), 0);
    // Between daemons: empty directories, and the container reads the host's own file.
    assert.deepEqual(fs.readdirSync(`${dir}/proc`), []);
    assert.deepEqual(fs.readdirSync(`${dir}/sys`), []);
    assert.equal(memTotalKb(c), hostMemTotalKb());
    const third = await startProcview([], dir);
    daemons.push(third);
    await waitFor(() => /re-bound 8 mount\(s\) in 1 container\(s\)/.test(third.output()), third);
    assert.equal(memTotalKb(c), expectedKb(0));
    assert.match(seenInside(), /uptime/);
  });
});

async function waitFor(cond: () => boolean, d: Daemon): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out; daemon said: ${d.output()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function cli(args: string[], input?: string) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", input, timeout: 30_000 });
}

describe("toolkit", () => {
  it("umount --all: containers read the host's files again; uninstall leaves nothing mounted", async () => {
    const dir = tempDir("procview-mnt-");
    const d = await startProcview(["--on-exit", "uninstall"], dir);
    const cs = [0, 1].map((i) => limited(i, dir));
    const r = cli(["umount", "--all", "--mountpoint", dir]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /detached 16 mount\(s\) in 2 container\(s\)/);
    for (const c of cs) {
      assert.equal(memTotalKb(c), hostMemTotalKb());
      assert.ok(
        !fs.readFileSync(`/proc/${c.pid}/mountinfo`, "utf8").includes("fuse.procview /proc"),
        "no procview file left in the container",
      );
    }
    d.proc.kill("SIGTERM");
    assert.equal(await new Promise((res) => d.proc.once("exit", res)), 0);
    assert.deepEqual(
      hostProcviewMounts().filter((l) => l.includes(dir)),
      [],
    );
    cleanMountpoint(dir);
  });

  it("remount --pid re-binds one container, and refuses a host process", async () => {
    const dir = tempDir("procview-mnt-");
    const d = await startProcview([], dir);
    daemons.push(d);
    const c = limited(0, dir);
    assert.equal(cli(["umount", "--pid", String(c.pid), "--mountpoint", dir]).status, 0);
    assert.equal(memTotalKb(c), hostMemTotalKb());
    // Recorded nowhere (umount forgets): remount finds nothing stale and leaves it so.
    assert.match(cli(["remount", "--pid", String(c.pid), "--mountpoint", dir]).stdout, /re-bound 0 mount/);
    const self = cli(["remount", "--pid", String(process.pid), "--mountpoint", dir]);
    assert.equal(self.status, 1);
    assert.match(self.stderr, /not in a container/);
    const unknown = cli(["remount", "--container-id", "no-such-container", "--mountpoint", dir]);
    assert.match(unknown.stderr, /no running container/);
  });

  it("docker-args names every file and the slave mount that makes re-binding possible", () => {
    const out = cli(["docker-args", "--mountpoint", "/var/lib/procview"]).stdout;
    assert.match(out, /-v \/var\/lib\/procview\/proc\/meminfo:\/proc\/meminfo:ro/);
    assert.match(out, /-v \/var\/lib\/procview\/sys\/devices\/system\/cpu:\/sys\/devices\/system\/cpu:ro/);
    assert.match(out, /bind-propagation=rslave/);
  });
});

describe("procview oci-hook", () => {
  it("through runc's createRuntime hook: a container with no procview mounts in its spec sees its limits", async () => {
    const dir = tempDir("procview-mnt-");
    const d = await startProcview([], dir);
    daemons.push(d);
    const c = limited(0, undefined, {
      hooks: { createRuntime: [{ path: process.execPath, args: ["node", BIN, "oci-hook", "--mountpoint", dir], timeout: 20 }] },
    });
    assert.equal(memTotalKb(c), 262144);
    assert.equal(c.sh("python3 -c 'import os; print(os.cpu_count())'").trim(), "2");
    // And it is re-bindable: the hook also gave it a slave copy of the mountpoint.
    assert.match(fs.readFileSync(`/proc/${c.pid}/mountinfo`, "utf8"), / \/run\/procview\/\.fs .* - fuse\.procview /);
  });

  it("refuses bad input with one line and mounts nothing", () => {
    const cases: [string, RegExp][] = [
      ["not json at all", /not JSON/],
      [JSON.stringify({ ociVersion: "1.0.2", id: "x", status: "creating", bundle: "/tmp" }), /no pid/],
      [JSON.stringify({ ociVersion: "1.0.2", id: "x", status: "creating", pid: 99999999, bundle: "/tmp" }), /is gone/],
      [JSON.stringify({ ociVersion: "1.0.2", id: "x", status: "creating", pid: process.pid, bundle: "/tmp" }), /not in a container/],
    ];
    const before = hostProcviewMounts().length;
    for (const [input, message] of cases) {
      const r = cli(["oci-hook", "--mountpoint", "/var/lib/procview"], input);
      assert.equal(r.status, 2, r.stderr);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, message);
    }
    assert.equal(hostProcviewMounts().length, before);
  });
});

describe("procview check", () => {
  it("tells serving, hung, stale and not mounted apart, one line and an exit code each", async () => {
    const dir = tempDir("procview-mnt-");
    const check = () => cli(["check", "--mountpoint", dir, "--timeout-ms", "1000"]);
    const notMounted = check();
    assert.equal(notMounted.status, 1);
    assert.match(notMounted.stderr, /^procview: not mounted: /);
    // No watchdog: it would replace the stopped serving process below within the check's second.
    const d = await startProcview(["--no-watchdog"], dir);
    const ok = check();
    assert.equal(ok.status, 0, ok.stderr);
    // Stuck requests are counted from the FUSE control filesystem where it is mounted (not on this host).
    assert.match(
      ok.stdout,
      /^ok: .* answered in \d+ ms( \(stuck requests not checked: no FUSE control filesystem at \/sys\/fs\/fuse\/connections .*\))?\n$/,
    );
    // A hung daemon: its serving process stopped.
    const kids = childrenOf(d.proc.pid as number);
    for (const pid of kids) process.kill(pid, "SIGSTOP");
    const hung = check();
    for (const pid of kids) process.kill(pid, "SIGCONT");
    assert.equal(hung.status, 1);
    assert.match(hung.stderr, /^procview: daemon not answering: .* within 1000 ms\n$/);
    for (const pid of kids) process.kill(pid, "SIGKILL");
    d.proc.kill("SIGKILL");
    await new Promise((r) => d.proc.once("exit", r));
    const stale = check();
    assert.equal(stale.status, 1);
    assert.match(stale.stderr, /^procview: stale mount: .*Transport endpoint is not connected/);
    cleanMountpoint(dir);
  });
});

describe("daemon metrics", () => {
  it("count reads, fallbacks and serving restarts", async () => {
    const d = await startProcview(["--metrics-address", "127.0.0.1:19105"]);
    daemons.push(d);
    const c = limited(0, d.dir);
    c.sh("cat /proc/meminfo /proc/stat >/dev/null");
    fs.readFileSync(path.join(d.dir, "proc/uptime"));
    // Counts reach the supervisor once a second; a crash loses at most that much.
    await new Promise((r) => setTimeout(r, 1200));
    const metrics = async () => (await fetch("http://127.0.0.1:19105/metrics")).text();
    assert.match(await metrics(), /^procview_served_by\{by="process"\} 1$/m);
    for (const pid of servingOf(d.proc.pid as number)) process.kill(pid, "SIGKILL");
    // The supervisor's thread serves until the next serving process has warmed up (0.2 s or more).
    let bridged = false;
    for (const end = Date.now() + 2000; !bridged && Date.now() < end; await new Promise((r) => setTimeout(r, 20)))
      bridged = /^procview_served_by\{by="supervisor-thread"\} 1$/m.test(await metrics());
    assert.ok(bridged, "procview_served_by never named the supervisor's thread after the kill");
    await new Promise((r) => setTimeout(r, 1500));
    c.sh("cat /proc/meminfo >/dev/null");
    await new Promise((r) => setTimeout(r, 1200));
    await waitServing(d.proc.pid as number);
    const text = await metrics();
    assert.match(text, /^procview_served_by\{by="process"\} 1$/m);
    assert.match(text, /^procview_served_by\{by="supervisor-thread"\} 0$/m);
    assert.match(text, /^procview_reads_total\{file="proc\/meminfo"\} [2-9]/m);
    assert.match(text, /^procview_serving_restarts_total 1$/m);
    assert.match(text, /^procview_render_duration_seconds_count [1-9]/m);
    assert.match(text, /^procview_host_fallbacks_total\{reason="(host-cgroup|cgroup-unreadable)"\} [1-9]/m);
  });
});
