// The serving thread: blocks in read(2) on /dev/fuse and answers every request.
import { type MessagePort, workerData } from "node:worker_threads";
import { serveLoop } from "../fuse/server";
import { systemRenderer } from "./context";
import { PortLoads } from "./loads";
import { ProcviewTree } from "./tree";

export interface WorkerConfig {
  fd: number;
  cpuQuota: boolean;
  loadPort: MessagePort;
}

const cfg = workerData as WorkerConfig;
const { renderer } = systemRenderer(new PortLoads(cfg.loadPort), cfg.cpuQuota);
const stats = new Map<string, [number, number]>();
let last = Date.now();
serveLoop(
  cfg.fd,
  new ProcviewTree(renderer),
  process.env.PROCVIEW_PROFILE
    ? {
        onRequest: (op, us) => {
          const s = stats.get(op) ?? [0, 0];
          s[0]++;
          s[1] += us;
          stats.set(op, s);
          if (Date.now() - last > 3000) {
            last = Date.now();
            process.stderr.write(`${JSON.stringify([...stats].map(([k, [n, t]]) => [k, n, +(t / n).toFixed(1)]))}\n`);
          }
        },
      }
    : {},
);
