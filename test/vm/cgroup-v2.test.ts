// Runs inside the VM (test/vm/vm.test.ts boots it): a pure cgroup v2 host on one of
// Debian's kernels. procview on the host and procview inside its own DaemonSet pod with a
// private cgroup namespace, each serving limited runc containers.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
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

describe("the serving process SIGKILLed while containers read", () => {
  let pv: Daemon;
  const cs: Container[] = [];
  before(async () => {
    pv = await startProcview();
  });
  after(async () => {
    for (const c of cs) c.destroy();
    await pv?.stop();
  });

  it("every 500 ms for 8 s: no reader is left waiting (Linux before 6.9 cannot resend; the journal answers)", async () => {
    cs.push(...limitedPair(pv.dir));
    const reader = (kb: number) =>
      [
        "import time",
        "end = time.monotonic() + 10; ok = wrong = failed = 0",
        "while time.monotonic() < end:",
        "    try:",
        "        total = int(open('/proc/meminfo').read().split('MemTotal:')[1].split()[0])",
        `        ok += total == ${kb}; wrong += total != ${kb}`,
        "    except Exception:",
        "        failed += 1",
        "print(ok, wrong, failed)",
      ].join("\n");
    const runs = cs.flatMap((c, i) =>
      [0, 1].map(() => c.shAsync(`python3 -c "$(cat <<'EOF'\n${reader(i === 0 ? 262144 : 524288)}\nEOF\n)"`)),
    );
    const serving = () =>
      fs
        .readFileSync(`/proc/${pv.proc.pid}/task/${pv.proc.pid}/children`, "utf8")
        .trim()
        .split(/\s+/)
        .map(Number)
        .filter((p) => p && fs.readFileSync(`/proc/${p}/cmdline`, "utf8").startsWith("procview-serving"));
    let kills = 0;
    const killer = setInterval(() => {
      for (const p of serving()) {
        try {
          process.kill(p, "SIGKILL");
          kills++;
        } catch {
          // gone already
        }
      }
    }, 500);
    let results: string[];
    try {
      await new Promise((r) => setTimeout(r, 8000));
      clearInterval(killer);
      // Readers stop after 10 s; one stuck in the kernel waiting for a reply never would.
      results = await Promise.race([
        Promise.all(runs),
        new Promise<never>((_, reject) =>
          setTimeout(() => {
            const stuck = fs
              .readdirSync("/proc")
              .filter((p) => /^\d+$/.test(p))
              .filter((p) => {
                try {
                  const stat = fs.readFileSync(`/proc/${p}/stat`, "utf8");
                  return / \(python3\) D /.test(stat);
                } catch {
                  return false;
                }
              });
            reject(new Error(`${stuck.length} of 4 readers still waiting 60 s later (state D), after ${kills} kills`));
          }, 60_000),
        ),
      ]);
    } finally {
      clearInterval(killer);
    }
    const sums = results.map((r) => r.trim().split(" ").map(Number));
    const total = (i: number) => sums.reduce((a, s) => a + s[i], 0);
    console.log(`# ${kills} kills: ${total(0)} reads right, ${total(1)} wrong, ${total(2)} failed, 0 left waiting`);
    assert.ok(kills >= 8, `${kills} kills`);
    assert.equal(total(1), 0);
    assert.equal(total(2), 0);
    assert.ok(total(0) > 0);
  });
});

describe("a serving process killed with a request read but not answered", () => {
  let pv: Daemon;
  let c: Container;
  before(async () => {
    pv = await startProcview();
    c = new Container({ memoryBytes: 256 * MiB, cpus: "0-1", source: pv.dir });
  });
  after(async () => {
    c?.destroy();
    await pv?.stop();
  });

  it("the reader is answered by the successor (resent by 6.9+ kernels, from the journal before)", async () => {
    const [serving] = fs
      .readFileSync(`/proc/${pv.proc.pid}/task/${pv.proc.pid}/children`, "utf8")
      .trim()
      .split(/\s+/)
      .map(Number)
      .filter((p) => fs.readFileSync(`/proc/${p}/cmdline`, "utf8").startsWith("procview-serving"));
    // Every reply it writes is held back 5 s: a read reaches it, is handled, and waits in the
    // reply's write(2) when the process is killed. Deterministic, where random kills are not.
    const strace = spawn(
      "strace",
      ["-f", "-p", String(serving), "-e", "trace=write,writev", "-e", "inject=write,writev:delay_enter=5000000"],
      {
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    let traced = "";
    strace.stderr.on("data", (d) => (traced += d));
    try {
      for (const end = Date.now() + 30_000; !/attached/.test(traced); await new Promise((r) => setTimeout(r, 100)))
        if (Date.now() > end) throw new Error(`strace did not attach: ${traced}`);
      const read = c.shAsync("awk '/^MemTotal/{print $2}' /proc/meminfo");
      for (const end = Date.now() + 30_000; !/write(v)?\(/.test(traced); await new Promise((r) => setTimeout(r, 50)))
        if (Date.now() > end) throw new Error(`no reply was written: ${traced}`);
      process.kill(serving, "SIGKILL");
      // Until its tracer goes, a traced process's death is not reported to its parent.
      strace.kill("SIGKILL");
      const started = Date.now();
      const total = await Promise.race([
        read,
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error("the reader was left waiting for 30 s")), 30_000)),
      ]);
      console.log(`# orphaned read answered ${Date.now() - started} ms after the kill`);
      assert.equal(Number(total), 262144);
    } finally {
      strace.kill("SIGKILL");
    }
  });
});
