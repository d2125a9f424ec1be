// npm run bench:churn: does procview give back what a busy node's churn takes? 10,000
// short-lived cgroups, each read from once (this process moves itself in, reads meminfo
// and stat through the mount, moves back, and the cgroup is removed), then 100,000 handles
// opened, read and closed (up to 10,000 open at once), then 35 s idle (the descriptor sweep
// runs every 30 s). RSS and open descriptors of every procview process before, after each
// phase and after the idle time.
import * as fs from "node:fs";
import * as path from "node:path";
import { childrenOf, startProcview } from "../test/helpers/daemons";

const CGROUPS = Number(process.env.CHURN_CGROUPS ?? 10_000);
const HANDLES = Number(process.env.CHURN_HANDLES ?? 100_000);
const AT_ONCE = 10_000;
const CONTROLLERS = ["memory", "cpu,cpuacct"].filter((c) => fs.existsSync(`/sys/fs/cgroup/${c}/cgroup.procs`));

function figures(pids: number[]): string {
  return pids
    .map((p) => {
      try {
        const rss = Number(/^VmRSS:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${p}/status`, "utf8"))?.[1]) / 1024;
        const name = fs.readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0")[0].replace(/.*\//, "");
        return `${name === "node" ? "supervisor" : name} ${rss.toFixed(1)} MiB, ${fs.readdirSync(`/proc/${p}/fd`).length} fds`;
      } catch {
        return `${p} gone`;
      }
    })
    .join("; ");
}

async function main(): Promise<void> {
  if (CONTROLLERS.length === 0)
    throw new Error("no cgroup v1 memory or cpu controller mounted: this benchmark moves itself between v1 cgroups");
  const d = await startProcview();
  const pids = () => [d.proc.pid as number, ...childrenOf(d.proc.pid as number)];
  const home = CONTROLLERS.map((c) => {
    const line = fs
      .readFileSync("/proc/self/cgroup", "utf8")
      .split("\n")
      .find((l) => l.split(":")[1] === c);
    return path.join("/sys/fs/cgroup", c, line?.split(":")[2] ?? "/");
  });
  try {
    for (const f of ["meminfo", "stat"]) fs.readFileSync(path.join(d.dir, "proc", f));
    await new Promise((r) => setTimeout(r, 2000));
    console.log(`before: ${figures(pids())}`);

    const t0 = Date.now();
    for (let i = 0; i < CGROUPS; i++) {
      const dirs = CONTROLLERS.map((c) => `/sys/fs/cgroup/${c}/procview-churn-${process.pid}-${i}`);
      for (const dir of dirs) {
        fs.mkdirSync(dir);
        fs.writeFileSync(path.join(dir, "cgroup.procs"), String(process.pid));
      }
      fs.readFileSync(path.join(d.dir, "proc/meminfo"));
      fs.readFileSync(path.join(d.dir, "proc/stat"));
      for (const h of home) fs.writeFileSync(path.join(h, "cgroup.procs"), String(process.pid));
      for (const dir of dirs) fs.rmdirSync(dir);
    }
    console.log(`after ${CGROUPS} cgroups (${((Date.now() - t0) / 1000).toFixed(1)} s): ${figures(pids())}`);

    const t1 = Date.now();
    for (let done = 0; done < HANDLES;) {
      const fds: number[] = [];
      for (let i = 0; i < AT_ONCE && done < HANDLES; i++, done++) {
        const fd = fs.openSync(path.join(d.dir, "proc/meminfo"), "r");
        fs.readSync(fd, Buffer.alloc(64));
        fds.push(fd);
      }
      for (const fd of fds) fs.closeSync(fd);
    }
    console.log(`after ${HANDLES} handles (${((Date.now() - t1) / 1000).toFixed(1)} s): ${figures(pids())}`);

    await new Promise((r) => setTimeout(r, 35_000));
    console.log(`after 35 s idle: ${figures(pids())}`);
  } finally {
    for (const h of home) fs.writeFileSync(path.join(h, "cgroup.procs"), String(process.pid));
    for (const c of CONTROLLERS)
      for (const e of fs.readdirSync(`/sys/fs/cgroup/${c}`))
        if (e.startsWith(`procview-churn-${process.pid}-`)) fs.rmdirSync(`/sys/fs/cgroup/${c}/${e}`);
    await d.stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
