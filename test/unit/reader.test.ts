// What the cgroup reader takes from each kernel file, field by field: memory.stat keys as
// cgroup v1 and v2 name them, limits over the ancestors, CFS quotas, per-CPU usage, I/O
// counters and pressure. Values are distinct so that a key read from the wrong line shows.
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { type Fixture, fixtureSystem, READER_PID } from "../helpers/fixtures";

let fx: Fixture | undefined;
afterEach(() => fx?.cleanup());

const reader = (f: Fixture) => {
  const cg = f.reader.resolve(READER_PID);
  assert.ok(cg, "the reader's cgroups resolve");
  return { r: f.reader, cg };
};
const lines = (o: Record<string, number | string>) =>
  Object.entries(o)
    .map(([k, v]) => `${k} ${v}`)
    .join("\n")
    .concat("\n");

const V1_STAT = lines({
  cache: 1,
  rss: 2,
  total_cache: 1001,
  total_rss: 1002,
  total_rss_huge: 1003,
  total_shmem: 1004,
  total_mapped_file: 1005,
  total_dirty: 1006,
  total_writeback: 1007,
  total_active_anon: 1008,
  total_inactive_anon: 1009,
  total_active_file: 1010,
  total_inactive_file: 1011,
  total_unevictable: 1012,
});

