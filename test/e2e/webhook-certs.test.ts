// Certificates with no manual step: the real `procview webhook` process, the official
// Kubernetes client, and a stand-in API server over HTTPS. The caBundle the API server would
// use must verify the certificate the webhook serves, before and after rotation.
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import * as https from "node:https";
import { after, before, describe, it } from "node:test";
import jsonpatch from "fast-json-patch";
import { admissionReview, deploymentPod, type Json } from "../helpers/admission";
import { BIN } from "../helpers/daemons";
import { FakeKube } from "../helpers/fake-kube";
import { DNS_NAMES } from "../helpers/webhook";

let kube: FakeKube;
const children: ChildProcess[] = [];

before(async () => {
  kube = new FakeKube();
  await kube.start();
  kube.addWebhookConfig("procview");
});
after(async () => {
  for (const c of children) c.kill("SIGTERM");
  await kube.stop();
});

/** Starts `procview webhook` against the fake API; resolves with its port. */
function startWebhook(extra: string[] = []): Promise<{ port: number; proc: ChildProcess }> {
  const proc = spawn(
    process.execPath,
    [
      BIN,
      "webhook",
      "--kubeconfig",
      kube.kubeconfig,
      "--namespace",
      "procview-system",
      "--listen",
      "127.0.0.1:0",
      "--log-level",
      "warn",
      ...extra,
    ],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  children.push(proc);
  let out = "";
  proc.stderr?.on("data", (d) => (out += d));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`webhook did not start: ${out}`)), 20000);
    proc.stdout?.on("data", (d) => {
      const m = /serving on [^:]+:(\d+)/.exec(String(d));
      if (m) {
        clearTimeout(t);
        resolve({ port: Number(m[1]), proc });
      }
    });
    proc.once("exit", (code) => reject(new Error(`webhook exited ${code}: ${out}`)));
  });
}

function caBundles(): string[] {
  const cfg = kube.webhookConfigs.get("procview") as unknown as { webhooks: { clientConfig: { caBundle?: string } }[] };
  return cfg.webhooks.map((w) => Buffer.from(w.clientConfig.caBundle ?? "", "base64").toString());
}

