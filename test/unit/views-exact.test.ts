// Every view's exact output for inputs chosen so that each figure comes from one source:
// distinct values per field, so a wrong sum, a swapped field or a lost line shows up. The
// expected numbers are worked out by hand from the cgroup figures given (bytes / 1024 for
// kB, ns / 1e7 for ticks), not computed here.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { renderCpuinfo } from "../../src/views/cpuinfo";
import { cpuShare, formatCpuList, renumberCacheId, renderCpuRange, renumberCpuFile, visibleCpus } from "../../src/views/cpus";
import { renderDiskstats, renderPartitions } from "../../src/views/disk";
import { decayLoad, renderLoadavg } from "../../src/views/loadavg";
import { renderMeminfo } from "../../src/views/meminfo";
import { advanceCpuClock, renderStat } from "../../src/views/stat";
import { renderSwaps } from "../../src/views/swaps";

const K = 1024;
const HOST_MEMINFO = `MemTotal:       16384000 kB
MemFree:         8000000 kB
MemAvailable:   12000000 kB
Buffers:          300000 kB
Cached:          3000000 kB
SwapCached:          100 kB
Active:          4000000 kB
Inactive:        2000000 kB
Active(anon):    1000000 kB
Inactive(anon):   500000 kB
Active(file):    3000000 kB
Inactive(file):  1500000 kB
Unevictable:        1000 kB
Mlocked:            1000 kB
SwapTotal:       2097152 kB
SwapFree:        2097152 kB
Zswap:                 5 kB
Zswapped:              5 kB
Dirty:               500 kB
Writeback:             1 kB
AnonPages:       1400000 kB
Mapped:           400000 kB
Shmem:             90000 kB
KReclaimable:     200000 kB
Slab:             300000 kB
SReclaimable:     200000 kB
SUnreclaim:       100000 kB
KernelStack:       10000 kB
PageTables:        20000 kB
SecPageTables:         3 kB
NFS_Unstable:          3 kB
Bounce:                3 kB
WritebackTmp:          3 kB
CommitLimit:    10289152 kB
Committed_AS:    5000000 kB
VmallocTotal:   34359738367 kB
Percpu:             5000 kB
AnonHugePages:      4096 kB
ShmemHugePages:        3 kB
ShmemPmdMapped:        3 kB
FileHugePages:         3 kB
FilePmdMapped:         3 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
DirectMap4k:      400000 kB
`;

// A 256 MiB container using 100 MiB; every memory.stat figure distinct.
const STAT = {
  cache: 40960 * K,
  swapCached: 1024 * K,
  activeAnon: 30000 * K,
  inactiveAnon: 5000 * K,
  activeFile: 20000 * K,
  inactiveFile: 12000 * K,
  unevictable: 7 * K,
  dirty: 11 * K,
  writeback: 13 * K,
  anon: 35000 * K,
  mapped: 17 * K,
  shmem: 19 * K,
  anonHuge: 2048 * K,
  slabReclaimable: 3000 * K,
  slabUnreclaimable: 2000 * K,
};
const V1 = { version: 1 as const, limit: 256 * K * K, usage: 100 * K * K, memswLimit: 320 * K * K, swapUsage: 4 * K * K, stat: STAT };

function figures(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split("\n")
      .filter(Boolean)
      .map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trim()]),
  );
}