describe("cgroup v1", () => {
  it("memory: total_* figures (the subtree's), limits as the smallest over the ancestors, swap from memsw", () => {
    fx = fixtureSystem({
      version: 1,
      readerPath: "/pod/ctr",
      cgroups: {
        "memory/pod/memory.limit_in_bytes": "536870912\n",
        "memory/pod/memory.memsw.limit_in_bytes": "805306368\n",
        "memory/pod/ctr/memory.limit_in_bytes": "9223372036854771712\n",
        "memory/pod/ctr/memory.memsw.limit_in_bytes": "9223372036854771712\n",
        "memory/pod/ctr/memory.stat": V1_STAT,
        "memory/pod/ctr/memory.usage_in_bytes": "300000\n",
        "memory/pod/ctr/memory.memsw.usage_in_bytes": "300500\n",
      },
    });
    const { r, cg } = reader(fx);
    assert.deepEqual(r.memory(cg), {
      version: 1,
      limit: 536870912,
      usage: 300000,
      memswLimit: 805306368,
      swapUsage: 500,
      stat: {
        cache: 1001,
        anon: 1002,
        shmem: 1004,
        mapped: 1005,
        dirty: 1006,
        writeback: 1007,
        swapCached: 0,
        activeAnon: 1008,
        inactiveAnon: 1009,
        activeFile: 1010,
        inactiveFile: 1011,
        unevictable: 1012,
        anonHuge: 1003,
        slabReclaimable: 0,
        slabUnreclaimable: 0,
      },
    });
  });

  it("memory: hierarchical_* and total_swap from memory.stat when the kernel gives them; no usage file, no figures", () => {
    const stat = V1_STAT + lines({ hierarchical_memory_limit: 268435456, hierarchical_memsw_limit: 9223372036854771712, total_swap: 77 });
    fx = fixtureSystem({
      version: 1,
      readerPath: "/a",
      cgroups: {
        "memory/a/memory.stat": stat,
        "memory/a/memory.usage_in_bytes": "1000\n",
        "memory/a/memory.memsw.usage_in_bytes": "99999\n",
      },
    });
    const { r, cg } = reader(fx);
    const m = r.memory(cg);
    assert.deepEqual([m?.limit, m?.memswLimit, m?.swapUsage], [268435456, null, 77]);
    fx.cleanup();
    fx = fixtureSystem({ version: 1, readerPath: "/b", cgroups: { "memory/b/memory.stat": V1_STAT } });
    const b = reader(fx);
    assert.equal(b.r.memory(b.cg), undefined);
  });

  it("memory: no memsw accounting at all: swap use 0, memsw limit unknown (null)", () => {
    fx = fixtureSystem({
      version: 1,
      readerPath: "/c",
      cgroups: { "memory/c/memory.stat": V1_STAT, "memory/c/memory.usage_in_bytes": "1000\n" },
    });
    const { r, cg } = reader(fx);
    const m = r.memory(cg);
    assert.deepEqual([m?.memswLimit, m?.swapUsage, m?.limit], [null, 0, null]);
  });

  it("cpu: the effective cpuset, the tightest quota/period on the way up, usage per CPU", () => {
    fx = fixtureSystem({
      version: 1,
      readerPath: "/pod/ctr",
      cgroups: {
        "cpuset/pod/ctr/cpuset.effective_cpus": "1-3,6,9-10\n",
        "cpu,cpuacct/pod/cpu.cfs_quota_us": "150000\n",
        "cpu,cpuacct/pod/cpu.cfs_period_us": "100000\n",
        "cpu,cpuacct/pod/ctr/cpu.cfs_quota_us": "-1\n",
        "cpu,cpuacct/pod/ctr/cpu.cfs_period_us": "100000\n",
        "cpu,cpuacct/pod/ctr/cpuacct.usage_percpu_user": "10 20 0 40\n",
        "cpu,cpuacct/pod/ctr/cpuacct.usage_percpu_sys": "1 0 3 4\n",
      },
    });
    const { r, cg } = reader(fx);
    assert.deepEqual(r.cpuLimits(cg), { cpuset: [1, 2, 3, 6, 9, 10], quota: 1.5 });
    assert.deepEqual(r.cpuUsage(cg), {
      userNs: 70,
      systemNs: 8,
      perCpu: [
        { userNs: 10, systemNs: 1 },
        { userNs: 20, systemNs: 0 },
        { userNs: 0, systemNs: 3 },
        { userNs: 40, systemNs: 4 },
      ],
    });
  });

  it("cpu: a child's quota tighter than its parent's wins; no quota anywhere is null; an empty cpuset is none", () => {
    fx = fixtureSystem({
      version: 1,
      readerPath: "/pod/ctr",
      cgroups: {
        "cpuset/pod/ctr/cpuset.effective_cpus": "\n",
        "cpu,cpuacct/pod/cpu.cfs_quota_us": "400000\n",
        "cpu,cpuacct/pod/cpu.cfs_period_us": "100000\n",
        "cpu,cpuacct/pod/ctr/cpu.cfs_quota_us": "25000\n",
        "cpu,cpuacct/pod/ctr/cpu.cfs_period_us": "50000\n",
        "cpu,cpuacct/pod/ctr/cpuacct.stat": "user 12\nsystem 34\n",
      },
    });
    const { r, cg } = reader(fx);
    assert.deepEqual(r.cpuLimits(cg), { cpuset: null, quota: 0.5 });
    // cpuacct.stat counts USER_HZ ticks: 10 ms each.
    assert.deepEqual(r.cpuUsage(cg), { userNs: 120_000_000, systemNs: 340_000_000, perCpu: null });
    fx.cleanup();
    fx = fixtureSystem({
      version: 1,
      readerPath: "/free",
      cgroups: { "cpu,cpuacct/free/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/free/cpu.cfs_period_us": "100000\n" },
    });
    const free = reader(fx);
    assert.deepEqual(free.r.cpuLimits(free.cg), { cpuset: null, quota: null });
    assert.equal(free.r.cpuUsage(free.cg), undefined);
  });

  it("blkio: bytes and operations per device, read, write and discard; the Total line ignored", () => {
    fx = fixtureSystem({
      version: 1,
      readerPath: "/io",
      cgroups: {
        "blkio/io/blkio.throttle.io_service_bytes_recursive":
          "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 1\n8:0 Discard 512\n8:16 Read 100\nTotal 12900\n",
        "blkio/io/blkio.throttle.io_serviced_recursive": "8:0 Read 2\n8:0 Write 3\n8:0 Discard 1\n8:16 Write 7\nTotal 13\n",
      },
    });
    const { r, cg } = reader(fx);
    assert.deepEqual(r.io(cg), [
      { device: "8:0", rbytes: 4096, wbytes: 8192, rios: 2, wios: 3, dbytes: 512, dios: 1 },
      { device: "8:16", rbytes: 100, wbytes: 0, rios: 0, wios: 7, dbytes: 0, dios: 0 },
    ]);
    fx.cleanup();
    fx = fixtureSystem({ version: 1, readerPath: "/none", cgroups: { "blkio/none/blkio.throttle.io_serviced_recursive": "Total 0\n" } });
    const none = reader(fx);
    assert.deepEqual(none.r.io(none.cg), []);
    assert.equal(none.r.pressure(none.cg, "cpu"), undefined, "hybrid: the reader sits in the unified root here");
  });
});

