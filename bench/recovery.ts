// npm run bench:recovery: how long containers wait after the daemon is restarted, for 10, 20
// and 50 real runc containers. Two ways a daemon goes: stopped (SIGTERM: it hands the
// containers over, they read the host's files meanwhile) and killed (SIGKILL: their mounts
// go stale until the next daemon re-binds them). Measured from starting the new daemon.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import { childrenOf, cleanMountpoint, startProcview, tempDir } from "../test/helpers/daemons";
import { Container } from "../test/helpers/runc";

const SIZES = (process.env.BENCH_SIZES ?? "10,20,50").split(",").map(Number);
const MiB = 1024 * 1024;

/** Starts a daemon and resolves when it reports having re-bound `mounts` mounts: [ms to serving, ms to re-bound]. */
function restart(dir: string, mounts: number): Promise<{ serving: number; rebound: number; stop: () => Promise<void> }> {
  const started = process.hrtime.bigint();
  const ms = () => Number(process.hrtime.bigint() - started) / 1e6;
  const p = spawn(process.execPath, [`${__dirname}/../../bin/procview`, "serve", "--mountpoint", dir], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let serving = 0;
  return new Promise((resolve, reject) => {
    p.stderr.on("data", (d) => (out += d));
    p.stdout.on("data", (d) => {
      out += d;
      if (!serving && out.includes("serving")) serving = ms();
      const m = /re-bound (\d+) mount\(s\)/.exec(out);
      if (m) {
        if (Number(m[1]) !== mounts) reject(new Error(`re-bound ${m[1]} of ${mounts}: ${out}`));
        resolve({
          serving,
          rebound: ms(),
          stop: async () => {
            p.kill("SIGTERM");
            await new Promise((r) => p.once("exit", r));
          },
        });
      }
    });
    p.once("exit", (code) => reject(new Error(`daemon exited ${code}: ${out}`)));
  });
}

async function main(): Promise<void> {
  const rows: string[] = [];
  for (const n of SIZES) {
    const dir = tempDir("procview-mnt-");
    const first = await startProcview([], dir);
    const cs: Container[] = [];
    try {
      for (let i = 0; i < n; i++) cs.push(new Container({ memoryBytes: 256 * MiB, cpus: "0-1", source: dir }));
      const mounts = n * 8;
      first.proc.kill("SIGTERM");
      await new Promise((r) => first.proc.once("exit", r));
      const handover = await restart(dir, mounts);
      await handover.stop(); // hands them over again, for the crash case below
      await restart(dir, mounts);
      await killServe(dir);
      const crash = await restart(dir, mounts);
      // Every container reads its own figures again.
      for (const c of cs) if (!/MemTotal:\s+262144 kB/.test(c.sh("cat /proc/meminfo"))) throw new Error(`${c.id} not re-bound`);
      await crash.stop();
      rows.push(
        `| ${n} | ${mounts} | ${handover.serving.toFixed(0)} | ${handover.rebound.toFixed(0)} | ${crash.serving.toFixed(0)} | ${crash.rebound.toFixed(0)} |`,
      );
    } finally {
      for (const c of cs) c.destroy();
      cleanMountpoint(dir);
    }
  }
  process.stdout.write(
    "| containers | mounts | stopped: serving (ms) | stopped: all re-bound (ms) | killed: serving (ms) | killed: all re-bound (ms) |\n|---|---|---|---|---|---|\n",
  );
  process.stdout.write(`${rows.join("\n")}\n`);
}

/** The supervisor serving `dir` (found by its command line). */
async function pidOfServe(dir: string): Promise<number> {
  for (const e of fs.readdirSync("/proc").filter((x) => /^\d+$/.test(x))) {
    try {
      const cmd = fs.readFileSync(`/proc/${e}/cmdline`, "utf8").split("\0");
      if (cmd.includes("serve") && cmd.includes(dir)) return Number(e);
    } catch {
      // gone
    }
  }
  throw new Error(`no daemon serving ${dir}`);
}

/** Kills the whole daemon at once, as a crash would: its mounts go stale. */
async function killServe(dir: string): Promise<void> {
  const pid = await pidOfServe(dir);
  for (const c of childrenOf(pid)) process.kill(c, "SIGKILL");
  process.kill(pid, "SIGKILL");
  while (fs.existsSync(`/proc/${pid}`)) await new Promise((r) => setTimeout(r, 10));
}

main().catch((e) => {
  process.stderr.write(`bench:recovery: ${e instanceof Error ? e.message : e}\n`);
  process.exit(1);
});