describe("meminfo, figure by figure", () => {
  it("cgroup v1 with memory+swap 320 MiB: every attributable figure is the container's", () => {
    const out = renderMeminfo(HOST_MEMINFO, V1);
    assert.deepEqual(figures(out), {
      MemTotal: "262144 kB",
      MemFree: "159744 kB",
      MemAvailable: "194744 kB",
      Buffers: "0 kB",
      Cached: "39936 kB",
      SwapCached: "1024 kB",
      Active: "50000 kB",
      Inactive: "17000 kB",
      "Active(anon)": "30000 kB",
      "Inactive(anon)": "5000 kB",
      "Active(file)": "20000 kB",
      "Inactive(file)": "12000 kB",
      Unevictable: "7 kB",
      Mlocked: "0 kB",
      SwapTotal: "65536 kB",
      SwapFree: "61440 kB",
      Zswap: "0 kB",
      Zswapped: "0 kB",
      Dirty: "11 kB",
      Writeback: "13 kB",
      AnonPages: "35000 kB",
      Mapped: "17 kB",
      Shmem: "19 kB",
      KReclaimable: "3000 kB",
      Slab: "5000 kB",
      SReclaimable: "3000 kB",
      SUnreclaim: "2000 kB",
      KernelStack: "10000 kB",
      PageTables: "20000 kB",
      SecPageTables: "0 kB",
      NFS_Unstable: "0 kB",
      Bounce: "0 kB",
      WritebackTmp: "0 kB",
      CommitLimit: "10289152 kB",
      Committed_AS: "5000000 kB",
      VmallocTotal: "34359738367 kB",
      Percpu: "0 kB",
      AnonHugePages: "2048 kB",
      ShmemHugePages: "0 kB",
      ShmemPmdMapped: "0 kB",
      FileHugePages: "0 kB",
      FilePmdMapped: "0 kB",
      HugePages_Total: "0",
      Hugepagesize: "2048 kB",
      DirectMap4k: "400000 kB",
    });
    const lines = out.split("\n");
    assert.equal(lines[0], "MemTotal:         262144 kB");
    assert.equal(lines[8], "Active(anon):      30000 kB");
    assert.equal(lines[42], "HugePages_Total:       0");
    assert.equal(out.endsWith("DirectMap4k:      400000 kB\n"), true);
  });

  it("swap: no memsw limit gives the host's; memsw = memory gives none; a memsw above memory + host swap gives the host's", () => {
    const swap = (memswLimit: number | null) => {
      const f = figures(renderMeminfo(HOST_MEMINFO, { ...V1, memswLimit, swapUsage: 0 }));
      return [f.SwapTotal, f.SwapFree];
    };
    assert.deepEqual(swap(null), ["2097152 kB", "2097152 kB"]);
    const unknown = figures(renderMeminfo(HOST_MEMINFO, { ...V1, memswLimit: undefined, swapUsage: 0 }));
    assert.equal(unknown.SwapTotal, "2097152 kB", "no memsw file at all: the host's swap");
    assert.deepEqual(swap(256 * K * K), ["0 kB", "0 kB"]);
    assert.deepEqual(swap(100 * K * K), ["0 kB", "0 kB"]);
    assert.deepEqual(swap(8192 * K * K), ["2097152 kB", "2097152 kB"]);
    const over = figures(renderMeminfo(HOST_MEMINFO, { ...V1, swapUsage: 80 * K * K }));
    assert.deepEqual([over.SwapTotal, over.SwapFree], ["65536 kB", "0 kB"]);
  });

  it("cgroup v2: swap from memory.swap.max, KernelStack and PageTables from memory.stat", () => {
    const v2 = {
      version: 2 as const,
      limit: 256 * K * K,
      usage: 100 * K * K,
      swapMax: 32 * K * K,
      swapUsage: K * K,
      stat: { ...STAT, kernelStack: 23 * K, pageTables: 29 * K },
    };
    const f = figures(renderMeminfo(HOST_MEMINFO, v2));
    assert.deepEqual([f.SwapTotal, f.SwapFree, f.KernelStack, f.PageTables], ["32768 kB", "31744 kB", "23 kB", "29 kB"]);
    const unlimited = figures(renderMeminfo(HOST_MEMINFO, { ...v2, swapMax: null, swapUsage: 0 }));
    assert.equal(unlimited.SwapTotal, "2097152 kB");
  });

  it("no limit, or a limit above the host's memory: the host's MemTotal; usage above the limit: MemFree 0, never negative", () => {
    assert.equal(figures(renderMeminfo(HOST_MEMINFO, { ...V1, limit: null })).MemTotal, "16384000 kB");
    assert.equal(figures(renderMeminfo(HOST_MEMINFO, { ...V1, limit: 64 * K * K * K })).MemTotal, "16384000 kB");
    const over = figures(renderMeminfo(HOST_MEMINFO, { ...V1, usage: 300 * K * K }));
    assert.equal(over.MemFree, "0 kB");
    // Available is free plus the file LRUs and reclaimable slab, never above the total.
    assert.equal(over.MemAvailable, "35000 kB");
    const idle = figures(renderMeminfo(HOST_MEMINFO, { ...V1, usage: 0, stat: { ...STAT, activeFile: 200 * K * K } }));
    assert.equal(idle.MemAvailable, "262144 kB");
  });

  it("Cached leaves out the swap cache", () => {
    assert.equal(figures(renderMeminfo(HOST_MEMINFO, { ...V1, stat: { ...STAT, cache: 512 * K, swapCached: 1024 * K } })).Cached, "0 kB");
  });
});

