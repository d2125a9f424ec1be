// Fixture systems for unit tests: a /proc, a /sys/devices/system/cpu and cgroup trees
// laid out as the kernel lays them out (Documentation/admin-guide/cgroup-v1/*.rst and
// cgroup-v2.rst), so the real reader and views run on them. Used where this kernel
// cannot give us the case (cgroup v2 controllers, other CPU counts, swap).
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { KeptFiles } from "../../src/cgroup/files";
import { type CgroupMount, layoutFromMounts } from "../../src/cgroup/layout";
import { Processes } from "../../src/cgroup/process";
import { CgroupReader } from "../../src/cgroup/reader";
import { type LoadEntry, type LoadSource, Renderer } from "../../src/daemon/render";

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

export function writeTree(root: string, files: Record<string, string>): void {
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, content);
  }
}

/** A host /proc/meminfo in the kernel's layout (fs/proc/meminfo.c), figures in kB. */
export function hostMeminfo(totalKb: number, swapKb: number): string {
  const kv: [string, number][] = [
    ["MemTotal", totalKb],
    ["MemFree", Math.floor(totalKb * 0.6)],
    ["MemAvailable", Math.floor(totalKb * 0.8)],
    ["Buffers", 102400],
    ["Cached", 2048000],
    ["SwapCached", 0],
    ["Active", 1500000],
    ["Inactive", 900000],
    ["Active(anon)", 700000],
    ["Inactive(anon)", 10000],
    ["Active(file)", 800000],
    ["Inactive(file)", 890000],
    ["Unevictable", 1234],
    ["Mlocked", 1234],
    ["SwapTotal", swapKb],
    ["SwapFree", swapKb],
    ["Dirty", 300],
    ["Writeback", 0],
    ["AnonPages", 650000],
    ["Mapped", 200000],
    ["Shmem", 9000],
    ["KReclaimable", 150000],
    ["Slab", 250000],
    ["SReclaimable", 150000],
    ["SUnreclaim", 100000],
    ["KernelStack", 9000],
    ["PageTables", 12000],
    ["CommitLimit", 12000000],
    ["Committed_AS", 3000000],
    ["VmallocTotal", 34359738367],
    ["AnonHugePages", 4096],
  ];
  const lines = kv.map(([k, v]) => `${`${k}:`.padEnd(16)}${String(v).padStart(8)} kB`);
  lines.push("HugePages_Total:       0", "HugePages_Free:        0", "Hugepagesize:       2048 kB", "DirectMap4k:      123456 kB");
  return `${lines.join("\n")}\n`;
}

/** An x86 /proc/cpuinfo with `n` CPUs, two threads per core. */
export function hostCpuinfo(n: number): string {
  const blocks: string[] = [];
  for (let i = 0; i < n; i++) {
    blocks.push(
      [
        `processor\t: ${i}`,
        "vendor_id\t: GenuineIntel",
        "model name\t: Intel(R) Xeon(R) CPU @ 2.20GHz",
        "physical id\t: 0",
        `siblings\t: ${n}`,
        `core id\t\t: ${i >> 1}`,
        `cpu cores\t: ${n >> 1}`,
        `apicid\t\t: ${i}`,
        `initial apicid\t: ${i}`,
        "flags\t\t: fpu vme de pse tsc",
      ].join("\n"),
    );
  }
  return `${blocks.join("\n\n")}\n\n`;
}

export function hostStat(n: number): string {
  const lines = ["cpu  1000 10 500 90000 20 0 5 0 0 0"];
  for (let i = 0; i < n; i++) lines.push(`cpu${i} 100 1 50 9000 2 0 0 0 0 0`);
  lines.push("intr 12345 0 0", "ctxt 999", "btime 1700000000", "processes 4242", "procs_running 3", "procs_blocked 1", "softirq 1 2 3");
  return `${lines.join("\n")}\n`;
}

