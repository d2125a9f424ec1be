// npm run bench:crash: what a crash of the serving process costs the readers.
//  1. Takeover: the serving process SIGKILLed 20 times, 1 s apart; each time, the time from
//     the kill to the next read answered through the mount.
//  2. A kill storm: SIGKILL every 200 ms for 20 s while 8 readers in 4 real runc containers
//     read meminfo and cpuinfo in a loop, and 2 busy loops load the machine: failed reads,
//     wrong figures, slowest read.
//  3. A hang: the serving process SIGSTOPped for 10 s while a container reads: slowest read.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import { servingOf, startProcview } from "../test/helpers/daemons";
import { Container } from "../test/helpers/runc";
import { killEvery, type ReaderCounts, readInLoop, totals } from "../test/helpers/storm";

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))];

async function takeovers(dir: string, supervisor: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < 20; i++) {
    await sleep(1000);
    const [p] = servingOf(supervisor);
    if (!p) continue;
    const t0 = process.hrtime.bigint();
    process.kill(p, "SIGKILL");
    fs.readFileSync(`${dir}/proc/uptime`);
    out.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return out;
}

async function main(): Promise<void> {
  const d = await startProcview();
  const supervisor = d.proc.pid as number;
  const containers = [0, 1, 2, 3].map((i) => new Container({ memoryBytes: (i % 2 ? 512 : 256) * MiB, cpus: "0-1", source: d.dir }));
  const kb = (i: number) => (i % 2 ? 512 : 256) * 1024;
  try {
    await sleep(1000);
    const t = await takeovers(d.dir, supervisor);
    console.log(
      `takeover, kill to the next read answered (${t.length} kills): median ${pct(t, 0.5).toFixed(1)} ms, max ${Math.max(...t).toFixed(1)} ms`,
    );

    // timeout passes a SIGTERM on to the loop (a SIGKILL would end timeout and leave the loop running).
    const busy = [0, 1].map(() => spawn("timeout", ["-s", "KILL", "22", "sh", "-c", "while :; do :; done"], { stdio: "ignore" }));
    const runs = containers.flatMap((c, i) => [0, 1].map(() => readInLoop(c, kb(i), 20)));
    const killer = killEvery(200, () => servingOf(supervisor));
    let results: ReaderCounts[];
    try {
      results = await Promise.all(runs);
    } finally {
      killer.stop();
      for (const b of busy) b.kill("SIGTERM");
    }
    const kills = killer.kills();
    const storm = totals(results);
    console.log(
      `kill storm (every 200 ms for 20 s, 8 readers in 4 containers, 2 busy loops): ${kills} kills, ${storm.ok} reads right, ${storm.fail} failed, ${storm.wrong} wrong, slowest read ${storm.worst.toFixed(3)} s`,
    );

    await sleep(2000);
    const hang = readInLoop(containers[0], kb(0), 12);
    await sleep(500);
    const [p] = servingOf(supervisor);
    process.kill(p, "SIGSTOP");
    await sleep(10_000);
    try {
      process.kill(p, "SIGCONT");
    } catch {
      // the watchdog killed it
    }
    const h = await hang;
    console.log(`hang (serving process SIGSTOPped for 10 s): ${h.ok} reads right, ${h.fail} failed, slowest read ${h.worst.toFixed(3)} s`);
  } finally {
    for (const c of containers) c.destroy();
    await d.stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
