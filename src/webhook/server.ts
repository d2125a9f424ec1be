// HTTPS for the MutatingAdmissionWebhook: POST /mutate (pods in opted-in namespaces),
// POST /mutate-pod (pods that opt in one by one), /healthz, /readyz, /metrics.
// Bad requests get a 4xx with the reason; a pod is never denied for our own fault. No
// request can crash it or make it do unbounded work: bodies are size- and depth-checked
// before parsing, every answer is built under one guard, large bodies are decided off this
// thread (./offload), and connections are capped and timed out (./limits).
import * as https from "node:https";
import type { AddressInfo, Socket } from "node:net";
import type { Logger } from "pino";
import * as prom from "prom-client";
import { Reclaimer } from "./reclaim";
import type { AdmissionConfig, Scope, Unpatched } from "./admission";
import { decide } from "./decide";
import type { PodIdentity } from "./events";
import { clip, HEADERS_TIMEOUT_MS, KEEP_ALIVE_MS, LARGE_BODY_BYTES, MAX_CONNECTIONS, REQUEST_TIMEOUT_MS } from "./limits";
import { OFFLOAD_BYTES, Offload } from "./offload";

export const MAX_BODY_BYTES = 3 * 1024 * 1024;

export interface TlsPair {
  cert: string;
  key: string;
}

export interface WebhookServerOptions {
  host: string;
  port: number;
  tls: TlsPair;
  admission: AdmissionConfig;
  logger: Logger;
  maxBodyBytes?: number;
  maxConnections?: number;
  /** Told of every pod that asked for procview's files and is admitted without (some of) them. */
  onUnpatched?: (pod: PodIdentity, why: Unpatched) => void;
}

const ROUTES: Record<string, Scope> = { "/mutate": "namespace", "/mutate-pod": "pod" };