export interface FixtureOptions {
  version: 1 | 2;
  cpus?: number;
  hostMemKb?: number;
  hostSwapKb?: number;
  /** cgroup files relative to the hierarchy root: for v1 "memory/a/b/memory.stat", for v2 "a/b/memory.max". */
  cgroups: Record<string, string>;
  /** The reader's cgroup path, e.g. "/kubepods/pod1/ctr". */
  readerPath: string;
  /** Reader's pid namespace differs from ours (a container) unless false. */
  containerNs?: boolean;
}

export class StaticLoads implements LoadSource {
  readonly watched: string[] = [];
  constructor(private readonly entries = new Map<string, LoadEntry>()) {}
  get(dir: string) {
    return this.entries.get(dir);
  }
  watch(dir: string) {
    this.watched.push(dir);
  }
}

export const READER_PID = 4242;
const INIT_PID = 4200;

export interface Fixture {
  root: string;
  renderer: Renderer;
  reader: CgroupReader;
  cleanup(): void;
}

/** Builds a whole fixture system and a Renderer reading it. */
export function fixtureSystem(o: FixtureOptions, loads: LoadSource = new StaticLoads(), cpuQuota = true): Fixture {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "procview-fixture-"));
  try {
    return buildFixture(root, o, loads, cpuQuota);
  } catch (e) {
    // A fixture that cannot be built leaves nothing behind either.
    fs.rmSync(root, { recursive: true, force: true });
    throw e;
  }
}

