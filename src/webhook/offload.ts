// Large AdmissionReviews are decided in a worker thread. Parsing a 3 MiB body takes tens of
// milliseconds (a pod with 100,000 containers: 20 ms for the nesting check and 55 ms for
// JSON.parse on the test machine), and on the server's thread every ordinary admission
// queued behind it waited that long. Ordinary bodies (a few KiB) stay on the server's
// thread; a worker's start costs more than they do. The worker is ended once it has been
// idle for a quiet while, which also gives back the heap a burst of large bodies grew.
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import type { AdmissionConfig, Scope } from "./admission";
import type { Decision } from "./decide";
import { QUIET_MS } from "./limits";

/** Bodies larger than this are decided in the worker. */
export const OFFLOAD_BYTES = 256 * 1024;
/** Large bodies waiting beyond this many are refused (429): an abusive client cannot queue without bound. */
export const MAX_OFFLOADED = 16;
/** A worker that runs out of this much heap dies alone; its requests get a 500. */
const WORKER_HEAP_MB = 256;

export class Offload {
  private worker?: Worker;
  private nextId = 0;
  private readonly pending = new Map<number, (d: Decision) => void>();
  private idle?: NodeJS.Timeout;

  constructor(private readonly cfg: AdmissionConfig) {}

  decide(raw: Buffer, scope: Scope): Promise<Decision> {
    if (this.pending.size >= MAX_OFFLOADED)
      return Promise.resolve({ kind: "refused", status: 429, message: `more than ${MAX_OFFLOADED} large requests at once; retry` });
    clearTimeout(this.idle);
    const w = this.worker ?? this.start();
    const id = this.nextId++;
    // The body's memory moves to the worker rather than being copied (a fresh Buffer.concat owns it whole).
    const whole = raw.byteOffset === 0 && raw.byteLength === raw.buffer.byteLength;
    const body = whole ? raw.buffer : raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      w.postMessage({ id, body, scope }, [body as ArrayBuffer]);
    });
  }

  stop(): void {
    clearTimeout(this.idle);
    void this.worker?.terminate();
    this.worker = undefined;
  }

  private start(): Worker {
    const w = new Worker(path.join(__dirname, "offload-worker.js"), {
      workerData: { targets: this.cfg.targets, protectedNamespaces: [...this.cfg.protectedNamespaces] },
      resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB },
    });
    w.unref();
    w.on("message", (m: { id: number; decision: Decision }) => {
      this.pending.get(m.id)?.(m.decision);
      this.pending.delete(m.id);
      if (this.pending.size === 0) {
        clearTimeout(this.idle);
        this.idle = setTimeout(() => this.retire(w), QUIET_MS);
        this.idle.unref();
      }
    });
    // Out of heap, or our bug: its requests are answered 500, and the next large one starts a new worker.
    const lost = () => {
      if (this.worker !== w) return;
      this.worker = undefined;
      for (const resolve of this.pending.values()) resolve({ kind: "refused", status: 500, message: "internal error" });
      this.pending.clear();
    };
    w.on("error", lost);
    w.on("exit", lost);
    this.worker = w;
    return w;
  }

  private retire(w: Worker): void {
    if (this.worker !== w || this.pending.size > 0) return;
    this.worker = undefined;
    void w.terminate();
  }
}
