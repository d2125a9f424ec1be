// The admission webhook over real HTTPS, with AdmissionReview requests shaped as
// kube-apiserver sends them; every returned patch is applied with an RFC 6902 library and
// the resulting Pod is validated against the Kubernetes schema.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import jsonpatch from "fast-json-patch";
import { admissionReview, deploymentPod, type Json } from "../helpers/admission";
import { assertValidPod } from "../helpers/pods";
import { type Client, startWebhook } from "../helpers/webhook";
import type { WebhookServer } from "../../src/webhook/server";

// What the README promises an injected pod: these files, read-only, in this order...
const FILES = [
  "/proc/meminfo",
  "/proc/cpuinfo",
  "/proc/stat",
  "/proc/uptime",
  "/proc/loadavg",
  "/proc/diskstats",
  "/proc/swaps",
  "/sys/devices/system/cpu/online",
];
// ...and the slave copy of the node's mountpoint that lets a restarted daemon re-bind them.
const INJECTED = [...FILES, "/run/procview"];

let server: WebhookServer;
let client: Client;

before(async () => {
  ({ server, client } = await startWebhook());
});
after(async () => {
  client.close();
  await server.close();
});

interface Reviewed {
  response: { uid: string; allowed: boolean; patchType?: string; patch?: string; warnings?: string[] };
  apiVersion: string;
}

async function admit(pod: Json, o: Parameters<typeof admissionReview>[1] = {}, path = "/mutate") {
  const req = admissionReview(pod, o);
  const res = await client.post(path, req);
  assert.equal(res.status, 200, res.body);
  const review = res.json() as unknown as Reviewed;
  assert.equal(review.response.uid, (req.request as Json).uid);
  assert.equal(review.response.allowed, true);
  const ops = review.response.patch ? JSON.parse(Buffer.from(review.response.patch, "base64").toString()) : [];
  const patched = jsonpatch.applyPatch(structuredClone(pod), ops, true, false).newDocument as Json;
  return { review, ops, patched };
}

type Container = { name: string; volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[] };
const containers = (pod: Json, field = "containers") => ((pod.spec as Json)[field] ?? []) as Container[];
const mountPaths = (c: Container) => (c.volumeMounts ?? []).map((m) => m.mountPath);