function buildFixture(root: string, o: FixtureOptions, loads: LoadSource, cpuQuota: boolean): Fixture {
  const cpus = o.cpus ?? 12;
  const proc = path.join(root, "proc");
  const sysCpu = path.join(root, "sys/devices/system/cpu");
  const cg = path.join(root, "cgroup");
  writeTree(proc, {
    meminfo: hostMeminfo(o.hostMemKb ?? 16 * 1024 * 1024, o.hostSwapKb ?? 0),
    cpuinfo: hostCpuinfo(cpus),
    stat: hostStat(cpus),
    uptime: "100000.00 190000.00\n",
    loadavg: "3.00 2.00 1.00 5/900 77777\n",
    swaps: "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n",
    diskstats: "   8       0 sda 10 0 80 5 20 0 160 9 0 14 14 0 0 0 0 0 0\n 253       0 vda 1 0 8 1 2 0 16 1 0 2 2 0 0 0 0 0 0\n",
    partitions: "major minor  #blocks  name\n\n   8        0   10485760 sda\n 253        0   20971520 vda\n",
    "pressure/cpu": "some avg10=9.99 avg60=9.99 avg300=9.99 total=999\n",
    slabinfo: "slabinfo - version: 2.1\n# name <active_objs>\nhost_cache 99 99 64 64 1\n",
    [`${READER_PID}/cgroup`]:
      o.version === 1
        ? ["12:pids:P", "7:blkio:P", "4:memory:P", "3:cpuset:P", "2:cpu,cpuacct:P", "0::/"].join("\n").replaceAll("P", o.readerPath)
        : `0::${o.readerPath}\n`,
    [`${READER_PID}/status`]: `Name:\tapp\nPPid:\t${INIT_PID}\nNSpid:\t${READER_PID}\t7\n`,
    [`${READER_PID}/stat`]: `${READER_PID} (my app) S ${INIT_PID} 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9000050 0 0\n`,
    [`${INIT_PID}/status`]: "Name:\tinit\nPPid:\t1\nNSpid:\t4200\t1\n",
    // Started 90000 s after boot (9000000 ticks): 10000 s before the host's uptime above.
    [`${INIT_PID}/stat`]: `${INIT_PID} (init) S 1 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9000000 0 0\n`,
  });
  writeTree(sysCpu, { online: cpus === 1 ? "0\n" : `0-${cpus - 1}\n`, kernel_max: "8191\n" });
  for (let i = 0; i < cpus; i++) writeTree(sysCpu, { [`cpu${i}/topology/core_id`]: `${i >> 1}\n` });
  const ns = o.containerNs === false ? "pid:[4026531836]" : "pid:[4026532999]";
  for (const [pid, target] of [
    ["self", "pid:[4026531836]"],
    [String(READER_PID), ns],
    [String(INIT_PID), ns],
  ]) {
    fs.mkdirSync(path.join(proc, pid, "ns"), { recursive: true });
    fs.symlinkSync(target, path.join(proc, pid, "ns/pid"));
  }
  let mounts: CgroupMount[];
  if (o.version === 1) {
    mounts = ["memory", "cpu,cpuacct", "cpuset", "blkio", "pids"].map((c) => ({
      mountPoint: path.join(cg, c),
      root: "/",
      fsType: "cgroup",
      superOptions: `rw,${c}`,
    }));
    for (const m of mounts) fs.mkdirSync(m.mountPoint, { recursive: true });
    mounts.push({ mountPoint: path.join(cg, "unified"), root: "/", fsType: "cgroup2", superOptions: "rw" });
    writeTree(cg, { "unified/cgroup.controllers": "\n" });
  } else {
    mounts = [{ mountPoint: cg, root: "/", fsType: "cgroup2", superOptions: "rw,nsdelegate" }];
    writeTree(cg, { "cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n" });
  }
  writeTree(cg, o.cgroups);
  const files = new KeptFiles();
  const reader = new CgroupReader(layoutFromMounts(mounts), files, proc);
  const processes = new Processes(files, proc);
  const renderer = new Renderer({ files, reader, processes, loads, cpuQuota, procRoot: proc, sysCpuDir: sysCpu });
  return {
    root,
    renderer,
    reader,
    cleanup: () => {
      files.close();
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}

/** A v1 memory.stat as the kernel writes it (memcontrol-v1), with the total_* keys. */
export function v1MemoryStat(o: {
  limit: number;
  memsw?: number;
  cache: number;
  rss: number;
  activeFile: number;
  inactiveFile: number;
  shmem?: number;
  swap?: number;
}): string {
  const base: [string, number][] = [
    ["cache", o.cache],
    ["rss", o.rss],
    ["rss_huge", 0],
    ["shmem", o.shmem ?? 0],
    ["mapped_file", 4096],
    ["dirty", 0],
    ["writeback", 0],
    ["swap", o.swap ?? 0],
    ["active_anon", o.rss],
    ["inactive_anon", 0],
    ["active_file", o.activeFile],
    ["inactive_file", o.inactiveFile],
    ["unevictable", 0],
  ];
  const lines = base.map(([k, v]) => `${k} ${v}`);
  lines.push(`hierarchical_memory_limit ${o.limit}`);
  if (o.memsw !== undefined) lines.push(`hierarchical_memsw_limit ${o.memsw}`);
  for (const [k, v] of base) lines.push(`total_${k} ${v}`);
  return `${lines.join("\n")}\n`;
}

/** A v2 memory.stat (cgroup-v2.rst, "memory.stat"). */
export function v2MemoryStat(o: {
  anon: number;
  file: number;
  activeFile: number;
  inactiveFile: number;
  slabReclaimable?: number;
  shmem?: number;
}): string {
  const kv: [string, number][] = [
    ["anon", o.anon],
    ["file", o.file],
    ["kernel", 1 * MiB],
    ["kernel_stack", 128 * 1024],
    ["pagetables", 256 * 1024],
    ["sec_pagetables", 0],
    ["percpu", 1000],
    ["sock", 0],
    ["vmalloc", 0],
    ["shmem", o.shmem ?? 0],
    ["file_mapped", 2 * MiB],
    ["file_dirty", 8192],
    ["file_writeback", 0],
    ["swapcached", 0],
    ["anon_thp", 0],
    ["file_thp", 0],
    ["shmem_thp", 0],
    ["inactive_anon", 0],
    ["active_anon", o.anon],
    ["inactive_file", o.inactiveFile],
    ["active_file", o.activeFile],
    ["unevictable", 0],
    ["slab_reclaimable", o.slabReclaimable ?? 0],
    ["slab_unreclaimable", 100000],
    ["slab", (o.slabReclaimable ?? 0) + 100000],
    ["pgfault", 1234],
  ];
  return `${kv.map(([k, v]) => `${k} ${v}`).join("\n")}\n`;
}
