// Read counters of the serving side. The worker counts into a SharedArrayBuffer (no
// locks, no messages on the read path); the serving process sends snapshots to the
// supervisor (daemon-metrics.ts), which keeps the Prometheus registry.
import { type FallbackReason, type Rendered, VIEWS } from "./render";

export const REASONS: FallbackReason[] = ["outside-pid-namespace", "process-gone", "host-cgroup", "cgroup-unreadable", "cgroup-unplaced"];
export const BUCKETS_US = [10, 25, 50, 100, 250, 500, 1000, 2500, 10000];
const V = VIEWS.length;
const R = REASONS.length;
const B = BUCKETS_US.length + 1;
export const AT = { reads: 0, fallbacks: V, buckets: V + R, sum: V + R + B, count: V + R + B + 1, containers: V + R + B + 2 };
export const METRICS_SLOTS = AT.containers + 1;

export interface Snapshot {
  values: number[];
}

/** Worker side: counts into shared memory. */
export class ReadCounters {
  private readonly a: Float64Array;
  private readonly seen = new Map<string, number>();
  private lastSweep = 0;

  constructor(sab: SharedArrayBuffer) {
    this.a = new Float64Array(sab);
  }

  record(view: string, rendered: Rendered | undefined, micros: number, container: string | undefined): void {
    const i = VIEWS.indexOf(view as (typeof VIEWS)[number]);
    if (i >= 0) this.a[AT.reads + i]++;
    if (rendered?.fallback) this.a[AT.fallbacks + REASONS.indexOf(rendered.fallback)]++;
    let b = BUCKETS_US.findIndex((le) => micros <= le);
    if (b < 0) b = BUCKETS_US.length;
    this.a[AT.buckets + b]++;
    this.a[AT.sum] += micros / 1e6;
    this.a[AT.count]++;
    if (container) {
      const now = Date.now();
      this.seen.set(container, now);
      // Containers served: those read from in the last minute.
      if (now - this.lastSweep > 5000) {
        this.lastSweep = now;
        for (const [k, t] of this.seen) if (now - t > 60_000) this.seen.delete(k);
      }
      this.a[AT.containers] = this.seen.size;
    }
  }
}

export function snapshot(sab: SharedArrayBuffer): Snapshot {
  return { values: Array.from(new Float64Array(sab)) };
}
