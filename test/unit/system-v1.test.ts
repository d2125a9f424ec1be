// Reader + views on cgroup v1 fixture trees (the layout of this machine's hierarchies).
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, it } from "node:test";
import { NewestTasks, sampleTasks } from "../../src/cgroup/tasks";
import { type Fixture, fixtureSystem, GiB, MiB, READER_PID, StaticLoads, v1MemoryStat } from "../helpers/fixtures";

const UNLIMITED = "9223372036854771712";
let fx: Fixture | undefined;
afterEach(() => fx?.cleanup());

function text(f: Fixture, view: Parameters<Fixture["renderer"]["render"]>[0], pid = READER_PID, uid = 0): string {
  const r = f.renderer.render(view, pid, uid);
  if (typeof r === "number") throw new Error(`errno ${r}`);
  return r.text;
}
function field(t: string, key: string): number {
  const m = new RegExp(`^${key.replace(/[()]/g, "\\$&")}:\\s+(\\d+)`, "m").exec(t);
  if (!m) throw new Error(`${key} missing`);
  return Number(m[1]);
}
const memFiles = (dir: string, stat: string, usage: number, extra: Record<string, string> = {}) => ({
  [`memory/${dir}/memory.stat`]: stat,
  [`memory/${dir}/memory.usage_in_bytes`]: `${usage}\n`,
  ...Object.fromEntries(Object.entries(extra).map(([k, v]) => [`memory/${dir}/${k}`, v])),
});

describe("cgroup v1 meminfo", () => {
  it("a 256 MiB container nested in a 1 GiB pod shows MemTotal 262144 kB and its own free memory", () => {
    fx = fixtureSystem({
      version: 1,
      readerPath: "/kubepods/pod1/ctr",
      hostSwapKb: 2 * 1024 * 1024,
      cgroups: {
        "memory/kubepods/pod1/memory.limit_in_bytes": `${GiB}\n`,
        ...memFiles(
          "kubepods/pod1/ctr",
          v1MemoryStat({ limit: 256 * MiB, memsw: 256 * MiB, cache: 20 * MiB, rss: 80 * MiB, activeFile: 12 * MiB, inactiveFile: 8 * MiB }),
          100 * MiB,
          { "memory.memsw.usage_in_bytes": `${100 * MiB}\n` },
        ),
      },
    });
    const t = text(fx, "proc/meminfo");
    assert.equal(field(t, "MemTotal"), 262144);
    assert.equal(field(t, "MemFree"), 156 * 1024);
    assert.equal(field(t, "MemAvailable"), (156 + 20) * 1024);
    assert.equal(field(t, "Cached"), 20 * 1024);
    assert.equal(field(t, "AnonPages"), 80 * 1024);
    // memsw limit equal to the memory limit: the container may not swap at all.
    assert.equal(field(t, "SwapTotal"), 0);
    assert.equal(field(t, "SwapFree"), 0);
    // Host-wide lines are left as they are.
    assert.equal(field(t, "VmallocTotal"), 34359738367);
    assert.match(t, /^MemTotal: {9}262144 kB$/m);
  });

  it("without hierarchical_memory_limit the tightest ancestor limit wins", () => {
    const stat = v1MemoryStat({ limit: 0, cache: 0, rss: MiB, activeFile: 0, inactiveFile: 0 }).replace(/^hierarchical.*\n/gm, "");
    fx = fixtureSystem({
      version: 1,
      readerPath: "/a/b/c",
      cgroups: {
        "memory/a/memory.limit_in_bytes": `${UNLIMITED}\n`,
        "memory/a/b/memory.limit_in_bytes": `${128 * MiB}\n`,
        "memory/a/b/c/memory.limit_in_bytes": `${512 * MiB}\n`,
        ...memFiles("a/b/c", stat, MiB),
      },
    });
    assert.equal(field(text(fx, "proc/meminfo"), "MemTotal"), 131072);
  });

  it("an unlimited cgroup shows the host's MemTotal", () => {
    fx = fixtureSystem({
      version: 1,
      readerPath: "/free",
      hostMemKb: 8 * 1024 * 1024,
      cgroups: memFiles("free", v1MemoryStat({ limit: Number(UNLIMITED), cache: 0, rss: MiB, activeFile: 0, inactiveFile: 0 }), MiB),
    });
    assert.equal(field(text(fx, "proc/meminfo"), "MemTotal"), 8 * 1024 * 1024);
  });

  it("swap limited by memsw: SwapTotal = memsw - memory, SwapFree never below 0", () => {
    fx = fixtureSystem({
      version: 1,
      readerPath: "/s",
      hostSwapKb: 1024 * 1024,
      cgroups: memFiles(
        "s",
        v1MemoryStat({ limit: 256 * MiB, memsw: 384 * MiB, cache: 0, rss: 200 * MiB, activeFile: 0, inactiveFile: 0, swap: 300 * MiB }),
        200 * MiB,
      ),
    });
    const t = text(fx, "proc/meminfo");
    assert.equal(field(t, "SwapTotal"), 131072);
    assert.equal(field(t, "SwapFree"), 0);
    const swaps = text(fx, "proc/swaps").split("\n");
    assert.equal(swaps[1].split(/\s+/)[2], "131072");
  });

  it("swap unlimited (no memsw limit): the host's swap", () => {
    fx = fixtureSystem({
      version: 1,
      readerPath: "/u",
      hostSwapKb: 1024 * 1024,
      cgroups: memFiles(
        "u",
        v1MemoryStat({ limit: 256 * MiB, memsw: Number(UNLIMITED), cache: 0, rss: MiB, activeFile: 0, inactiveFile: 0 }),
        MiB,
      ),
    });
    const t = text(fx, "proc/meminfo");
    assert.equal(field(t, "SwapTotal"), 1024 * 1024);
    assert.equal(field(t, "SwapFree"), 1024 * 1024);
  });
});

