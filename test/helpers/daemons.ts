// Start and stop the filesystems under test as real processes: procview serve and a
// private LXCFS 5 (its own pidfile and mountpoint, so it cannot touch another instance).
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export const BIN = path.resolve(__dirname, "../../../bin/procview");

export interface Daemon {
  dir: string;
  proc: ChildProcess;
  output: () => string;
  stop(): Promise<number | null>;
}

function waitExit(p: ChildProcess, ms: number): Promise<number | null> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve(p.exitCode);
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      p.kill("SIGKILL");
    }, ms);
    p.once("exit", (code) => {
      clearTimeout(t);
      resolve(code);
    });
  });
}

/** Everything a process writes, as it comes. */
function capture(proc: ChildProcess): () => string {
  let out = "";
  proc.stdout?.on("data", (d) => (out += d));
  proc.stderr?.on("data", (d) => (out += d));
  return () => out;
}

/** Whether a procview filesystem is mounted at DIR/.fs, from the mount table as a user would look. */
export function isMounted(dir: string): boolean {
  return fs
    .readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .some((l) => l.split(" ")[4] === path.join(dir, ".fs") && l.includes(" - fuse.procview "));
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Runs `procview serve` on a fresh mountpoint and resolves once it says it is serving. */
export async function startProcview(args: string[] = [], dir = tempDir("procview-mnt-"), env: NodeJS.ProcessEnv = {}): Promise<Daemon> {
  const proc = spawn(process.execPath, [BIN, "serve", "--mountpoint", dir, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  const output = capture(proc);
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`procview did not start: ${output()}`)), 15000);
    const check = () => {
      if (output().includes("serving")) {
        clearTimeout(t);
        resolve();
      }
    };
    proc.stdout?.on("data", check);
    proc.once("exit", (code) => {
      clearTimeout(t);
      reject(new Error(`procview exited ${code}: ${output()}`));
    });
  });
  // Started: a serving process answers (the supervisor's own thread serves until then).
  await waitServing(proc.pid as number);
  return {
    dir,
    proc,
    output,
    stop: async () => {
      proc.kill("SIGTERM");
      const code = await waitExit(proc, 10000);
      cleanMountpoint(dir);
      return code;
    },
  };
}

/**
 * Tests leave nothing behind: the filesystem if a daemon died, the anchor serve leaves for
 * the next one, then the directory and its state sibling (only once nothing is mounted there).
 */
export function cleanMountpoint(dir: string): void {
  const mounted = () => fs.readFileSync("/proc/self/mountinfo", "utf8").includes(` ${dir}`);
  for (const sub of ["proc", "sys", ".fs"]) spawnSync("umount", ["-l", path.join(dir, sub)], { stdio: "ignore" });
  for (let i = 0; i < 3 && mounted(); i++) spawnSync("umount", ["-l", dir]);
  if (mounted()) return;
  fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(`${dir}.state`, { recursive: true, force: true });
}

export async function startLxcfs(dir = tempDir("lxcfs-mnt-")): Promise<Daemon> {
  const pidDir = tempDir("lxcfs-pid-");
  const pidfile = path.join(pidDir, "lxcfs.pid");
  const proc = spawn("lxcfs", ["-f", "--enable-cfs", "-l", "-p", pidfile, dir], { stdio: ["ignore", "pipe", "pipe"] });
  const output = capture(proc);
  const deadline = Date.now() + 15000;
  const lxcfsMounted = () => fs.readFileSync("/proc/self/mountinfo", "utf8").includes(` ${dir} `);
  while (!(lxcfsMounted() && fs.existsSync(path.join(dir, "proc/meminfo")))) {
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`lxcfs did not start: ${output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    dir,
    proc,
    output,
    stop: async () => {
      proc.kill("SIGTERM");
      const code = await waitExit(proc, 15000);
      if (lxcfsMounted()) spawnSync("umount", ["-l", dir]);
      if (!lxcfsMounted()) fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(pidDir, { recursive: true, force: true });
      return code;
    },
  };
}

/** A process's children (none once it is gone). */
export function childrenOf(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** The daemon's serving process, once there is one (the supervisor's thread serves between a kill and the handover). */
export async function waitServing(supervisor: number, ms = 30_000): Promise<number> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) {
    const [p] = servingOf(supervisor);
    if (p) return p;
  }
  throw new Error(`no serving process under ${supervisor} after ${ms} ms`);
}

/** A daemon's children whose process title starts with `title` (gone ones left out). */
export function childrenTitled(supervisor: number, title: string): number[] {
  return childrenOf(supervisor).filter((p) => {
    try {
      return fs.readFileSync(`/proc/${p}/cmdline`, "utf8").startsWith(title);
    } catch {
      return false;
    }
  });
}

/** A daemon's serving process now (one starting left out): none between a kill and the handover. */
export function servingOf(supervisor: number): number[] {
  return childrenTitled(supervisor, "procview-serving");
}