const CPUINFO = [0, 1, 2, 3]
  .map(
    (p) =>
      `processor\t: ${p}\nvendor_id\t: GenuineIntel\nphysical id\t: 0\nsiblings\t: 4\ncore id\t\t: ${p % 2}\ncpu cores\t: 2\napicid\t\t: ${p}\ninitial apicid\t: ${p}\nflags\t\t: fpu vme\n`,
  )
  .join("\n")
  .concat("\n"); // the kernel ends every block with a blank line

describe("cpuinfo, cpus", () => {
  it("host CPUs 3 and 1 shown as processors 0 and 1 of one package with two cores", () => {
    assert.equal(
      renderCpuinfo(CPUINFO, [3, 1]),
      "processor\t: 0\nvendor_id\t: GenuineIntel\nphysical id\t: 0\nsiblings\t: 2\ncore id\t\t: 0\ncpu cores\t: 2\napicid\t\t: 0\ninitial apicid\t: 0\nflags\t\t: fpu vme\n\n" +
        "processor\t: 1\nvendor_id\t: GenuineIntel\nphysical id\t: 0\nsiblings\t: 2\ncore id\t\t: 1\ncpu cores\t: 2\napicid\t\t: 1\ninitial apicid\t: 1\nflags\t\t: fpu vme\n\n",
    );
  });

  it("a CPU the host's file does not list is left out; a file with no processor blocks is passed through", () => {
    assert.equal((renderCpuinfo(CPUINFO, [2, 9]).match(/^processor/gm) ?? []).length, 1);
    const arm = "Processor\t: AArch64 Processor rev 4\nHardware\t: foo\n";
    assert.equal(renderCpuinfo(arm, [0]), arm);
  });

  it("visible CPUs: the online part of the cpuset, cut to ceil(quota), never none", () => {
    const online = [0, 1, 2, 3];
    assert.deepEqual(visibleCpus(online, { cpuset: [2, 3, 7], quota: null }, true), [2, 3]);
    assert.deepEqual(visibleCpus(online, { cpuset: [8, 9], quota: null }, true), [0, 1, 2, 3]);
    assert.deepEqual(visibleCpus(online, { cpuset: null, quota: 1.5 }, true), [0, 1]);
    assert.deepEqual(visibleCpus(online, { cpuset: null, quota: 1.5 }, false), [0, 1, 2, 3]);
    assert.deepEqual(visibleCpus(online, { cpuset: [1, 3], quota: 0.01 }, true), [1]);
    assert.deepEqual(visibleCpus(online, { cpuset: null, quota: 16 }, true), [0, 1, 2, 3]);
  });

  it("the share of each shown CPU a quota allows", () => {
    assert.equal(cpuShare(2, { cpuset: null, quota: 1.5 }, true), 0.75);
    assert.equal(cpuShare(1, { cpuset: null, quota: 0.25 }, true), 0.25);
    assert.equal(cpuShare(2, { cpuset: null, quota: 3 }, true), 1);
    assert.equal(cpuShare(2, { cpuset: null, quota: null }, true), 1);
    assert.equal(cpuShare(2, { cpuset: null, quota: 0.5 }, false), 1);
    assert.equal(renderCpuRange(0), "0\n");
    assert.equal(renderCpuRange(1), "0\n");
    assert.equal(renderCpuRange(3), "0-2\n");
  });
});

