// Giving memory back after abuse. V8 keeps the heap it grew for a burst of multi-megabyte
// AdmissionReviews and thousands of connections, because nothing triggers a full
// collection in a mostly idle webhook (measured: 68 MiB RSS before, 168 MiB after, flat
// for a minute). After a burst (large bodies, or connections past the cap) and a quiet
// while, one compacting full collection runs. Ordinary traffic (pods of a few KiB, few
// connections) never triggers it. That alone left 111 MiB after abuse from a 63 MiB
// baseline: glibc's arenas keep what TLS and large bodies took, and V8 keeps 16 MiB
// semi-spaces. The Deployment therefore preloads jemalloc (deploy/base/webhook.yaml), and
// bin/procview starts node with 1 MiB semi-spaces; with both, 65 MiB before and 67 after.
import * as fs from "node:fs";
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
    this.timer = setTimeout(() => {
      // Compacting moves the survivors together so that the emptied pages go back to the
      // system; V8's own heuristics compact only when fragmentation is already high.
      v8.setFlagsFromString("--compact-on-every-full-gc");
      try {
        collector()();
      } finally {
        v8.setFlagsFromString("--no-compact-on-every-full-gc");
      }
    }, QUIET_MS);
    this.timer.unref();
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}

/** What is missing from the memory set-up the Deployment gives the webhook (empty when none). */
export function memorySetupGaps(): string[] {
  const gaps: string[] = [];
  let maps = "";
  try {
    maps = fs.readFileSync("/proc/self/maps", "utf8");
  } catch {
    // no /proc: nothing to say
  }
  if (maps && !maps.includes("libjemalloc")) gaps.push("LD_PRELOAD=libjemalloc.so.2 (Debian/Ubuntu package libjemalloc2)");
  const options = `${process.env.NODE_OPTIONS ?? ""} ${process.execArgv.join(" ")}`;
  if (!/--max-semi-space-size=/.test(options)) gaps.push("node --max-semi-space-size=1 (run bin/procview itself, not node bin/procview)");
  return gaps;
}
