// A serving process. It inherits the /dev/fuse descriptor from the supervisor (fd 4). Its
// worker thread starts at once, loads and exercises the read path, and then waits on a
// shared flag; once warm it tells the supervisor, which hands it the connection (until
// then the supervisor's own serving thread answers: see ./supervisor). On "go" the worker
// asks the kernel to resend what a crashed predecessor left unanswered, and serves. This
// thread relays load averages between the supervisor and the worker, and reports metrics.
import * as path from "node:path";
import { MessageChannel, Worker } from "node:worker_threads";
import { METRICS_SLOTS, snapshot } from "./counters";
import type { LoadMessage, LoadTable } from "./loads";
import { type FromWorker, GO_FLAG, GO_PARK, GO_PRIOR_FAILED, GO_SLOTS, type WorkerConfig } from "./worker-config";

export const CHILD_FD = 4;
/** The one-request journal (kernels without FUSE_NOTIFY_RESEND only): fd 5 when passed. */
export const JOURNAL_FD = 5;
/** The shared CPU clocks (./clocks): fd 6 when passed. */
export const CLOCKS_FD = 6;

export interface ChildConfig {
  cpuQuota: boolean;
  /** The supervisor passed the one-request journal as JOURNAL_FD. */
  journal: boolean;
  /** The supervisor passed the shared CPU clocks as CLOCKS_FD. */
  clocks: boolean;
  /** The host's possible CPUs: the clock file's layout. */
  hostCpus: number;
  generation: number;
}

/** Messages between the supervisor and a serving process. */
/**
 * `go`: serve now; `priorFailed`: the last serving process crashed or hung (rather than being
 * killed from outside). `park`: stop after the request in hand (a handover to another daemon).
 */
export type ToChild = { go: true; priorFailed: boolean } | { loads: LoadTable } | { park: true };
export type FromChild = { ready: true } | { parked: true } | { values: number[] } | { watch: string };

const cfg = JSON.parse(process.env.PROCVIEW_CHILD ?? "{}") as ChildConfig;

process.title = "procview-standby";
const channel = new MessageChannel();
// Load averages: the worker asks for cgroups, the supervisor's sampler answers with tables.
channel.port1.on("message", (m: LoadMessage) => {
  if ("watch" in m) process.send?.(m satisfies FromChild);
});
const metrics = new SharedArrayBuffer(METRICS_SLOTS * 8);
let serving = false;
const workerData: Omit<WorkerConfig, "go"> = {
  fd: CHILD_FD,
  journalFd: cfg.journal ? JOURNAL_FD : undefined,
  clocksFd: cfg.clocks ? CLOCKS_FD : undefined,
  hostCpus: cfg.hostCpus,
  cpuQuota: cfg.cpuQuota,
  loadPort: channel.port2,
  generation: cfg.generation,
  metrics,
};
const go = new Int32Array(new SharedArrayBuffer(GO_SLOTS * 4));
const worker = new Worker(path.join(__dirname, "worker.js"), {
  workerData: { ...workerData, go },
  transferList: [channel.port2],
  // Renders allocate short-lived strings only: a small young generation keeps RSS low.
  resourceLimits: { maxYoungGenerationSizeMb: 4 },
});
worker.on("message", (m: FromWorker) => {
  if ("warm" in m) process.send?.({ ready: true } satisfies FromChild);
  else process.send?.({ parked: true } satisfies FromChild);
});
// The worker leaves its loop when the filesystem is unmounted; anything else is a crash.
worker.on("exit", (code) => {
  if (serving) process.send?.(snapshot(metrics));
  process.exit(code);
});
worker.on("error", (e) => {
  process.stderr.write(`${JSON.stringify({ level: 50, msg: "serving thread failed", err: e.message })}\n`);
  process.exit(1);
});
process.on("message", (m: ToChild) => {
  if ("loads" in m) {
    channel.port1.postMessage(m satisfies LoadMessage);
    return;
  }
  if ("park" in m) {
    Atomics.store(go, GO_PARK, 1);
    return;
  }
  if (serving) return;
  serving = true;
  process.title = "procview-serving";
  Atomics.store(go, GO_PRIOR_FAILED, m.priorFailed ? 1 : 0);
  Atomics.store(go, GO_FLAG, 1);
  Atomics.notify(go, GO_FLAG);
  const report = setInterval(() => process.send?.(snapshot(metrics) satisfies FromChild), 1000);
  report.unref();
});
// The supervisor going away must not leave an orphan serving a connection nobody manages.
process.on("disconnect", () => process.exit(0));
