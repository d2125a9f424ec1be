// A stand-in for kube-apiserver, over real HTTPS, answering the few endpoints the webhook
// uses with Kubernetes JSON: Secrets (get, create, replace with resourceVersion conflicts),
// MutatingWebhookConfigurations (get, JSON patch, and a watch by name: a chunked stream of
// {"type","object"} lines, as the API server sends them), and Events (create, with the
// fields the API server requires of a core/v1 Event).
// No API server can be installed here; the client talking to this is the official one.
import * as fs from "node:fs";
import * as https from "node:https";
import * as os from "node:os";
import * as path from "node:path";
import jsonpatch, { type Operation } from "fast-json-patch";
import { issueBundle } from "../../src/webhook/certs";

type Obj = { metadata: { name: string; namespace?: string; resourceVersion?: string }; [k: string]: unknown };

export class FakeKube {
  readonly secrets = new Map<string, Obj>();
  readonly webhookConfigs = new Map<string, Obj>();
  readonly events: Obj[] = [];
  readonly log: string[] = [];
  private rv = 100;
  private server?: https.Server;
  private readonly watchers: { name: string; res: import("node:http").ServerResponse }[] = [];

  private emit(type: "ADDED" | "MODIFIED" | "DELETED", obj: Obj): void {
    for (const w of this.watchers) if (w.name === obj.metadata.name) w.res.write(`${JSON.stringify({ type, object: obj })}\n`);
  }
  kubeconfig = "";

  private status(res: import("node:http").ServerResponse, code: number, reason: string, message: string): void {
    res.writeHead(code, { "content-type": "application/json" });
    res.end(JSON.stringify({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code }));
  }

  private ok(res: import("node:http").ServerResponse, code: number, obj: unknown): void {
    res.writeHead(code, { "content-type": "application/json" });
    res.end(JSON.stringify(obj));
  }

  private handle(req: import("node:http").IncomingMessage, body: string, res: import("node:http").ServerResponse): void {
    this.log.push(`${req.method} ${req.url}`);
    if (req.headers.authorization !== "Bearer test-token") return this.status(res, 401, "Unauthorized", "Unauthorized");
    const url = (req.url ?? "").split("?")[0];
    let m = /^\/api\/v1\/namespaces\/([^/]+)\/secrets(?:\/([^/]+))?$/.exec(url);
    if (m) {
      const [, ns, name] = m;
      const key = `${ns}/${name}`;
      if (req.method === "GET" && name) {
        const s = this.secrets.get(key);
        return s ? this.ok(res, 200, s) : this.status(res, 404, "NotFound", `secrets "${name}" not found`);
      }
      const obj = JSON.parse(body) as Obj;
      if (req.method === "POST" && !name) {
        const k = `${ns}/${obj.metadata.name}`;
        if (this.secrets.has(k)) return this.status(res, 409, "AlreadyExists", `secrets "${obj.metadata.name}" already exists`);
        obj.metadata = { ...obj.metadata, namespace: ns, resourceVersion: String(++this.rv) };
        this.secrets.set(k, obj);
        return this.ok(res, 201, obj);
      }
      if (req.method === "PUT" && name) {
        const cur = this.secrets.get(key);
        if (!cur) return this.status(res, 404, "NotFound", `secrets "${name}" not found`);
        if (obj.metadata.resourceVersion !== cur.metadata.resourceVersion)
          return this.status(res, 409, "Conflict", `Operation cannot be fulfilled on secrets "${name}": the object has been modified`);
        obj.metadata = { ...obj.metadata, namespace: ns, resourceVersion: String(++this.rv) };
        this.secrets.set(key, obj);
        return this.ok(res, 200, obj);
      }
    }
    m = /^\/api\/v1\/namespaces\/([^/]+)\/events$/.exec(url);
    if (m && req.method === "POST") {
      const ev = JSON.parse(body) as Obj & { involvedObject?: { namespace?: string; name?: string }; reason?: string };
      // As the API server validates a core/v1 Event: its namespace, its object's, a name or generateName.
      if (ev.metadata.namespace && ev.metadata.namespace !== m[1])
        return this.status(res, 400, "BadRequest", "the namespace of the object does not match the namespace on the request");
      if (ev.involvedObject?.namespace !== m[1])
        return this.status(res, 422, "Invalid", "involvedObject.namespace: does not match event.namespace");
      if (!ev.involvedObject?.name || !ev.reason) return this.status(res, 422, "Invalid", "involvedObject.name and reason are required");
      const name = ev.metadata.name ?? `${(ev.metadata as { generateName?: string }).generateName ?? ""}${(++this.rv).toString(36)}`;
      ev.metadata = { ...ev.metadata, name, namespace: m[1], resourceVersion: String(++this.rv) };
      this.events.push(ev);
      return this.ok(res, 201, ev);
    }
    if (url === "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations" && req.method === "GET") {
      const q = new URL(req.url ?? "", "https://x").searchParams;
      const name = /^metadata\.name=(.+)$/.exec(q.get("fieldSelector") ?? "")?.[1];
      if (q.get("watch") !== "true" || !name) return this.status(res, 400, "BadRequest", "only a watch by metadata.name is served here");
      res.writeHead(200, { "content-type": "application/json", "transfer-encoding": "chunked" });
      const w = { name, res };
      this.watchers.push(w);
      res.on("close", () => this.watchers.splice(this.watchers.indexOf(w), 1));
      const cur = this.webhookConfigs.get(name);
      if (cur) res.write(`${JSON.stringify({ type: "ADDED", object: cur })}\n`);
      return;
    }
    m = /^\/apis\/admissionregistration\.k8s\.io\/v1\/mutatingwebhookconfigurations\/([^/]+)$/.exec(url);
    if (m) {
      const cur = this.webhookConfigs.get(m[1]);
      if (!cur) return this.status(res, 404, "NotFound", `mutatingwebhookconfigurations "${m[1]}" not found`);
      if (req.method === "GET") return this.ok(res, 200, cur);
      if (req.method === "PATCH") {
        if (req.headers["content-type"] !== "application/json-patch+json")
          return this.status(res, 415, "UnsupportedMediaType", "json patch only");
        const next = jsonpatch.applyPatch(structuredClone(cur), JSON.parse(body) as Operation[], true, false).newDocument;
        next.metadata.resourceVersion = String(++this.rv);
        this.webhookConfigs.set(m[1], next);
        this.emit("MODIFIED", next);
        return this.ok(res, 200, next);
      }
    }
    this.status(res, 404, "NotFound", `no route for ${req.method} ${url}`);
  }

