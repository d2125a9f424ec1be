// The serving process. It inherits the /dev/fuse descriptor from the supervisor (fd 4),
// asks the kernel to resend what a crashed predecessor left unanswered, and serves from a
// worker thread; this thread samples load averages and reports metrics.
import * as path from "node:path";
import { MessageChannel, Worker } from "node:worker_threads";
import { requestResend } from "../fuse/server";
import { LoadSampler } from "./loads";
import { METRICS_SLOTS, snapshot } from "./metrics";
import type { WorkerConfig } from "./worker";

export const CHILD_FD = 4;

export interface ChildConfig {
  cpuQuota: boolean;
  generation: number;
}

const cfg = JSON.parse(process.env.PROCVIEW_CHILD ?? "{}") as ChildConfig;
if (cfg.generation > 0) requestResend(CHILD_FD);
const channel = new MessageChannel();
const sampler = new LoadSampler(channel.port1);
sampler.start();
const metrics = new SharedArrayBuffer(METRICS_SLOTS * 8);
const workerData: WorkerConfig = { fd: CHILD_FD, cpuQuota: cfg.cpuQuota, loadPort: channel.port2, generation: cfg.generation, metrics };
const worker = new Worker(path.join(__dirname, "worker.js"), {
  workerData,
  transferList: [channel.port2],
  // Renders allocate short-lived strings only: a small young generation keeps RSS low.
  resourceLimits: { maxYoungGenerationSizeMb: 4 },
});
const report = setInterval(() => process.send?.(snapshot(metrics)), 1000);
report.unref();
// The worker leaves its loop when the filesystem is unmounted; anything else is a crash.
worker.on("exit", (code) => {
  process.send?.(snapshot(metrics));
  process.exit(code);
});
worker.on("error", (e) => {
  process.stderr.write(`${JSON.stringify({ level: "error", msg: "serving thread failed", err: e.message })}\n`);
  process.exit(1);
});
// The supervisor going away must not leave an orphan serving a connection nobody manages.
process.on("disconnect", () => process.exit(0));
