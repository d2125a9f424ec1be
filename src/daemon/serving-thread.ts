// A serving thread (./worker): the supervisor's own, and a serving process's where the native
// helper is not built (./child). One way to start it and to talk to it, for both: the go flag
// (shared memory, read by a thread that blocks in read(2) and cannot take messages while it
// serves) and the load port (the thread asks for cgroups, the sampler's tables come back).
import * as path from "node:path";
import { MessageChannel, type MessagePort, type ResourceLimits, Worker } from "node:worker_threads";
import type { LoadMessage, LoadTable } from "./loads";
import type { ServingConfig } from "./serving";

/**
 * The go flag: slot GO_FLAG becomes 1 when the thread is to serve; GO_PRIOR_FAILED is 1 when
 * its predecessor crashed or hung; GO_PARK becomes 1 when a serving thread is to stop after
 * the request it is answering and wait for the next go.
 */
export const GO_FLAG = 0;
export const GO_PRIOR_FAILED = 1;
export const GO_PARK = 2;
const GO_SLOTS = 3;

/** What a serving thread tells its parent: warmed up (ready to serve), or parked. */
export type FromWorker = { warm: true } | { parked: true };

/** What the thread is given (./worker reads it as its workerData). */
export interface WorkerConfig extends ServingConfig {
  loadPort: MessagePort;
  /** Int32Array over a SharedArrayBuffer: the go flag (above). */
  go: Int32Array;
}

export class ServingThread {
  readonly worker: Worker;
  private readonly flags = new Int32Array(new SharedArrayBuffer(GO_SLOTS * 4));
  private readonly port: MessagePort;

  /** Starts the thread; it loads and warms the read path, says so ('warm'), and waits for go. */
  constructor(config: ServingConfig, limits: ResourceLimits, onWatch: (dir: string) => void) {
    const channel = new MessageChannel();
    channel.port1.on("message", (m: LoadMessage) => {
      if ("watch" in m) onWatch(m.watch);
    });
    // The thread keeps the event loop alive while it runs; its port need not.
    channel.port1.unref();
    this.port = channel.port1;
    this.worker = new Worker(path.join(__dirname, "worker.js"), {
      workerData: { ...config, loadPort: channel.port2, go: this.flags } satisfies WorkerConfig,
      transferList: [channel.port2],
      resourceLimits: limits,
    });
  }

  /** Serve now; `priorFailed`: whoever served before crashed or hung. */
  go(priorFailed: boolean): void {
    Atomics.store(this.flags, GO_PRIOR_FAILED, priorFailed ? 1 : 0);
    Atomics.store(this.flags, GO_FLAG, 1);
    Atomics.notify(this.flags, GO_FLAG);
  }

  /** Stop after the request in hand, and say 'parked'. */
  park(): void {
    Atomics.store(this.flags, GO_PARK, 1);
  }

  loads(table: LoadTable): void {
    this.port.postMessage({ loads: table } satisfies LoadMessage);
  }

  /** Once the thread has exited. */
  close(): void {
    this.port.close();
  }
}
