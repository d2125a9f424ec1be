// Daemon metrics, supervisor side: the Prometheus registry, added up across restarts of
// the serving process, and the HTTP endpoint.
import * as http from "node:http";
import * as prom from "prom-client";
import { AT, BUCKETS_US, METRICS_SLOTS, REASONS, type Snapshot } from "./counters";
import { VIEWS } from "./render";
import type { ServedBy, Source } from "./supervisor";

/** Supervisor side: the registry and the HTTP endpoint. */
export class DaemonMetrics {
  readonly registry = new prom.Registry();
  private readonly base = new Array<number>(METRICS_SLOTS).fill(0);
  /** What the live serving process and the supervisor's serving thread each counted since they started. */
  private readonly current: Record<Source, number[]> = {
    child: new Array<number>(METRICS_SLOTS).fill(0),
    bridge: new Array<number>(METRICS_SLOTS).fill(0),
  };
  readonly restarts = new prom.Counter({
    name: "procview_serving_restarts_total",
    help: "Serving processes restarted after dying",
    registers: [this.registry],
  });
  readonly hangs = new prom.Counter({
    name: "procview_serving_hangs_total",
    help: "Times the serving process left the watchdog's read unanswered for 1 s (5 s for the supervisor's own serving thread), and was replaced",
    registers: [this.registry],
  });
  private readonly served = new prom.Gauge({
    name: "procview_served_by",
    help: "Who answers the filesystem now: 1 for the serving process or the supervisor's own thread (after a crash, until a new serving process is ready), 0 for the other",
    labelNames: ["by"],
    registers: [this.registry],
  });
  readonly remounts = new prom.Counter({
    name: "procview_remounts_total",
    help: "Container mounts re-bound to the live filesystem (or detached), by result",
    labelNames: ["action", "result"],
    registers: [this.registry],
  });

  constructor() {
    const total = (i: number) => this.base[i] + this.current.child[i] + this.current.bridge[i];
    // Whichever served last minute's readers: the two never serve at once.
    const containers = () => Math.max(this.current.child[AT.containers], this.current.bridge[AT.containers]);
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
      help: "Readers whose cgroup could not be read (gone, files unreadable, or outside the cgroup trees the daemon sees)",
      registers: [this.registry],
      collect() {
        this.reset();
        const at = (r: (typeof REASONS)[number]) => total(AT.fallbacks + REASONS.indexOf(r));
        this.inc(at("process-gone") + at("cgroup-unreadable") + at("cgroup-unplaced"));
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

  servedBy(by: ServedBy): void {
    for (const b of ["process", "supervisor-thread"] as const) this.served.set({ by: b }, b === by ? 1 : 0);
  }

  /** A snapshot from the live serving process (cumulative since it started). */
  update(s: Snapshot, from: Source = "child"): void {
    this.current[from] = s.values;
  }

  /** The serving process (or the supervisor's serving thread) ended: keep what it counted. */
  carryOver(from: Source = "child"): void {
    for (let i = 0; i < METRICS_SLOTS; i++) if (i !== AT.containers) this.base[i] += this.current[from][i];
    this.current[from] = new Array<number>(METRICS_SLOTS).fill(0);
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