describe("admission over HTTPS", () => {
  it("a Deployment's pod (generateName, no name) gets read-only mounts of every file and valid hostPath volumes", async () => {
    const pod = deploymentPod();
    (pod.spec as Json).someFutureField = { keep: "me" };
    const { review, patched } = await admit(pod);
    assert.equal(review.response.patchType, "JSONPatch");
    assertValidPod(patched);
    const web = containers(patched)[0];
    for (const f of FILES)
      assert.ok(
        web.volumeMounts?.some((m) => m.mountPath === f && m.readOnly === true),
        f,
      );
    assert.ok(mountPaths(web).includes("/var/run/secrets/kubernetes.io/serviceaccount"), "existing mounts stay");
    const volumes = (patched.spec as Json).volumes as { name: string; hostPath?: { path: string; type: string } }[];
    const meminfo = volumes.find((v) => v.hostPath?.path === "/var/lib/procview/proc/meminfo");
    assert.equal(meminfo?.hostPath?.type, "File");
    for (const f of FILES)
      assert.ok(
        volumes.some((v) => v.hostPath?.path === `/var/lib/procview${f}` && v.hostPath.type === "File"),
        `a File hostPath volume for ${f}`,
      );
    assert.deepEqual(mountPaths(web).slice(-INJECTED.length), INJECTED, "every file once, then /run/procview");
    assert.equal(volumes.length, 1 + INJECTED.length);
    assert.deepEqual(volumes.find((v) => v.name === "procview-live")?.hostPath, { path: "/var/lib/procview", type: "Directory" });
    assert.deepEqual((patched.spec as Json).someFutureField, { keep: "me" }, "unknown fields survive");
    assert.deepEqual((patched.metadata as Json).ownerReferences, (pod.metadata as Json).ownerReferences);
    assert.equal(((patched.metadata as Json).annotations as Json)["procview.io/injected"], INJECTED.join(","));
  });

  it("a pod with no volumes and no volumeMounts arrays", async () => {
    const pod = deploymentPod();
    delete (pod.spec as Json).volumes;
    delete containers(pod)[0].volumeMounts;
    const { patched } = await admit(pod);
    assertValidPod(patched);
    assert.equal(containers(patched)[0].volumeMounts?.length, INJECTED.length);
  });

  it("init containers get the mounts too; ephemeral containers do not", async () => {
    const pod = deploymentPod();
    (pod.spec as Json).initContainers = [{ name: "migrate", image: "busybox", command: ["true"] }];
    const { patched } = await admit(pod);
    assertValidPod(patched);
    assert.equal(containers(patched, "initContainers")[0].volumeMounts?.length, INJECTED.length);
  });

  it("a container that already mounts /proc/meminfo keeps its own; no duplicate mountPath", async () => {
    const pod = deploymentPod();
    ((pod.spec as Json).volumes as Json[]).push({ name: "fake-meminfo", configMap: { name: "meminfo" } });
    containers(pod)[0].volumeMounts?.push({ name: "fake-meminfo", mountPath: "/proc/meminfo" });
    const { patched } = await admit(pod);
    assertValidPod(patched);
    const web = containers(patched)[0];
    assert.equal(web.volumeMounts?.find((m) => m.mountPath === "/proc/meminfo")?.name, "fake-meminfo");
    assert.equal(mountPaths(web).length, 2 + INJECTED.length - 1);
  });

  it("existing annotations stay, ours is added with its '/' escaped", async () => {
    const pod = deploymentPod({ annotations: { "other.io/owner": "team-a", "kubectl.kubernetes.io/restartedAt": "2026-11-21T10:00:00Z" } });
    const { ops, patched } = await admit(pod);
    assert.ok(ops.some((o: { path: string }) => o.path === "/metadata/annotations/procview.io~1injected"));
    const annotations = (patched.metadata as Json).annotations as Json;
    assert.equal(annotations["other.io/owner"], "team-a");
    assert.equal(annotations["kubectl.kubernetes.io/restartedAt"], "2026-11-21T10:00:00Z");
  });

  it("a second pass (reinvocation) changes nothing; a sidecar added by another webhook gets only mounts", async () => {
    const first = await admit(deploymentPod());
    const again = await admit(first.patched);
    assert.equal(again.review.response.patch, undefined);
    const withSidecar = structuredClone(first.patched);
    containers(withSidecar).push({ name: "proxy", image: "envoy:1.30" } as Container);
    const third = await admit(withSidecar);
    assertValidPod(third.patched);
    assert.ok(
      third.ops.every((o: { path: string }) => o.path.startsWith("/spec/containers/1/")),
      JSON.stringify(third.ops),
    );
    assert.equal(containers(third.patched)[1].volumeMounts?.length, INJECTED.length);
  });

  it("a dry run gets the same patch (the webhook has no side effects)", async () => {
    const dry = await admit(deploymentPod(), { dryRun: true });
    const real = await admit(deploymentPod());
    assert.deepEqual(mountPaths(containers(dry.patched)[0]).slice(-INJECTED.length), INJECTED);
    assert.deepEqual(dry.ops, real.ops);
  });

  it("admission.k8s.io/v1beta1 is answered in v1beta1", async () => {
    const { review, patched } = await admit(deploymentPod(), { apiVersion: "admission.k8s.io/v1beta1" });
    assert.equal(review.apiVersion, "admission.k8s.io/v1beta1");
    assertValidPod(patched);
  });

  it("opt-out, protected namespaces, updates, and the per-pod entry", async () => {
    assert.equal((await admit(deploymentPod({ annotations: { "procview.io/inject": "false" } }))).ops.length, 0);
    for (const ns of ["kube-system", "kube-public", "procview-system"])
      assert.equal((await admit(deploymentPod({ namespace: ns }))).ops.length, 0, ns);
    assert.equal((await admit(deploymentPod(), { operation: "UPDATE" })).ops.length, 0);
    assert.equal((await admit(deploymentPod(), {}, "/mutate-pod")).ops.length, 0, "not opted in");
    // The label the per-pod entry's objectSelector matches, and the older annotation.
    for (const optIn of [{ labels: { "procview.io/inject": "true" } }, { annotations: { "procview.io/inject": "true" } }]) {
      const optedIn = await admit(deploymentPod(optIn), {}, "/mutate-pod");
      assert.deepEqual(mountPaths(containers(optedIn.patched)[0]).slice(-INJECTED.length), INJECTED, JSON.stringify(optIn));
      assertValidPod(optedIn.patched);
    }
    assert.equal((await admit(deploymentPod({ labels: { "procview.io/inject": "false" } }))).ops.length, 0, "label opt-out");
  });

  it("metrics count what happened", async () => {
    const metric = async (line: RegExp) => {
      const res = await client.request("GET", "/metrics");
      assert.equal(res.status, 200);
      return Number(line.exec(res.body)?.[1] ?? 0);
    };
    const mutated = /^procview_webhook_mutated_total (\d+)$/m;
    const optedOut = /^procview_webhook_skipped_total\{reason="opted-out"\} (\d+)$/m;
    const [mutatedBefore, optedOutBefore] = [await metric(mutated), await metric(optedOut)];
    await admit(deploymentPod());
    await admit(deploymentPod());
    await admit(deploymentPod({ annotations: { "procview.io/inject": "false" } }));
    assert.equal(await metric(mutated), mutatedBefore + 2, "two pods patched");
    assert.equal(await metric(optedOut), optedOutBefore + 1, "one pod opted out");
    const res = await client.request("GET", "/metrics");
    assert.match(res.body, /^procview_webhook_admission_duration_seconds_bucket/m);
    assert.equal((await client.request("GET", "/healthz")).status, 200);
    assert.equal((await client.request("GET", "/readyz")).status, 200);
  });
});