  async start(): Promise<void> {
    const tls = await issueBundle({ dnsNames: ["localhost"], certValidityMs: 86_400_000, caValidityMs: 86_400_000 });
    this.server = https.createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => this.handle(req, body, res));
    });
    await new Promise<void>((r) => this.server?.listen(0, "localhost", r));
    const { port } = this.server.address() as import("node:net").AddressInfo;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fake-kube-"));
    this.kubeconfig = path.join(dir, "kubeconfig");
    fs.writeFileSync(
      this.kubeconfig,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [
          {
            name: "fake",
            cluster: { server: `https://localhost:${port}`, "certificate-authority-data": Buffer.from(tls.caCert).toString("base64") },
          },
        ],
        users: [{ name: "webhook", user: { token: "test-token" } }],
        contexts: [{ name: "fake", context: { cluster: "fake", user: "webhook" } }],
        "current-context": "fake",
      }),
    );
  }

  async stop(): Promise<void> {
    for (const w of this.watchers.splice(0)) w.res.end();
    await new Promise<void>((r) => {
      this.server?.close(() => r());
      this.server?.closeAllConnections();
    });
    // The kubeconfig (and its token) leaves with the server.
    if (this.kubeconfig) fs.rmSync(path.dirname(this.kubeconfig), { recursive: true, force: true });
  }

  /** The MutatingWebhookConfiguration as the deploy kit renders it, without a caBundle. */
  addWebhookConfig(name: string): void {
    const hook = (n: string, p: string) => ({
      name: n,
      admissionReviewVersions: ["v1"],
      sideEffects: "None",
      failurePolicy: "Ignore",
      clientConfig: { service: { name: "procview-webhook", namespace: "procview-system", path: p, port: 443 } },
      rules: [{ apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["pods"] }],
    });
    const obj: Obj = {
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "MutatingWebhookConfiguration",
      metadata: { name, resourceVersion: String(++this.rv) },
      webhooks: [hook("namespace.procview.io", "/mutate"), hook("pod.procview.io", "/mutate-pod")],
    };
    this.webhookConfigs.set(name, obj);
    this.emit("ADDED", obj);
  }

  /** `kubectl delete mutatingwebhookconfiguration NAME`. */
  deleteWebhookConfig(name: string): void {
    const cur = this.webhookConfigs.get(name);
    if (!cur) return;
    this.webhookConfigs.delete(name);
    this.emit("DELETED", cur);
  }
}