/** A request as kube-apiserver makes it: trusting only the caBundle, checking the Service name. */
function peerCert(port: number, ca: string, agent?: https.Agent): Promise<{ fingerprint: string; status: number }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: "127.0.0.1", port, path: "/healthz", ca, servername: DNS_NAMES[0], agent: agent ?? false }, (res) => {
      const cert = (res.socket as import("node:tls").TLSSocket).getPeerCertificate();
      res.resume();
      res.on("end", () => resolve({ fingerprint: cert.fingerprint256, status: res.statusCode ?? 0 }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("managed certificates", () => {
  it("two replicas starting together: one CA in the Secret, in both caBundles, trusted by both servers", async () => {
    const [a, b] = await Promise.all([startWebhook(), startWebhook()]);
    const secret = kube.secrets.get("procview-system/procview-webhook-certs") as unknown as { data: Record<string, string> };
    assert.ok(secret, "the Secret was created");
    for (const k of ["ca.crt", "ca.key", "tls.crt", "tls.key", "ca-bundle.crt"]) assert.ok(secret.data[k], k);
    const bundles = caBundles();
    assert.equal(bundles.length, 2);
    assert.equal(bundles[0], bundles[1]);
    assert.equal(bundles[0], Buffer.from(secret.data["ca-bundle.crt"], "base64").toString());
    const [ca, cb] = await Promise.all([peerCert(a.port, bundles[0]), peerCert(b.port, bundles[0])]);
    assert.equal(ca.status, 200);
    assert.equal(ca.fingerprint, cb.fingerprint, "both replicas serve the certificate in the Secret");
    a.proc.kill("SIGTERM");
    b.proc.kill("SIGTERM");
  });

  it("rotates the serving certificate before it expires, without a restart or a failed request", async () => {
    kube.secrets.clear();
    const { port } = await startWebhook(["--cert-validity", "6s", "--cert-check-interval", "1s"]);
    const ca = caBundles()[0];
    const keepAlive = new https.Agent({ keepAlive: true, ca, servername: DNS_NAMES[0] });
    const seen = new Set<string>();
    let requests = 0;
    const until = Date.now() + 9000;
    while (Date.now() < until) {
      // New connections see the newest certificate; the kept-alive one keeps working.
      const [fresh, kept] = await Promise.all([peerCert(port, ca), peerCert(port, ca, keepAlive)]);
      assert.equal(fresh.status, 200);
      assert.equal(kept.status, 200);
      seen.add(fresh.fingerprint);
      requests += 2;
      await new Promise((r) => setTimeout(r, 100));
    }
    keepAlive.destroy();
    assert.ok(seen.size >= 2, `served ${seen.size} certificate(s) over 9 s with a 6 s validity`);
    assert.ok(requests > 100);
    assert.equal(caBundles()[0], ca, "a serving-certificate rotation keeps the caBundle");
  });

  it("the configuration deleted and applied again (no caBundle in the kit): the CA is back within 5 s", async () => {
    // An hour between certificate checks: only the watch can bring the CA back this fast.
    const { proc } = await startWebhook(["--cert-check-interval", "1h"]);
    const ca = caBundles()[0];
    assert.match(ca, /BEGIN CERTIFICATE/);
    for (let round = 0; round < 2; round++) {
      kube.deleteWebhookConfig("procview");
      await new Promise((r) => setTimeout(r, 200));
      kube.addWebhookConfig("procview");
      assert.deepEqual(caBundles(), ["", ""], "the kit ships no caBundle");
      const started = Date.now();
      while (caBundles().some((b) => b !== ca) && Date.now() - started < 5000) await new Promise((r) => setTimeout(r, 20));
      const ms = Date.now() - started;
      assert.deepEqual(caBundles(), [ca, ca], `caBundle after ${ms} ms`);
      console.log(`# caBundle written back ${ms} ms after the configuration was re-created (round ${round + 1})`);
    }
    proc.kill("SIGTERM");
    assert.equal(await new Promise((r) => proc.once("exit", r)), 0);
  });
});

describe("the webhook's command line", () => {
  it("--files and --mountpoint: a pod gets exactly those files, from that mountpoint", async () => {
    const { port, proc } = await startWebhook(["--files", "/proc/meminfo, /proc/slabinfo", "--mountpoint", "/srv/pv"]);
    const ca = caBundles()[0];
    const pod = deploymentPod();
    const body = JSON.stringify(admissionReview(pod));
    const answer = await new Promise<string>((resolve, reject) => {
      const req = https.request(
        {
          host: "127.0.0.1",
          port,
          method: "POST",
          path: "/mutate",
          ca,
          servername: DNS_NAMES[0],
          agent: false,
          headers: { "content-type": "application/json" },
        },
        (res) => {
          let text = "";
          res.on("data", (d) => (text += d));
          res.on("end", () => resolve(text));
        },
      );
      req.on("error", reject);
      req.end(body);
    });
    const review = JSON.parse(answer) as { response: { patch: string } };
    const ops = JSON.parse(Buffer.from(review.response.patch, "base64").toString());
    const patched = jsonpatch.applyPatch(structuredClone(pod), ops, true, false).newDocument as Json;
    const spec = patched.spec as {
      containers: { volumeMounts: { mountPath: string; readOnly?: boolean }[] }[];
      volumes: { hostPath?: { path: string } }[];
    };
    const mounts = spec.containers[0].volumeMounts.map((m) => m.mountPath);
    assert.deepEqual(mounts.slice(-3), ["/proc/meminfo", "/proc/slabinfo", "/run/procview"]);
    assert.equal(mounts.filter((m) => m.startsWith("/proc/") || m.startsWith("/sys/")).length, 2, mounts.join(" "));
    const hostPaths = spec.volumes.map((v) => v.hostPath?.path).filter(Boolean);
    assert.deepEqual(hostPaths, ["/srv/pv/proc/meminfo", "/srv/pv/proc/slabinfo", "/srv/pv"]);
    proc.kill("SIGTERM");
    assert.equal(await new Promise((r) => proc.once("exit", r)), 0, "SIGTERM: exit 0");
  });

  it("--files naming a file procview cannot serve: one line, exit 2", () => {
    const r = spawnSync(process.execPath, [BIN, "webhook", "--files", "/proc/meminfo,/etc/shadow"], { encoding: "utf8", timeout: 20_000 });
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /cannot inject \/etc\/shadow/);
  });
});
