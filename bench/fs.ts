// npm run bench: procview and LXCFS 5 side by side, read from a process inside a limited
// cgroup (256 MiB, cpuset 0-1). Bounded: a fixed number of reads and fixed time windows.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { childrenOf, type Daemon, startLxcfs, startProcview } from "../test/helpers/daemons";
import { BINDS } from "../test/helpers/runc";

// The files LXCFS serves too: the container paths procview binds, with the cpu directory's online file.
const FILES = [...BINDS.filter((t) => !t.directory).map((t) => t.source), "sys/devices/system/cpu/online"];
const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 3000);
const WINDOW_MS = Number(process.env.BENCH_WINDOW_MS ?? 2000);
const READERS = 8;
// The two filesystems take turns, round after round, so neither gets the quieter moment.
const ROUNDS = 3;
const CONTROLLERS = ["memory", "cpuset", "cpu", "cpuacct", "blkio", "pids"];
const CG = `procview-bench-${process.pid}`;

function makeCgroup(): void {
  for (const c of CONTROLLERS) fs.mkdirSync(`/sys/fs/cgroup/${c}/${CG}`, { recursive: true });
  fs.writeFileSync(`/sys/fs/cgroup/memory/${CG}/memory.limit_in_bytes`, String(256 * 1024 * 1024));
  fs.writeFileSync(`/sys/fs/cgroup/cpuset/${CG}/cpuset.mems`, fs.readFileSync("/sys/fs/cgroup/cpuset/cpuset.mems"));
  fs.writeFileSync(`/sys/fs/cgroup/cpuset/${CG}/cpuset.cpus`, fs.readFileSync("/sys/fs/cgroup/cpuset/cpuset.cpus"));
}

function removeCgroup(): void {
  for (const c of CONTROLLERS) {
    try {
      fs.rmdirSync(`/sys/fs/cgroup/${c}/${CG}`);
    } catch {
      // still has a reader exiting, or never made
    }
  }
}