const HOST_STAT = `cpu  1 2 3 4 5 6 7 8 9 10
cpu0 1 2 3 4 5 6 7 8 9 10
cpu1 1 2 3 4 5 6 7 8 9 10
intr 12345 1 2
ctxt 999
btime 1700000000
processes 4242
procs_running 7
procs_blocked 3
softirq 100 1 2
`;

describe("/proc/stat", () => {
  const ns = 1e9; // one second: 100 ticks
  const perCpu = [
    { userNs: 0, systemNs: 0 },
    { userNs: 1 * ns, systemNs: 0 },
    { userNs: 0, systemNs: 0.5 * ns },
    { userNs: 2 * ns, systemNs: 0.25 * ns },
  ];

  it("v1 per-CPU usage: each pool CPU onto its shown CPU, usage elsewhere folded in; idle is the rest of the capacity", () => {
    const out = renderStat(HOST_STAT, {
      visible: [1, 2],
      pool: [1, 2],
      usage: { userNs: 0, systemNs: 0, perCpu },
      elapsed: 10,
      share: 1,
      procsRunning: 2,
      procsBlocked: 0,
    });
    // cpu1 -> cpu0 (100 user); cpu2 -> cpu1 (50 system); cpu3 is outside the pool: 3 % 2 -> cpu1 (200 user, 25 system).
    assert.equal(
      out,
      "cpu  300 0 75 1625 0 0 0 0 0 0\ncpu0 100 0 0 900 0 0 0 0 0 0\ncpu1 200 0 75 725 0 0 0 0 0 0\n" +
        "intr 12345 1 2\nctxt 999\nbtime 1700000000\nprocesses 4242\nprocs_running 2\nprocs_blocked 0\nsoftirq 100 1 2\n",
    );
  });

  it("half a CPU for 10 s: capacity 500 ticks; procs lines stay the host's when unknown", () => {
    const out = renderStat(HOST_STAT, {
      visible: [3],
      pool: [0, 1, 2, 3],
      usage: { userNs: 0, systemNs: 0, perCpu },
      elapsed: 10,
      share: 0.5,
    });
    assert.equal(out.split("\n").slice(0, 2).join("\n"), "cpu  300 0 75 125 0 0 0 0 0 0\ncpu0 300 0 75 125 0 0 0 0 0 0");
    assert.match(out, /\nprocs_running 7\nprocs_blocked 3\n/);
  });

  it("v2 totals only: spread evenly over the shown CPUs; idle never below 0", () => {
    const out = renderStat(HOST_STAT, {
      visible: [0, 1],
      pool: [0, 1],
      usage: { userNs: 3 * ns, systemNs: 1 * ns, perCpu: null },
      elapsed: 2,
      share: 1,
    });
    assert.equal(
      out.split("\n").slice(0, 3).join("\n"),
      "cpu  300 0 100 0 0 0 0 0 0 0\ncpu0 150 0 50 0 0 0 0 0 0 0\ncpu1 150 0 50 0 0 0 0 0 0 0",
    );
  });
});