describe("cgroup v1 CPUs", () => {
  const cpuFixture = (cpuset: string, quota: number, period = 100000, extra: Record<string, string> = {}) =>
    fixtureSystem({
      version: 1,
      readerPath: "/k/ctr",
      cgroups: {
        "cpuset/k/ctr/cpuset.effective_cpus": `${cpuset}\n`,
        "cpu,cpuacct/k/ctr/cpu.cfs_quota_us": `${quota}\n`,
        "cpu,cpuacct/k/ctr/cpu.cfs_period_us": `${period}\n`,
        "cpu,cpuacct/k/ctr/cpuacct.usage_percpu_user": "1000000000 2000000000 0 0 0 0 0 0 3000000000 0 0 0\n",
        "cpu,cpuacct/k/ctr/cpuacct.usage_percpu_sys": "500000000 0 0 0 0 0 0 0 0 0 0 0\n",
        ...extra,
      },
    });

  it("cpuset 0-3,8,10-11 with a 2.5-CPU quota shows 3 CPUs, host CPUs 0-2 renumbered", () => {
    fx = cpuFixture("0-3,8,10-11", 250000);
    const info = text(fx, "proc/cpuinfo");
    assert.deepEqual(
      [...info.matchAll(/^processor\s*: (\d+)/gm)].map((m) => Number(m[1])),
      [0, 1, 2],
    );
    assert.deepEqual(
      [...info.matchAll(/^siblings\s*: (\d+)/gm)].map((m) => Number(m[1])),
      [3, 3, 3],
    );
    assert.deepEqual(
      [...info.matchAll(/^core id\s*: (\d+)/gm)].map((m) => Number(m[1])),
      [0, 1, 2],
    );
    assert.equal(text(fx, "sys/devices/system/cpu/online"), "0-2\n");
    const stat = text(fx, "proc/stat");
    assert.deepEqual(
      stat
        .split("\n")
        .filter((l) => l.startsWith("cpu"))
        .map((l) => l.split(" ")[0]),
      ["cpu", "cpu0", "cpu1", "cpu2"],
    );
  });

  it("without the quota view the whole cpuset shows: 7 CPUs", () => {
    const f = cpuFixture("0-3,8,10-11", 250000);
    fx = f;
    f.cleanup();
    fx = fixtureSystem(
      {
        version: 1,
        readerPath: "/k/ctr",
        cgroups: {
          "cpuset/k/ctr/cpuset.effective_cpus": "0-3,8,10-11\n",
          "cpu,cpuacct/k/ctr/cpu.cfs_quota_us": "250000\n",
          "cpu,cpuacct/k/ctr/cpu.cfs_period_us": "100000\n",
        },
      },
      new StaticLoads(),
      false,
    );
    assert.equal(text(fx, "sys/devices/system/cpu/online"), "0-6\n");
  });

  it("a quota below one CPU shows 1 CPU", () => {
    fx = cpuFixture("0-11", 50000);
    assert.equal(text(fx, "sys/devices/system/cpu/online"), "0\n");
    assert.equal([...text(fx, "proc/cpuinfo").matchAll(/^processor/gm)].length, 1);
  });

  it("a quota above the cpuset shows the cpuset: 2 CPUs", () => {
    fx = cpuFixture("4-5", 800000);
    assert.equal(text(fx, "sys/devices/system/cpu/present"), "0-1\n");
  });

  it("a quota set on an ancestor applies: 1 CPU", () => {
    fx = cpuFixture("0-11", -1, 100000, {
      "cpu,cpuacct/k/cpu.cfs_quota_us": "100000\n",
      "cpu,cpuacct/k/cpu.cfs_period_us": "100000\n",
    });
    assert.equal(text(fx, "sys/devices/system/cpu/possible"), "0\n");
  });

  it("/proc/stat takes busy time from cpuacct, folded onto the shown CPUs", () => {
    fx = cpuFixture("0-3,8,10-11", 250000);
    const cpuLines = text(fx, "proc/stat")
      .split("\n")
      .filter((l) => l.startsWith("cpu"))
      .map((l) => l.split(" ").filter(Boolean));
    // user: 1 s (cpu0) + 2 s (cpu1) + 3 s (cpu8, 5th in the cpuset, folds onto shown cpu 4 % 3 = 1).
    assert.deepEqual(
      cpuLines.slice(1).map((f) => Number(f[1])),
      [100, 500, 0],
    );
    assert.equal(Number(cpuLines[0][1]), 600);
    assert.equal(Number(cpuLines[0][3]), 50); // system: 0.5 s on cpu0
    // Idle is what the container could have used since it started: 10000 s at 2.5/3 of the
    // CPU is 833333 ticks, less cpu0's 100 user and 50 system.
    assert.equal(Number(cpuLines[1][4]), 833183);
    // Lines other than the cpu lines are the host's, btime included.
    assert.match(text(fx, "proc/stat"), /^btime 1700000000$/m);
  });

  it("uptime counts from the container's init, with idle consistent with /proc/stat", () => {
    fx = cpuFixture("0-1", -1);
    const [up, idle] = text(fx, "proc/uptime").trim().split(" ").map(Number);
    assert.equal(up, 10000);
    const stat = text(fx, "proc/stat");
    const idleTicks = Number(stat.split("\n")[0].split(/\s+/)[4]);
    assert.equal(idle, idleTicks / 100);
  });
});