/** Runs the reader inside the bench cgroup (the shell moves itself in, then execs node), on `cpu` if given. */
function reader(args: string[], cpu?: number): Promise<string> {
  const join = CONTROLLERS.map((c) => `echo $$ > /sys/fs/cgroup/${c}/${CG}/cgroup.procs`).join("; ");
  const script = path.join(__dirname, "reader.js");
  const pin = cpu === undefined ? [] : ["taskset", "-c", String(cpu)];
  const p = spawn("sh", ["-c", `${join}; exec "$@"`, "sh", ...pin, process.execPath, script, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  p.stdout.on("data", (d) => {
    out += d;
  });
  return new Promise((resolve, reject) =>
    p.once("close", (code) => (code === 0 && out ? resolve(out) : reject(new Error(`reader ${args[0]} ${args[1]} exited ${code}`)))),
  );
}

type Latency = Record<string, [number, number]>;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/**
 * A process and its descendants, as they are now (the daemon starts its children from its
 * main thread). The supervisor's watchdog starts a short `cat` twice a second: one that is
 * gone by the time we look has no children and no memory, not an error.
 */
const tree = (pid: number): number[] => [pid, ...childrenOf(pid).flatMap(tree)];

/** Pins every thread of a process and of its descendants (children started later inherit it). */
function pinTree(pid: number, cpus: string): void {
  for (const p of tree(pid)) {
    const r = spawnSync("taskset", ["-a", "-p", "-c", cpus, String(p)], { stdio: "ignore" });
    if (r.status !== 0 && p === pid) throw new Error(`taskset ${cpus} ${pid} failed`);
  }
}

/** Per file, the median over rounds of each round's median and p99; the reader on `cpu` if given. */
async function latencyRounds(dirs: string[], cpu?: number): Promise<Latency[]> {
  const runs: Latency[][] = dirs.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    for (const [i, dir] of dirs.entries())
      runs[i].push(JSON.parse(await reader(["latency", dir, String(Math.ceil(ITERATIONS / ROUNDS)), ...FILES], cpu)));
  }
  return runs.map((rs) => Object.fromEntries(FILES.map((f) => [f, [median(rs.map((x) => x[f][0])), median(rs.map((x) => x[f][1]))]])));
}

const failedReads: Record<string, number> = {};

async function throughput(dir: string, name: string): Promise<number> {
  const outs = await Promise.all(Array.from({ length: READERS }, () => reader(["throughput", dir, String(WINDOW_MS), ...FILES])));
  let reads = 0;
  for (const o of outs) {
    const r = JSON.parse(o) as { reads: number; errors: Record<string, number> };
    reads += r.reads;
    for (const n of Object.values(r.errors)) failedReads[name] = (failedReads[name] ?? 0) + n;
  }
  return reads / (WINDOW_MS / 1000);
}

/**
 * Memory of a process and all its descendants (procview: supervisor, serving process,
 * standby), as PSS: their RSS would count the node binary's shared pages once per process.
 */
function memMiB(pid: number): number {
  let kb = 0;
  for (const p of tree(pid)) {
    try {
      kb += Number(/^Pss:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${p}/smaps_rollup`, "utf8"))?.[1] ?? 0);
    } catch {
      // ended meanwhile
    }
  }
  return kb / 1024;
}

async function main(): Promise<void> {
  makeCgroup();
  let pv: Daemon | undefined;
  let lx: Daemon | undefined;
  try {
    pv = await startProcview();
    lx = await startLxcfs();
    const [latPv, latLx, latKernel] = await latencyRounds([pv.dir, lx.dir, "/"]);
    // Placement: both daemons on CPU 0, the reader on CPU 0 (sharing it) and then on CPU 1.
    const pinned = async (cpu: number) => latencyRounds([pv?.dir as string, lx?.dir as string], cpu);
    for (const d of [pv, lx]) pinTree(d.proc.pid as number, "0");
    const [samePv, sameLx] = await pinned(0);
    const [crossPv, crossLx] = await pinned(1);
    for (const d of [pv, lx]) pinTree(d.proc.pid as number, "0-1");
    const tp: [number[], number[]] = [[], []];
    for (let r = 0; r < ROUNDS; r++) {
      tp[0].push(await throughput(pv.dir, "procview"));
      tp[1].push(await throughput(lx.dir, "LXCFS"));
    }
    const tpPv = median(tp[0]);
    const tpLx = median(tp[1]);
    const rssPv = memMiB(pv.proc.pid as number);
    const rssLx = memMiB(lx.proc.pid as number);

    const rows = [["file", "procview median (p99) µs", "LXCFS median (p99) µs", "procview / LXCFS", "kernel's own µs"]];
    const cell = (v: [number, number]) => `${v[0].toFixed(0)} (${v[1].toFixed(0)})`;
    for (const f of FILES)
      rows.push([f, cell(latPv[f]), cell(latLx[f]), `${(latPv[f][0] / latLx[f][0]).toFixed(2)}x`, latKernel[f][0].toFixed(0)]);
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
    const out = [line(rows[0]), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.slice(1).map(line)];
    out.push("", "| single reader, daemons pinned to CPU 0: median µs | procview | LXCFS | ratio |", "|---|---|---|---|");
    const ratio = (a: Latency, b: Latency, f: string) => `${(a[f][0] / b[f][0]).toFixed(2)}x`;
    for (const [name, a, b] of [
      ["reader on CPU 0 (same)", samePv, sameLx],
      ["reader on CPU 1 (different)", crossPv, crossLx],
    ] as const)
      for (const f of FILES) out.push(`| ${name}: ${f} | ${a[f][0].toFixed(0)} | ${b[f][0].toFixed(0)} | ${ratio(a, b, f)} |`);
    out.push("");
    out.push(`| ${READERS} concurrent readers, all files in turn | procview | LXCFS | ratio |`, "|---|---|---|---|");
    out.push(`| reads/s | ${tpPv.toFixed(0)} | ${tpLx.toFixed(0)} | ${(tpPv / tpLx).toFixed(2)}x |`);
    out.push(`| failed reads | ${failedReads.procview ?? 0} | ${failedReads.LXCFS ?? 0} | |`);
    out.push(`| daemon memory after the run, PSS of all its processes (MiB) | ${rssPv.toFixed(1)} | ${rssLx.toFixed(1)} | |`);
    process.stdout.write(`${out.join("\n")}\n`);
  } finally {
    await pv?.stop();
    await lx?.stop();
    removeCgroup();
  }
}

main().catch((e) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.message : e}\n`);
  process.exit(1);
});
