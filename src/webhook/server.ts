// HTTPS for the MutatingAdmissionWebhook: POST /mutate (pods in opted-in namespaces),
// POST /mutate-pod (pods that opt in one by one), /healthz, /readyz, /metrics.
// Bad requests get a 4xx with the reason; a pod is never denied for our own fault.
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import * as prom from "prom-client";
import { type AdmissionConfig, review, type Scope } from "./admission";

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
  private ready = false;

  constructor(private readonly o: WebhookServerOptions) {
    this.server = https.createServer({ cert: o.tls.cert, key: o.tls.key, minVersion: "TLSv1.2" }, (req, res) => this.handle(req, res));
    this.server.keepAliveTimeout = 65_000;
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
    const url = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && url === "/healthz") return this.send(res, 200, "ok\n", "text/plain");
    if (req.method === "GET" && url === "/readyz")
      return this.send(res, this.ready ? 200 : 503, this.ready ? "ok\n" : "not ready\n", "text/plain");
    if (req.method === "GET" && url === "/metrics") {
      void this.registry.metrics().then((m) => this.send(res, 200, m, this.registry.contentType));
      return;
    }
    const scope = ROUTES[url];
    if (!scope) return this.fail(res, 404, `no such path: ${url}`);
    if (req.method !== "POST") return this.fail(res, 405, `${req.method} is not allowed on ${url}; POST an AdmissionReview`);
    const type = req.headers["content-type"] ?? "";
    if (!type.startsWith("application/json"))
      return this.fail(res, 415, `content-type must be application/json, not ${JSON.stringify(type)}`);
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
      if (!refused) this.admit(Buffer.concat(chunks, size), scope, res);
    });
    req.on("error", () => res.destroy());
  }

  private admit(raw: Buffer, scope: Scope, res: import("node:http").ServerResponse): void {
    const stop = this.latency.startTimer();
    let body: unknown;
    try {
      body = JSON.parse(raw.toString("utf8"));
    } catch (e) {
      stop();
      return this.fail(res, 400, `malformed JSON: ${e instanceof Error ? e.message : String(e)}`);
    }
    let outcome: ReturnType<typeof review>;
    try {
      outcome = review(body, this.o.admission, scope);
    } catch (e) {
      // Our bug: the pod goes through unpatched, and we say so.
      outcome = { kind: "errored", review: allowUnpatched(body), error: e instanceof Error ? e.message : String(e) };
    }
    switch (outcome.kind) {
      case "rejected":
        stop();
        return this.fail(res, outcome.status, outcome.message);
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
    this.requests.inc({ code: 200 });
    this.send(res, 200, JSON.stringify(outcome.review));
    stop();
  }
}

/** An allow answer for a review whose uid we can still find; used when our own code failed. */
function allowUnpatched(body: unknown): object {
  const b = body as { apiVersion?: string; request?: { uid?: string } };
  return {
    apiVersion: b.apiVersion ?? "admission.k8s.io/v1",
    kind: "AdmissionReview",
    response: { uid: b.request?.uid ?? "", allowed: true, warnings: ["procview: internal error; the pod was not injected"] },
  };
}
