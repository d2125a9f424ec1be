// Giving memory back after abuse. V8 keeps the heap it grew for a burst of multi-megabyte
// AdmissionReviews and thousands of connections, because nothing triggers a full
// collection in a mostly idle webhook (measured: 68 MiB RSS before, 168 MiB after, flat
// for a minute). After a burst (large bodies, or connections past the cap) and a quiet
// while, one full collection runs: 138-143 MiB after. The rest is malloc's arenas, which
// glibc does not trim. Ordinary traffic (pods of a few KiB, few connections) never triggers it.
import * as v8 from "node:v8";
import * as vm from "node:vm";
import { QUIET_MS } from "./limits";

let fullGc: (() => void) | undefined;
function collector(): () => void {
  if (!fullGc) {
    // The gc() function, without starting node with --expose-gc.
    v8.setFlagsFromString("--expose-gc");
    fullGc = vm.runInNewContext("gc") as () => void;
  }
  return fullGc;
}

export class Reclaimer {
  private timer?: NodeJS.Timeout;

  /** A large body arrived, or a connection was evicted: collect once the burst is over. */
  burst(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => collector()(), QUIET_MS);
    this.timer.unref();
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}
