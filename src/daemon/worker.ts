// The serving thread: blocks in read(2) on /dev/fuse and answers every request.
import { type MessagePort, workerData } from "node:worker_threads";
import { serveLoop } from "../fuse/server";
import { systemRenderer } from "./context";
import { PortLoads } from "./loads";
import { ReadCounters } from "./metrics";
import { ProcviewTree } from "./tree";

export interface WorkerConfig {
  fd: number;
  cpuQuota: boolean;
  loadPort: MessagePort;
  generation: number;
  metrics: SharedArrayBuffer;
}

const cfg = workerData as WorkerConfig;
const { renderer } = systemRenderer(new PortLoads(cfg.loadPort), cfg.cpuQuota);
const counters = new ReadCounters(cfg.metrics);
serveLoop(
  cfg.fd,
  new ProcviewTree(renderer, undefined, (view, r, us, container) => counters.record(view, r, us, container), cfg.generation),
);