describe("sysfs CPU files renumbered for the shown CPUs", () => {
  // Shown CPUs 0, 1, 2 are host CPUs 8, 33 and 40.
  const visible = [8, 33, 40];
  it("lists and masks keep only shown CPUs, in the reader's numbers; other files are left alone", () => {
    assert.equal(renumberCpuFile("cpu0/topology/core_cpus_list", "8-9\n", visible), "0\n");
    assert.equal(renumberCpuFile("cpu1/topology/package_cpus_list", "0-39\n", visible), "0-1\n");
    assert.equal(renumberCpuFile("cpu2/cache/index3/shared_cpu_list", "8,33,40-47\n", visible), "0-2\n");
    assert.equal(renumberCpuFile("cpu0/topology/thread_siblings", "00000000,00000300\n", visible), "1\n");
    assert.equal(renumberCpuFile("cpu2/cache/index2/shared_cpu_map", "0000ff00,00000000\n", visible), "4\n");
    assert.equal(renumberCpuFile("cpu0/topology/core_id", "4\n", visible), undefined);
    assert.equal(renumberCpuFile("cpu0/cache/index0/size", "48K\n", visible), undefined);
    // 40 shown CPUs: a mask of two 32-bit words, the first as wide as it needs.
    const wide = Array.from({ length: 40 }, (_, i) => i);
    assert.equal(renumberCpuFile("cpu0/topology/die_cpus", "ff,00000001\n", wide), "ff,00000001\n");
  });
  it("in the kernel's list form: ascending, ranges joined, whatever order the host file names them in", () => {
    const twelve = Array.from({ length: 12 }, (_, i) => i);
    assert.equal(renumberCpuFile("cpu11/topology/core_cpus_list", "10-11,0,2-3,5\n", twelve), "0,2-3,5,10-11\n");
    assert.equal(renumberCpuFile("cpu3/cache/index10/shared_cpu_list", "9,1\n", twelve), "1,9\n");
    // 32 shown CPUs: one full word, no leading comma.
    const all32 = Array.from({ length: 32 }, (_, i) => i);
    assert.equal(renumberCpuFile("cpu0/topology/core_siblings", "00000000,80000001\n", all32), "80000001\n");
    // Only the cpuN directories' own files: not a node's view of them.
    assert.equal(renumberCpuFile("node0/cpu1/topology/core_cpus_list", "0-1\n", twelve), undefined);
    assert.equal(renumberCpuFile("node0/cpu1/topology/thread_siblings", "3\n", twelve), undefined);
  });
  it("a cache's id is its rank among the shown CPUs' caches of that level", () => {
    assert.equal(renumberCacheId(7, [3, 7, 7, 12]), "1\n");
    assert.equal(renumberCacheId(3, [3]), "0\n");
    assert.equal(renumberCacheId(9, [10, 9, 2]), "1\n");
    assert.equal(renumberCacheId(9, [2, 10, 9]), "1\n");
    assert.equal(renumberCacheId(10, [10, 9, 2, 9]), "2\n");
  });
  it("a cpu list in the kernel's form from CPUs in any order, each once", () => {
    assert.equal(formatCpuList([11, 3, 2, 3, 0, 10]), "0,2-3,10-11");
    assert.equal(formatCpuList([]), "");
  });
});

