// Giving memory back after churn. The supervisor's serving thread never returns to its event
// loop (it blocks in read(2) on /dev/fuse), so V8's memory reducer, which runs as a task on that
// loop when an isolate goes idle, never runs there; a serving process returns to its loop
// between requests, but under steady reads it may not go idle for long. Either way a heap that
// grew while thousands of cgroups came and went, or a reader held thousands of files open, can
// stay at its peak, and so does the C heap that glibc keeps for reuse. So the server looks at
// most every RECLAIM_MS: when the descriptor sweep closed descriptors of removed cgroups or
// exited processes (churn has passed), or the heap is RECLAIM_GROWTH (4 MiB) bigger than after
// the last look, it collects its garbage in full (tens of milliseconds, once) and returns the
// free C heap to the kernel.
import * as v8 from "node:v8";
import * as vm from "node:vm";
import { sharedMapHelper } from "../fuse/journal";

const RECLAIM_MS = 30_000;
const RECLAIM_GROWTH = 4 * 2 ** 20;

export class Reclaimer {
  private readonly gc?: () => void;
  private readonly trim?: () => boolean;
  private last: number;
  private heapAfter = v8.getHeapStatistics().total_heap_size;

  constructor(private readonly clock: () => number = Date.now) {
    this.last = clock();
    v8.setFlagsFromString("--expose-gc");
    this.gc = vm.runInNewContext("gc") as (() => void) | undefined;
    this.trim = (sharedMapHelper() as { mallocTrim?: () => boolean } | undefined)?.mallocTrim;
  }

  /** Called after requests; `churned`: descriptors of gone cgroups or processes were just closed. */
  maybe(churned: boolean): void {
    const t = this.clock();
    if (!churned && t - this.last < RECLAIM_MS) return;
    this.last = t;
    if (!churned && v8.getHeapStatistics().total_heap_size < this.heapAfter + RECLAIM_GROWTH) return;
    this.reclaimNow();
  }

  /** Reclaims at once: after warming up, and once parked (the thread then has nothing to do). */
  reclaimNow(): void {
    this.gc?.();
    // The first collection's dead array buffers are freed when the next one starts.
    this.gc?.();
    this.trim?.();
    this.heapAfter = v8.getHeapStatistics().total_heap_size;
  }
}
