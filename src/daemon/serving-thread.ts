// What a serving process gives its serving thread (./worker), and the go flag between them.
import type { MessagePort } from "node:worker_threads";
import type { ServingConfig } from "./serving";

/**
 * The go flag: slot GO_FLAG becomes 1 when the thread is to serve; GO_PRIOR_FAILED is 1 when
 * its predecessor crashed or hung; GO_PARK becomes 1 when a serving thread is to stop after
 * the request it is answering and wait for the next go.
 */
export const GO_FLAG = 0;
export const GO_PRIOR_FAILED = 1;
export const GO_PARK = 2;
export const GO_SLOTS = 3;

/** What a serving thread tells its parent: warmed up (ready to serve), or parked. */
export type FromWorker = { warm: true } | { parked: true };

export interface WorkerConfig extends ServingConfig {
  loadPort: MessagePort;
  /** Int32Array over a SharedArrayBuffer: the go flag (above). */
  go: Int32Array;
}