describe("cgroup v1 block I/O and slabinfo", () => {
  it("diskstats and partitions list only the devices the container used, with its counters", () => {
    fx = fixtureSystem({
      version: 1,
      readerPath: "/io",
      cgroups: {
        "blkio/io/blkio.throttle.io_service_bytes_recursive":
          "8:0 Read 4096\n8:0 Write 1048576\n8:0 Sync 0\n8:0 Async 0\n8:0 Discard 0\n8:0 Total 1052672\nTotal 1052672\n",
        "blkio/io/blkio.throttle.io_serviced_recursive":
          "8:0 Read 1\n8:0 Write 16\n8:0 Sync 0\n8:0 Async 0\n8:0 Discard 0\n8:0 Total 17\nTotal 17\n",
      },
    });
    const lines = text(fx, "proc/diskstats").trim().split("\n");
    assert.equal(lines.length, 1);
    const f = lines[0].trim().split(/\s+/);
    assert.deepEqual([f[2], f[3], f[5], f[7], f[9]], ["sda", "1", "8", "16", "2048"]);
    assert.equal(f.length, 20, "as many columns as the host's line");
    const parts = text(fx, "proc/partitions");
    assert.match(parts, /sda/);
    assert.doesNotMatch(parts, /vda/);
  });

  it("slabinfo is the container's own where the kernel keeps it, else the host's; root only either way", () => {
    fx = fixtureSystem({
      version: 1,
      readerPath: "/slab",
      cgroups: { "memory/slab/memory.kmem.slabinfo": "slabinfo - version: 2.1\n# name <active_objs>\ndentry 10 10 192 21 1\n" },
    });
    assert.match(text(fx, "proc/slabinfo"), /^dentry 10/m);
    assert.doesNotMatch(text(fx, "proc/slabinfo"), /host_cache/);
    assert.equal(fx.renderer.render("proc/slabinfo", READER_PID, 1000), 13, "EACCES for a non-root reader");
    fx.cleanup();
    // Linux 6.18 keeps the file but leaves it empty: the container's root reads the host's, as without procview.
    fx = fixtureSystem({ version: 1, readerPath: "/noslab", cgroups: { "memory/noslab/memory.kmem.slabinfo": "" } });
    assert.match(text(fx, "proc/slabinfo"), /^host_cache 99/m);
    assert.equal(fx.renderer.render("proc/slabinfo", READER_PID, 1000), 13, "EACCES for a non-root reader");
  });
});