describe("bad input gets a 4xx with the reason, never a crash", () => {
  const cases: [string, () => Promise<{ status: number; body: string }>, number, RegExp][] = [
    ["malformed JSON", () => client.post("/mutate", '{"kind": "AdmissionReview",'), 400, /malformed JSON/],
    ["wrong kind", () => client.post("/mutate", { ...admissionReview(deploymentPod()), kind: "Pod" }), 400, /kind must be AdmissionReview/],
    [
      "wrong apiVersion",
      () => client.post("/mutate", { ...admissionReview(deploymentPod()), apiVersion: "admission.k8s.io/v2" }),
      400,
      /apiVersion must be/,
    ],
    [
      "missing uid",
      () => {
        const r = admissionReview(deploymentPod());
        delete (r.request as Json).uid;
        return client.post("/mutate", r);
      },
      400,
      /uid is missing/,
    ],
    [
      "a Deployment instead of a Pod",
      () => {
        const r = admissionReview(deploymentPod());
        Object.assign(r.request as Json, {
          kind: { group: "apps", version: "v1", kind: "Deployment" },
          resource: { group: "apps", version: "v1", resource: "deployments" },
        });
        return client.post("/mutate", r);
      },
      400,
      /only Pods/,
    ],
    ["an oversized body", () => client.post("/mutate", JSON.stringify({ pad: "x".repeat(4 * 1024 * 1024) })), 413, /larger than/],
    ["GET on /mutate", () => client.request("GET", "/mutate"), 405, /POST an AdmissionReview/],
    ["text/plain", () => client.request("POST", "/mutate", "{}", "text/plain"), 415, /application\/json/],
    ["an unknown path", () => client.request("POST", "/nope", "{}"), 404, /no such path/],
  ];
  for (const [name, send, status, message] of cases) {
    it(name, async () => {
      const r = await send();
      assert.equal(r.status, status, r.body);
      assert.match(JSON.parse(r.body).error, message);
    });
  }

  it("a pod object that is not a pod is allowed unpatched with a warning", async () => {
    const r = admissionReview(deploymentPod());
    (r.request as Json).object = "not a pod";
    const res = await client.post("/mutate", r);
    assert.equal(res.status, 200);
    const review = res.json() as unknown as Reviewed;
    assert.equal(review.response.allowed, true);
    assert.equal(review.response.patch, undefined);
    assert.match(review.response.warnings?.[0] ?? "", /not injected/);
  });

  it("3000 random and mangled bodies: always an answer, 200 or 4xx, and the server stays up", async () => {
    const base = admissionReview(deploymentPod());
    const mangled = fc.record({
      kind: fc.oneof(fc.constant("AdmissionReview"), fc.string()),
      apiVersion: fc.oneof(fc.constant("admission.k8s.io/v1"), fc.constant("admission.k8s.io/v1beta1"), fc.string()),
      request: fc.oneof(
        fc.constant(base.request),
        fc.record({
          uid: fc.oneof(fc.uuid(), fc.constant("")),
          kind: fc.constant({ group: "", version: "v1", kind: "Pod" }),
          operation: fc.constant("CREATE"),
          object: fc.jsonValue(),
        }),
        fc.record({
          uid: fc.uuid(),
          kind: fc.constant({ group: "", version: "v1", kind: "Pod" }),
          operation: fc.constant("CREATE"),
          namespace: fc.string(),
          object: fc.record({
            metadata: fc.jsonValue(),
            spec: fc.record({
              containers: fc.array(fc.record({ name: fc.string(), volumeMounts: fc.jsonValue() })),
              volumes: fc.jsonValue(),
            }),
          }),
        }),
        fc.jsonValue(),
      ),
    });
    const bodies = fc.oneof(
      mangled.map((b) => JSON.stringify(b)),
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc.string(),
      fc.uint8Array({ maxLength: 512 }).map((a) => Buffer.from(a).toString("latin1")),
    );
    let answered = 0;
    await fc.assert(
      fc.asyncProperty(bodies, async (body) => {
        const r = await client.request("POST", "/mutate", body);
        answered++;
        assert.ok(r.status === 200 || (r.status >= 400 && r.status < 500), `status ${r.status} for ${body.slice(0, 200)}`);
        if (r.status === 200) {
          const review = r.json() as unknown as Reviewed;
          assert.equal(review.response.allowed, true);
          assert.equal(typeof review.response.uid, "string");
        }
      }),
      { numRuns: 3000 },
    );
    assert.equal(answered, 3000);
    assert.equal((await client.request("GET", "/healthz")).status, 200);
  });
});