describe("/proc/stat's clock", () => {
  const ns = 1e9;
  const at = (elapsed: number, busyNs: number, share = 1) => ({
    visible: [0],
    pool: [0],
    usage: { userNs: busyNs, systemNs: 0, perCpu: [{ userNs: busyNs, systemNs: 0 }] },
    elapsed,
    share,
  });

  it("a CPU busy all the time, read every millisecond while usage arrives in 10 ms steps: idle stays under a tick", () => {
    let clock = advanceCpuClock(undefined, at(10, 10 * ns));
    for (let ms = 1; ms <= 1000; ms++) clock = advanceCpuClock(clock, at(10 + ms / 1000, (10 + Math.floor(ms / 10) / 100) * ns));
    assert.equal(Math.floor(clock.total.user), 1100);
    assert.ok(clock.total.idle < 1, `idle ${clock.total.idle}`);
  });

  it("the share halves: idle grows at the new rate from then on, never backwards", () => {
    let clock = advanceCpuClock(undefined, at(10, 5 * ns)); // 500 busy, 500 idle
    clock = advanceCpuClock(clock, at(20, 10 * ns, 0.5)); // +500 busy, +0 idle (capacity 500)
    assert.deepEqual([clock.total.user, clock.total.idle], [1000, 500]);
    clock = advanceCpuClock(clock, at(30, 12 * ns, 0.5)); // +200 busy, +300 idle
    assert.deepEqual([clock.total.user, clock.total.idle], [1200, 800]);
  });

  it("per CPU (v1): each shown CPU advances by its own host CPU's usage; a CPU that goes and comes back carries on", () => {
    const usage = (u0: number, s0: number, u1: number, s1: number) => ({
      userNs: (u0 + u1) * ns,
      systemNs: (s0 + s1) * ns,
      perCpu: [
        { userNs: u0 * ns, systemNs: s0 * ns },
        { userNs: u1 * ns, systemNs: s1 * ns },
      ],
    });
    const both = { visible: [0, 1], pool: [0, 1], share: 1 };
    const cpuLines = (text: string) => text.split("\n").filter((l) => l.startsWith("cpu"));
    let clock = advanceCpuClock(undefined, { ...both, usage: usage(1, 0.5, 2, 0), elapsed: 10 });
    clock = advanceCpuClock(clock, { ...both, usage: usage(1.5, 0.5, 2, 0.25), elapsed: 11 });
    assert.deepEqual(cpuLines(renderStat(HOST_STAT, { ...both, usage: usage(1.5, 0.5, 2, 0.25), elapsed: 11 }, clock)), [
      "cpu  350 0 75 1775 0 0 0 0 0 0",
      "cpu0 150 0 50 900 0 0 0 0 0 0",
      "cpu1 200 0 25 875 0 0 0 0 0 0",
    ]);
    // The cpuset shrinks to host CPU 1: one CPU shown, all usage folded onto it.
    const one = { visible: [1], pool: [1], share: 1, usage: usage(1.5, 0.5, 2.5, 0.25), elapsed: 12 };
    clock = advanceCpuClock(clock, one);
    assert.deepEqual(cpuLines(renderStat(HOST_STAT, one, clock)), ["cpu  400 0 75 1825 0 0 0 0 0 0", "cpu0 200 0 50 950 0 0 0 0 0 0"]);
    // Back to two: cpu1 carries on from where it was (+100 idle over the second).
    const again = { ...both, usage: usage(2, 0.5, 2.5, 0.25), elapsed: 13 };
    clock = advanceCpuClock(clock, again);
    assert.deepEqual(cpuLines(renderStat(HOST_STAT, again, clock)).slice(1), [
      "cpu0 250 0 50 1000 0 0 0 0 0 0",
      "cpu1 200 0 25 975 0 0 0 0 0 0",
    ]);
    // A host CPU the last read did not list (hot-added) counts from 0.
    const wider = {
      ...again,
      usage: { ...usage(2, 0.5, 2.5, 0.25), perCpu: [...usage(2, 0.5, 2.5, 0.25).perCpu, { userNs: ns, systemNs: 0 }] },
      elapsed: 14,
    };
    clock = advanceCpuClock(clock, wider);
    assert.equal(Math.floor(clock.total.user), 550);
  });

  it("starts afresh for a new container in the same cgroup (elapsed went back) or a usage of the other kind", () => {
    const old = advanceCpuClock(advanceCpuClock(undefined, at(100, 50 * ns)), at(200, 60 * ns));
    const fresh = advanceCpuClock(old, at(5, 1 * ns));
    assert.deepEqual([fresh.total.user, fresh.total.idle], [100, 400]);
    const v2 = { ...at(201, 61 * ns), usage: { userNs: 61 * ns, systemNs: 0, perCpu: null } };
    const other = advanceCpuClock(old, v2);
    assert.deepEqual([other.total.user, other.total.idle], [6100, 14000]);
  });

  it("busy beyond capacity is owed by later idle, at most 0.2 s' worth", () => {
    let clock = advanceCpuClock(undefined, at(10, 10 * ns)); // 1000 busy, 0 idle
    clock = advanceCpuClock(clock, at(11, 11.1 * ns)); // +110 busy in 1 s: 10 over, owed
    assert.deepEqual([clock.total.idle, clock.debt[0]], [0, 10]);
    clock = advanceCpuClock(clock, at(12, 14.1 * ns)); // +300 busy in 1 s: 210 over, owed up to 20
    assert.deepEqual([clock.total.idle, clock.debt[0]], [0, 20]);
    clock = advanceCpuClock(clock, at(14, 14.1 * ns)); // 200 idle capacity, 20 owed
    assert.equal(clock.total.idle, 180);
  });
});