describe("host readers get the host's files", () => {
  it("a process in the root cgroups, one outside our pid namespace and one that vanished", () => {
    fx = fixtureSystem({ version: 1, readerPath: "/", cgroups: {} });
    const host = fx.renderer.render("proc/meminfo", READER_PID, 0);
    assert.ok(typeof host !== "number");
    assert.equal(host.fallback, "host-cgroup");
    assert.equal(field(host.text, "MemTotal"), 16 * 1024 * 1024);
    const outside = fx.renderer.render("proc/cpuinfo", 0, 0);
    assert.ok(typeof outside !== "number" && outside.fallback === "outside-pid-namespace");
    const gone = fx.renderer.render("proc/stat", 999999, 0);
    assert.ok(typeof gone !== "number" && gone.fallback === "process-gone");
    assert.match(gone.text, /^cpu11 /m);
  });

  it("a container whose memory files are unreadable gets the host's meminfo, not an error", () => {
    fx = fixtureSystem({ version: 1, readerPath: "/broken", cgroups: { "memory/broken/memory.usage_in_bytes": "1\n" } });
    const r = fx.renderer.render("proc/meminfo", READER_PID, 0);
    assert.ok(typeof r !== "number");
    assert.equal(r.fallback, "cgroup-unreadable");
    assert.equal(field(r.text, "MemTotal"), 16 * 1024 * 1024);
  });

  it("slabinfo stays root-only for host readers", () => {
    fx = fixtureSystem({ version: 1, readerPath: "/", cgroups: {} });
    assert.equal(fx.renderer.render("proc/slabinfo", READER_PID, 1000), 13);
  });
});

describe("a cgroup's tasks, as loadavg counts them", () => {
  it("running and uninterruptible counted; the newest pid is the thread started last, as the container numbers it", () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "pv-tasks-"));
    try {
      const stat = (tid: number, state: string, start: number) =>
        `${tid} (w) ${state} 1 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 ${start} 0 0\n`;
      // Pids wrapped: 32000 is the oldest thread, 12 the newest; 40 started in the same tick as 12.
      const procs: [number, string, number, number][] = [
        [32000, "S", 100, 1],
        [12, "R", 900, 9],
        [11, "R", 900, 8],
        [40, "D", 800, 30],
      ];
      fs.mkdirSync(path.join(root, "cg"));
      fs.writeFileSync(path.join(root, "cg", "tasks"), `${procs.map((p) => p[0]).join("\n")}\n77\n`);
      for (const [tid, state, start, nspid] of procs) {
        fs.mkdirSync(path.join(root, String(tid)));
        fs.writeFileSync(path.join(root, String(tid), "stat"), stat(tid, state, start));
        fs.writeFileSync(path.join(root, String(tid), "status"), `Name:\tw\nNSpid:\t${tid}\t${nspid}\n`);
      }
      // 77 is listed but gone by the time its stat is read: not counted.
      assert.deepEqual(sampleTasks(path.join(root, "cg"), root), { running: 2, uninterruptible: 1, total: 4, lastPid: 9 });
      assert.equal(sampleTasks(path.join(root, "gone"), root), undefined);

      // The per-read newest thread: the same answer, then only new threads are looked at.
      const newest = new NewestTasks(root);
      const cg = path.join(root, "cg");
      assert.deepEqual(newest.sample(cg), { total: 4, lastPid: 9 });
      // 32000's start changes on disk (it cannot, really): a thread seen before is not read again.
      fs.writeFileSync(path.join(root, "32000", "stat"), stat(32000, "S", 5000));
      assert.deepEqual(newest.sample(cg), { total: 4, lastPid: 9 });
      // A new thread started last is the newest.
      fs.mkdirSync(path.join(root, "50"));
      fs.writeFileSync(path.join(root, "50", "stat"), stat(50, "R", 1000));
      fs.writeFileSync(path.join(root, "50", "status"), "NSpid:\t50\t31\n");
      fs.appendFileSync(path.join(cg, "tasks"), "50\n");
      assert.deepEqual(newest.sample(cg), { total: 5, lastPid: 31 });
      // 32000 leaves and a thread of that number comes back: read afresh (it started last).
      fs.writeFileSync(path.join(cg, "tasks"), "12\n11\n40\n50\n");
      assert.deepEqual(newest.sample(cg), { total: 4, lastPid: 31 });
      fs.writeFileSync(path.join(cg, "tasks"), "12\n11\n40\n50\n32000\n");
      assert.deepEqual(newest.sample(cg), { total: 5, lastPid: 1 });
      fs.rmSync(cg, { recursive: true });
      assert.equal(newest.sample(cg), undefined);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