export class WebhookServer {
  readonly registry = new prom.Registry();
  private readonly server: https.Server;
  private readonly requests = new prom.Counter({
    name: "procview_webhook_requests_total",
    help: "Admission requests by HTTP status",
    labelNames: ["code"],
    registers: [this.registry],
  });
  private readonly mutated = new prom.Counter({
    name: "procview_webhook_mutated_total",
    help: "Pods given procview's mounts",
    registers: [this.registry],
  });
  private readonly skipped = new prom.Counter({
    name: "procview_webhook_skipped_total",
    help: "Pods left alone, by reason",
    labelNames: ["reason"],
    registers: [this.registry],
  });
  private readonly errors = new prom.Counter({
    name: "procview_webhook_errors_total",
    help: "Requests refused (rejected) or pods allowed unpatched because of a fault (errored)",
    labelNames: ["kind"],
    registers: [this.registry],
  });
  private readonly unpatched = new prom.Counter({
    name: "procview_webhook_unpatched_total",
    help: "Pods that asked for procview's files and were admitted without (some of) them, by reason",
    labelNames: ["reason"],
    registers: [this.registry],
  });
  private readonly latency = new prom.Histogram({
    name: "procview_webhook_admission_duration_seconds",
    help: "Time from the end of the request body to the response",
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1],
    registers: [this.registry],
  });
  private readonly certExpiry = new prom.Gauge({
    name: "procview_webhook_certificate_expiry_timestamp_seconds",
    help: "When the serving certificate expires",
    registers: [this.registry],
  });
  private readonly evicted = new prom.Counter({
    name: "procview_webhook_connections_evicted_total",
    help: "Idle connections closed to make room, past the connection cap",
    registers: [this.registry],
  });
  private ready = false;
  private readonly reclaimer = new Reclaimer();
  private readonly offload: Offload;
  /** Open connections, oldest first: requests in progress, and requests answered. */
  private readonly connections = new Map<Socket, { busy: number; served: number }>();

  constructor(private readonly o: WebhookServerOptions) {
    this.offload = new Offload(o.admission);
    // Memory, heap, event-loop lag and file descriptors: what tells an operator it is healthy.
    prom.collectDefaultMetrics({ register: this.registry });
    this.server = https.createServer(
      {
        cert: o.tls.cert,
        key: o.tls.key,
        minVersion: "TLSv1.2",
        handshakeTimeout: HEADERS_TIMEOUT_MS,
        headersTimeout: HEADERS_TIMEOUT_MS,
        requestTimeout: REQUEST_TIMEOUT_MS,
        keepAliveTimeout: KEEP_ALIVE_MS,
        // Timeouts are enforced by a sweep; once a second keeps a slow client's hold short.
        connectionsCheckingInterval: 1000,
      },
      (req, res) => this.handle(req, res),
    );
    this.server.on("connection", (s: Socket) => this.admitConnection(s));
    // A client that breaks TLS or HTTP gets its socket closed, nothing more.
    this.server.on("tlsClientError", (_e, s) => s.destroy());
    this.server.on("clientError", (_e, s) => s.destroy());
  }

  /**
   * Past the cap, a connection with no request in progress makes room: first the oldest
   * that never completed a request (idle or dribbling clients), else the oldest idle one.
   * Flooding cannot lock the API server out; a keep-alive connection it loses, it reopens.
   */
  private admitConnection(s: Socket): void {
    this.connections.set(s, { busy: 0, served: 0 });
    s.once("close", () => this.connections.delete(s));
    const max = this.o.maxConnections ?? MAX_CONNECTIONS;
    if (this.connections.size <= max) return;
    let victim: Socket | undefined;
    for (const [old, st] of this.connections) {
      if (old === s || st.busy > 0) continue;
      if (st.served === 0) {
        victim = old;
        break;
      }
      victim ??= old;
    }
    // Every connection is mid-request: the newcomer goes.
    victim ??= s;
    this.connections.delete(victim);
    victim.destroy();
    if (victim !== s) this.evicted.inc();
    this.reclaimer.burst();
  }

  /** Serves a new certificate to new connections; connections already open keep theirs. */
  setTls(tls: TlsPair, expires?: Date): void {
    this.server.setSecureContext({ cert: tls.cert, key: tls.key, minVersion: "TLSv1.2" });
    if (expires) this.certExpiry.set(expires.getTime() / 1000);
  }

  async listen(): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.o.port, this.o.host, () => resolve());
    });
    this.ready = true;
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    this.ready = false;
    this.reclaimer.stop();
    this.offload.stop();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
  }

  private send(res: import("node:http").ServerResponse, status: number, body: string, type = "application/json"): void {
    res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body) });
    res.end(body);
  }

  private fail(res: import("node:http").ServerResponse, status: number, message: string): void {
    this.requests.inc({ code: status });
    this.errors.inc({ kind: "rejected" });
    this.o.logger.warn({ status, reason: message }, "admission request refused");
    this.send(res, status, JSON.stringify({ error: message }));
  }

  private handle(req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse): void {
    // The raw socket under TLS is what the connection map knows.
    const st = this.connections.get((req.socket as Socket & { _parent?: Socket })._parent ?? req.socket);
    if (st) {
      st.busy++;
      res.once("close", () => {
        st.busy--;
        st.served++;
      });
    }
    try {
      this.route(req, res);
    } catch (e) {
      this.internalError(res, e);
    }
  }

  /** Our own fault, whatever the request was: logged short, answered 500 if nothing was sent yet. */
  private internalError(res: import("node:http").ServerResponse, e: unknown): void {
    this.o.logger.error({ err: clip(e instanceof Error ? e.message : String(e)) }, "request failed");
    if (!res.headersSent) this.send(res, 500, JSON.stringify({ error: "internal error" }));
    else res.destroy();
  }

  private route(req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse): void {
    const url = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && url === "/healthz") return this.send(res, 200, "ok\n", "text/plain");
    if (req.method === "GET" && url === "/readyz")
      return this.send(res, this.ready ? 200 : 503, this.ready ? "ok\n" : "not ready\n", "text/plain");
    if (req.method === "GET" && url === "/metrics") {
      void this.registry.metrics().then((m) => this.send(res, 200, m, this.registry.contentType));
      return;
    }
    const scope = ROUTES[url];
    if (!scope) return this.fail(res, 404, `no such path: ${JSON.stringify(clip(url))}`);
    if (req.method !== "POST") return this.fail(res, 405, `${clip(req.method ?? "")} is not allowed on ${url}; POST an AdmissionReview`);
    const type = req.headers["content-type"] ?? "";
    if (!type.startsWith("application/json"))
      return this.fail(res, 415, `content-type must be application/json, not ${JSON.stringify(clip(type))}`);
    const max = this.o.maxBodyBytes ?? MAX_BODY_BYTES;
    if (Number(req.headers["content-length"] ?? 0) > max) {
      res.setHeader("connection", "close");
      return this.fail(res, 413, `the body is larger than ${max} bytes`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on("data", (c: Buffer) => {
      if (refused) return;
      size += c.length;
      if (size > max) {
        refused = true;
        res.setHeader("connection", "close");
        this.fail(res, 413, `the body is larger than ${max} bytes`);
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      if (size > LARGE_BODY_BYTES) this.reclaimer.burst();
      if (refused) return;
      // Nothing in admit should throw; if it does, we stay up.
      this.admit(Buffer.concat(chunks, size), scope, res).catch((e: unknown) => this.internalError(res, e));
    });
    req.on("error", () => res.destroy());
  }

  private async admit(raw: Buffer, scope: Scope, res: import("node:http").ServerResponse): Promise<void> {
    const stop = this.latency.startTimer();
    const d = raw.length > OFFLOAD_BYTES ? await this.offload.decide(raw, scope) : decide(raw.toString("utf8"), this.o.admission, scope);
    if (d.kind === "refused") {
      stop();
      return this.fail(res, d.status, d.message);
    }
    const { outcome } = d;
    switch (outcome.kind) {
      case "mutated":
        this.mutated.inc();
        this.o.logger.debug({ injected: outcome.injected }, "pod mutated");
        break;
      case "skipped":
        this.skipped.inc({ reason: outcome.reason });
        break;
      case "errored":
        this.errors.inc({ kind: "errored" });
        this.o.logger.warn({ error: outcome.error }, "pod allowed unpatched");
        break;
    }
    if (d.unpatched) {
      this.unpatched.inc({ reason: d.unpatched.why.reason });
      if (d.unpatched.pod) this.o.onUnpatched?.(d.unpatched.pod, d.unpatched.why);
    }
    this.requests.inc({ code: 200 });
    this.send(res, 200, d.answer);
    stop();
  }
}