describe("swaps, diskstats, partitions, loadavg", () => {
  it("swaps: the kernel's columns; no device line when there is no swap", () => {
    const header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
    assert.equal(renderSwaps(0, 0), header);
    assert.equal(renderSwaps(65536, 1024), `${header}none${" ".repeat(36)}virtual\t65536\t\t1024\t\t-1\n`);
    assert.equal(renderSwaps(10000000, 9999999), `${header}none${" ".repeat(36)}virtual\t10000000\t9999999\t\t-1\n`);
  });

  const HOST_DISKSTATS =
    "   8       0 sda 100 1 200 3 400 5 600 7 0 9 10\n" +
    "   8      16 sdb 100 1 200 3 400 5 600 7 0 9 10 11 12 13 14\n" +
    " 259       0 nvme0n1 100 1 200 3 400 5 600 7 0 9 10 11 12 13 14 15 16\n" +
    "   7       0 loop0 1 2 3 4 5 6 7 8 9 10 11\n";
  const io = (device: string) => ({ device, rbytes: 4096, wbytes: 1024 * 1024, rios: 3, wios: 5, dbytes: 2048, dios: 2 });

  it("diskstats: only used devices, the cgroup's ios and sectors, zeros where it keeps nothing, discards from 4.18's columns", () => {
    assert.equal(
      renderDiskstats(HOST_DISKSTATS, [io("8:0"), io("8:16"), io("259:0")]),
      "   8       0 sda 3 0 8 0 5 0 2048 0 0 0 0\n" +
        "   8      16 sdb 3 0 8 0 5 0 2048 0 0 0 0 2 0 4 0\n" +
        " 259       0 nvme0n1 3 0 8 0 5 0 2048 0 0 0 0 2 0 4 0 0 0\n",
    );
    assert.equal(renderDiskstats("   8 0 sda 1 2 3\n", [io("8:0")]), "");
  });

  it("diskstats when the kernel keeps no figure for the cgroup: every device, every counter 0", () => {
    assert.equal(
      renderDiskstats(HOST_DISKSTATS, []),
      "   8       0 sda 0 0 0 0 0 0 0 0 0 0 0\n" +
        "   8      16 sdb 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n" +
        " 259       0 nvme0n1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n" +
        "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0\n",
    );
  });

  it("partitions: the header, a blank line, the used devices", () => {
    const host =
      "major minor  #blocks  name\n\n   8        0  104857600 sda\n   8        1  104856576 sda1\n 259        0  500107608 nvme0n1\n";
    assert.equal(renderPartitions(host, [io("8:1")]), "major minor  #blocks  name\n\n   8        1  104856576 sda1\n");
    assert.equal(renderPartitions(host, []), host);
  });

  it("load: the kernel's fixed-point steps, rounding up while rising", () => {
    assert.deepEqual(decayLoad([0, 0, 0], 1), [164, 34, 11]);
    assert.deepEqual(decayLoad([100, 100, 100], 0), [91, 98, 99]);
    assert.deepEqual(decayLoad([2048, 2048, 2048], 1), [2048, 2048, 2048]);
    assert.equal(renderLoadavg([164, 34, 11], 1, 12, 345), "0.08 0.02 0.01 1/12 345\n");
    assert.equal(renderLoadavg([2048 * 3 + 1024, 0, 2047], 0, 1, 1), "3.50 0.00 1.00 0/1 1\n");
  });
});