describe("cgroup v2", () => {
  const V2_STAT = lines({
    anon: 2001,
    file: 2002,
    kernel_stack: 2003,
    pagetables: 2004,
    shmem: 2005,
    file_mapped: 2006,
    file_dirty: 2007,
    file_writeback: 2008,
    swapcached: 2009,
    anon_thp: 2010,
    inactive_anon: 2011,
    active_anon: 2012,
    inactive_file: 2013,
    active_file: 2014,
    unevictable: 2015,
    slab_reclaimable: 2016,
    slab_unreclaimable: 2017,
  });

  it("memory: memory.stat's names, memory.max and swap.max as the smallest on the way up", () => {
    fx = fixtureSystem({
      version: 2,
      readerPath: "/pod/ctr",
      cgroups: {
        "pod/memory.max": "268435456\n",
        "pod/memory.swap.max": "max\n",
        "pod/ctr/memory.max": "max\n",
        "pod/ctr/memory.swap.max": "1048576\n",
        "pod/ctr/memory.current": "5000\n",
        "pod/ctr/memory.swap.current": "300\n",
        "pod/ctr/memory.stat": V2_STAT,
      },
    });
    const { r, cg } = reader(fx);
    assert.deepEqual(r.memory(cg), {
      version: 2,
      limit: 268435456,
      usage: 5000,
      swapMax: 1048576,
      swapUsage: 300,
      stat: {
        cache: 2002,
        anon: 2001,
        shmem: 2005,
        mapped: 2006,
        dirty: 2007,
        writeback: 2008,
        swapCached: 2009,
        activeAnon: 2012,
        inactiveAnon: 2011,
        activeFile: 2014,
        inactiveFile: 2013,
        unevictable: 2015,
        anonHuge: 2010,
        slabReclaimable: 2016,
        slabUnreclaimable: 2017,
        kernelStack: 2003,
        pageTables: 2004,
      },
    });
  });

  it("cpu: cpu.max as quota/period (the default period when it is missing), max is none; cpu.stat in µs", () => {
    fx = fixtureSystem({
      version: 2,
      readerPath: "/pod/ctr",
      cgroups: {
        "pod/cpu.max": "max 100000\n",
        "pod/ctr/cpu.max": "250000 100000\n",
        "pod/ctr/cpuset.cpus.effective": "0-1\n",
        "pod/ctr/cpu.stat": "usage_usec 999\nuser_usec 700\nsystem_usec 200\n",
      },
    });
    const { r, cg } = reader(fx);
    assert.deepEqual(r.cpuLimits(cg), { cpuset: [0, 1], quota: 2.5 });
    assert.deepEqual(r.cpuUsage(cg), { userNs: 700_000, systemNs: 200_000, perCpu: null });
    fx.cleanup();
    fx = fixtureSystem({ version: 2, readerPath: "/q", cgroups: { "q/cpu.max": "50000\n" } });
    const q = reader(fx);
    assert.deepEqual(q.r.cpuLimits(q.cg), { cpuset: null, quota: 0.5 });
    fx.cleanup();
    fx = fixtureSystem({ version: 2, readerPath: "/m", cgroups: { "m/cpu.max": "max 100000\n" } });
    const m = reader(fx);
    assert.deepEqual(m.r.cpuLimits(m.cg), { cpuset: null, quota: null });
  });

  it("io.stat: each device's six counters, other keys ignored; pressure is the cgroup's own file", () => {
    fx = fixtureSystem({
      version: 2,
      readerPath: "/pod/ctr",
      cgroups: {
        "pod/ctr/io.stat":
          "8:0 rbytes=4096 wbytes=8192 rios=2 wios=3 dbytes=512 dios=1 cost.usage=5\n259:0  rbytes=1 wbytes=2 rios=3 wios=4 dbytes=5 dios=6\n",
        "pod/ctr/memory.pressure": "some avg10=0.10 avg60=0.20 avg300=0.30 total=40\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=5\n",
      },
    });
    const { r, cg } = reader(fx);
    assert.deepEqual(r.io(cg), [
      { device: "8:0", rbytes: 4096, wbytes: 8192, rios: 2, wios: 3, dbytes: 512, dios: 1 },
      { device: "259:0", rbytes: 1, wbytes: 2, rios: 3, wios: 4, dbytes: 5, dios: 6 },
    ]);
    assert.match(r.pressure(cg, "memory") ?? "", /^some avg10=0.10 .* total=40\n/);
    assert.equal(r.pressure(cg, "io"), undefined, "no io.pressure file");
    assert.equal(r.slabinfo(cg), undefined, "v2 keeps no slabinfo");
  });
});
