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
import { assertValidPod, podSecurityVolumeViolations } from "../helpers/pods";
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

/** One admission over real HTTPS, as the API server sends it. */
function mutate(port: number, ca: string, review: Json): Promise<string> {
  return new Promise<string>((resolve, reject) => {
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
    req.end(JSON.stringify(review));
  });
}

describe("a pod admitted without procview's files", () => {
  it("gets a metric and one Kubernetes Event about its controller, however many replicas; --no-events sends none", async () => {
    const { port, proc } = await startWebhook();
    const ca = caBundles()[0];
    const before = kube.events.length;
    // A ReplicaSet's pods with too many containers to patch: 12 replicas, 300 containers each.
    const replica = (i: number) => {
      const pod = deploymentPod({ namespace: "shop" });
      const meta = pod.metadata as Json;
      meta.generateName = "web-7d4b9c-";
      delete meta.name;
      meta.ownerReferences = [
        { apiVersion: "apps/v1", kind: "ReplicaSet", name: "web-7d4b9c", uid: "3f6d2c1e-0b7a-4d59-8e21-6c9a0f4b7d13", controller: true },
      ];
      const spec = pod.spec as { containers: Json[] };
      spec.containers = Array.from({ length: 300 }, (_, j) => ({ name: `c${i}-${j}`, image: "busybox" }));
      return pod;
    };
    for (let i = 0; i < 12; i++) {
      const r = JSON.parse(await mutate(port, ca, admissionReview(replica(i)))) as {
        response: { allowed: boolean; patch?: string; warnings?: string[] };
      };
      assert.equal(r.response.allowed, true);
      assert.equal(r.response.patch, undefined);
      assert.match(r.response.warnings?.[0] ?? "", /300 containers, more than 256; not injected/);
    }
    for (const end = Date.now() + 5000; kube.events.length === before && Date.now() < end;) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 300)); // time for any second Event to arrive
    const events = kube.events.slice(before) as unknown as (Json & { involvedObject: Json })[];
    assert.equal(events.length, 1, JSON.stringify(events));
    const [e] = events;
    assert.deepEqual(e.involvedObject, {
      apiVersion: "apps/v1",
      kind: "ReplicaSet",
      name: "web-7d4b9c",
      uid: "3f6d2c1e-0b7a-4d59-8e21-6c9a0f4b7d13",
      namespace: "shop",
    });
    assert.deepEqual([e.type, e.reason, (e.metadata as Json).namespace], ["Warning", "ProcviewNotInjected", "shop"]);
    assert.match(
      String(e.message),
      /^pod web-7d4b9c- admitted without procview's files: the pod has 300 containers, more than 256; not injected$/,
    );
    const metrics = await new Promise<string>((resolve, reject) => {
      https
        .get({ host: "127.0.0.1", port, path: "/metrics", ca, servername: DNS_NAMES[0], agent: false }, (res) => {
          let t = "";
          res.on("data", (d) => (t += d));
          res.on("end", () => resolve(t));
        })
        .on("error", reject);
    });
    assert.match(metrics, /^procview_webhook_unpatched_total\{reason="too-large"\} 12$/m);
    proc.kill("SIGTERM");
    assert.equal(await new Promise((r) => proc.once("exit", r)), 0);

    const quiet = await startWebhook(["--no-events"]);
    const count = kube.events.length;
    await mutate(quiet.port, ca, admissionReview(replica(99)));
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(kube.events.length, count);
    quiet.proc.kill("SIGTERM");
    assert.equal(await new Promise((r) => quiet.proc.once("exit", r)), 0);
  });
});

describe("the webhook's command line", () => {
  it("--files and --mountpoint: a pod gets exactly those files, from that mountpoint", async () => {
    const { port, proc } = await startWebhook(["--files", "/proc/meminfo, /proc/slabinfo", "--mountpoint", "/srv/pv"]);
    const ca = caBundles()[0];
    const pod = deploymentPod();
    const answer = await mutate(port, ca, admissionReview(pod));
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
    // What a namespace enforcing baseline would refuse: why hostPath mode stays out of them.
    assert.equal(podSecurityVolumeViolations(patched as Json, "baseline").length, 3);
    proc.kill("SIGTERM");
    assert.equal(await new Promise((r) => proc.once("exit", r)), 0, "SIGTERM: exit 0");
  });

  it("--volumes csi: one csi volume of csi.procview.io, each file by subPath; Pod Security baseline and restricted admit it", async () => {
    const { port, proc } = await startWebhook(["--volumes", "csi"]);
    const pod = deploymentPod({ namespace: "restricted-ns" });
    const review = JSON.parse(await mutate(port, caBundles()[0], admissionReview(pod))) as { response: { patch: string } };
    const ops = JSON.parse(Buffer.from(review.response.patch, "base64").toString());
    const patched = jsonpatch.applyPatch(structuredClone(pod), ops, true, false).newDocument as Json;
    assertValidPod(patched);
    const spec = patched.spec as {
      containers: {
        volumeMounts: { name: string; mountPath: string; subPath?: string; readOnly?: boolean; mountPropagation?: string }[];
      }[];
      volumes: Json[];
    };
    assert.deepEqual(
      spec.volumes.filter((v) => v.name === "procview"),
      [{ name: "procview", csi: { driver: "csi.procview.io", readOnly: true } }],
    );
    const ours = spec.containers[0].volumeMounts.filter((m) => m.name === "procview");
    assert.deepEqual(
      ours.map((m) => [m.mountPath, m.subPath ?? "", m.readOnly, m.mountPropagation ?? ""]),
      [
        ["/proc/meminfo", "proc/meminfo", true, ""],
        ["/proc/cpuinfo", "proc/cpuinfo", true, ""],
        ["/proc/stat", "proc/stat", true, ""],
        ["/proc/uptime", "proc/uptime", true, ""],
        ["/proc/loadavg", "proc/loadavg", true, ""],
        ["/proc/diskstats", "proc/diskstats", true, ""],
        ["/proc/swaps", "proc/swaps", true, ""],
        ["/sys/devices/system/cpu/online", "sys/devices/system/cpu/online", true, ""],
        ["/run/procview", "", true, "HostToContainer"],
      ],
    );
    assert.deepEqual(podSecurityVolumeViolations(patched, "baseline"), []);
    assert.deepEqual(podSecurityVolumeViolations(patched, "restricted"), []);
    proc.kill("SIGTERM");
    assert.equal(await new Promise((r) => proc.once("exit", r)), 0);
  });

  it("--volumes other than hostPath or csi: one line, exit 2", () => {
    const r = spawnSync(process.execPath, [BIN, "webhook", "--volumes", "emptyDir"], { encoding: "utf8", timeout: 20_000 });
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /--volumes: "emptyDir" is not hostPath or csi/);
  });

  it("--files naming a file procview cannot serve: one line, exit 2", () => {
    const r = spawnSync(process.execPath, [BIN, "webhook", "--files", "/proc/meminfo,/etc/shadow"], { encoding: "utf8", timeout: 20_000 });
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /cannot inject \/etc\/shadow/);
  });
});
