// Daemon metrics. The serving worker counts into a SharedArrayBuffer (no locks, no
// messages on the read path); the serving process sends snapshots to the supervisor,
// which keeps the Prometheus registry and adds across restarts of the serving process.
import * as http from "node:http";
import * as prom from "prom-client";
import { type FallbackReason, type Rendered, VIEWS } from "./render";

export const REASONS: FallbackReason[] = ["outside-pid-namespace", "process-gone", "host-cgroup", "cgroup-unreadable"];
const BUCKETS_US = [10, 25, 50, 100, 250, 500, 1000, 2500, 10000];
const V = VIEWS.length;
const R = REASONS.length;
const B = BUCKETS_US.length + 1;
const AT = { reads: 0, fallbacks: V, buckets: V + R, sum: V + R + B, count: V + R + B + 1, containers: V + R + B + 2 };
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

/** Supervisor side: the registry and the HTTP endpoint. */
export class DaemonMetrics {
  readonly registry = new prom.Registry();
  private readonly base = new Array<number>(METRICS_SLOTS).fill(0);
  private current = new Array<number>(METRICS_SLOTS).fill(0);
  readonly restarts = new prom.Counter({
    name: "procview_serving_restarts_total",
    help: "Serving processes restarted after dying",
    registers: [this.registry],
  });
  readonly remounts = new prom.Counter({
    name: "procview_remounts_total",
    help: "Container mounts re-bound to the live filesystem (or detached), by result",
    labelNames: ["action", "result"],
    registers: [this.registry],
  });

  constructor() {
    const total = (i: number) => this.base[i] + this.current[i];
    const containers = () => this.current[AT.containers];
    new prom.Counter({
      name: "procview_reads_total",
      help: "Files rendered, by file",
      labelNames: ["file"],
      registers: [this.registry],
      collect() {
        this.reset();
        VIEWS.forEach((v, i) => this.inc({ file: v }, total(AT.reads + i)));
      },
    });
    new prom.Counter({
      name: "procview_host_fallbacks_total",
      help: "Reads answered with the host's own file, by reason",
      labelNames: ["reason"],
      registers: [this.registry],
      collect() {
        this.reset();
        REASONS.forEach((r, i) => this.inc({ reason: r }, total(AT.fallbacks + i)));
      },
    });
    new prom.Counter({
      name: "procview_cgroup_resolution_errors_total",
      help: "Readers whose cgroup could not be read (gone, or files unreadable)",
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc(total(AT.fallbacks + REASONS.indexOf("process-gone")) + total(AT.fallbacks + REASONS.indexOf("cgroup-unreadable")));
      },
    });
    new prom.Gauge({
      name: "procview_containers_served",
      help: "Distinct cgroups read from in the last minute",
      registers: [this.registry],
      collect() {
        this.set(containers());
      },
    });
    // The render histogram is kept in shared memory; it is reported as prom-client would.
    this.registry.registerMetric({
      name: "procview_render_duration_seconds",
      get: async () => {
        let cum = 0;
        const values = BUCKETS_US.map((le, i) => {
          cum += total(AT.buckets + i);
          return { labels: { le: le / 1e6 }, value: cum, metricName: "procview_render_duration_seconds_bucket" };
        });
        values.push({
          labels: { le: "+Inf" as unknown as number },
          value: cum + total(AT.buckets + BUCKETS_US.length),
          metricName: "procview_render_duration_seconds_bucket",
        });
        return {
          name: "procview_render_duration_seconds",
          help: "Time to render a file for a reader",
          type: "histogram" as unknown as prom.MetricType,
          aggregator: "sum" as prom.Aggregator,
          values: [
            ...values,
            { labels: {}, value: total(AT.sum), metricName: "procview_render_duration_seconds_sum" },
            { labels: {}, value: total(AT.count), metricName: "procview_render_duration_seconds_count" },
          ],
        };
      },
    } as unknown as prom.Metric);
  }

  /** A snapshot from the live serving process (cumulative since it started). */
  update(s: Snapshot): void {
    this.current = s.values;
  }

  /** The serving process died: keep what it counted. */
  carryOver(): void {
    for (let i = 0; i < METRICS_SLOTS; i++) if (i !== AT.containers) this.base[i] += this.current[i];
    this.current = new Array<number>(METRICS_SLOTS).fill(0);
  }

  async listen(address: string): Promise<http.Server> {
    const m = /^(.*):(\d+)$/.exec(address);
    if (!m) throw new Error(`--metrics-address: "${address}" is not HOST:PORT`);
    const server = http.createServer((req, res) => {
      if (req.url !== "/metrics") {
        res.writeHead(404).end();
        return;
      }
      void this.registry.metrics().then((text) => {
        res.writeHead(200, { "content-type": this.registry.contentType });
        res.end(text);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(Number(m[2]), m[1] || "127.0.0.1", resolve);
    });
    return server;
  }
}
