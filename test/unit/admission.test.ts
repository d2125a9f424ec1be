// The admission decision and the patch, without HTTP: every rule the README states for the
// webhook, with the exact AdmissionReview and JSON Patch kube-apiserver would get back.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import jsonpatch from "fast-json-patch";
import { review } from "../../src/webhook/admission";
import { injectMounts, mountTargets, pointerEscape, volumeKind } from "../../src/webhook/patch";

type Json = Record<string, unknown>;
const UID = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
const MEMINFO = {
  mountPath: "/proc/meminfo",
  volumeName: "procview-proc-meminfo",
  volume: { hostPath: { path: "/var/lib/procview/proc/meminfo", type: "File" } },
};
const CPU_DIR = {
  mountPath: "/sys/devices/system/cpu",
  volumeName: "procview-sys-devices-system-cpu",
  volume: { hostPath: { path: "/var/lib/procview/sys/devices/system/cpu", type: "Directory" } },
};
const LIVE = {
  mountPath: "/run/procview",
  volumeName: "procview-live",
  volume: { hostPath: { path: "/var/lib/procview", type: "Directory" } },
  propagation: "HostToContainer",
};
const targets = mountTargets(["/proc/meminfo", "/sys/devices/system/cpu"], "/var/lib/procview");
const cfg = { targets, protectedNamespaces: new Set(["kube-system", "procview-system"]) };

function envelope(request: Json | undefined, apiVersion = "admission.k8s.io/v1"): Json {
  return { kind: "AdmissionReview", apiVersion, ...(request === undefined ? {} : { request }) };
}
function podRequest(pod: unknown, extra: Json = {}): Json {
  return {
    uid: UID,
    kind: { group: "", version: "v1", kind: "Pod" },
    resource: { group: "", version: "v1", resource: "pods" },
    operation: "CREATE",
    namespace: "shop",
    object: pod,
    ...extra,
  };
}
const minimalPod = (): Json => ({ spec: { containers: [{ name: "app", image: "x" }] } });
const decode = (patch: string) => JSON.parse(Buffer.from(patch, "base64").toString("utf8"));
type Pod = Parameters<typeof injectMounts>[0];

describe("mount targets", () => {
  it("files under the mountpoint, the sysfs directory as a Directory, the live mount last", () => {
    assert.deepEqual(mountTargets(["/proc/meminfo", "/sys/devices/system/cpu"], "/var/lib/procview"), [MEMINFO, CPU_DIR, LIVE]);
    assert.deepEqual(mountTargets(["/proc/meminfo"], "/srv/pv/", false), [
      { ...MEMINFO, volume: { hostPath: { path: "/srv/pv/proc/meminfo", type: "File" } } },
    ]);
  });

  it("a volume name is cut to 63 characters (a Kubernetes name's limit)", () => {
    const [t] = mountTargets(["/sys/devices/system/cpu/a_very_long_sysfs_file_name_that_goes_on_and_on"], "/m", false);
    assert.equal(t.volumeName, "procview-sys-devices-system-cpu-a_very_long_sysfs_file_name_tha");
    assert.equal(t.volumeName.length, 63);
    assert.deepEqual(t.volume, {
      hostPath: { path: "/m/sys/devices/system/cpu/a_very_long_sysfs_file_name_that_goes_on_and_on", type: "File" },
    });
  });

  it("only what runc lets a container mount over", () => {
    for (const ok of [
      "/proc/cpuinfo",
      "/proc/diskstats",
      "/proc/stat",
      "/proc/swaps",
      "/proc/uptime",
      "/proc/loadavg",
      "/proc/slabinfo",
      "/sys/devices/system/cpu/online",
    ])
      assert.equal(mountTargets([ok], "/m", false)[0].mountPath, ok);
    for (const bad of [
      "/proc/self/meminfo",
      "/proc/meminfo2",
      "x/proc/meminfo",
      "/proc/partitions",
      "/sys/devices/system/cpu/cpu0/online",
      "/etc/passwd",
    ])
      assert.throws(
        () => mountTargets([bad], "/m"),
        new RegExp(
          `^Error: cannot inject ${bad.replace(/\//g, "\\/")}: only /proc/\\{cpuinfo,diskstats,meminfo,stat,swaps,uptime,loadavg,slabinfo\\} and /sys/devices/system/cpu\\[/FILE\\]$`,
        ),
      );
  });

  it("JSON Pointer escaping", () => {
    assert.equal(pointerEscape("procview.io/injected"), "procview.io~1injected");
    assert.equal(pointerEscape("a~b/c~/"), "a~0b~1c~0~1");
  });
});

describe("the envelope: a 400 with the reason", () => {
  const cases: [string, unknown, string][] = [
    ["an array", [], "the body must be a JSON object (an AdmissionReview)"],
    ["null", null, "the body must be a JSON object (an AdmissionReview)"],
    ["a string", "AdmissionReview", "the body must be a JSON object (an AdmissionReview)"],
    ["kind Pod", { ...envelope(podRequest(minimalPod())), kind: "Pod" }, 'kind must be AdmissionReview, not "Pod"'],
    ["no kind", { apiVersion: "admission.k8s.io/v1", request: podRequest(minimalPod()) }, "kind must be AdmissionReview, not nothing"],
    [
      "apiVersion v2",
      envelope(podRequest(minimalPod()), "admission.k8s.io/v2"),
      'apiVersion must be one of admission.k8s.io/v1, admission.k8s.io/v1beta1, not "admission.k8s.io/v2"',
    ],
    [
      "apiVersion a number",
      { ...envelope(podRequest(minimalPod())), apiVersion: 1 },
      "apiVersion must be one of admission.k8s.io/v1, admission.k8s.io/v1beta1, not 1",
    ],
    ["no request", envelope(undefined), "request is missing"],
    ["request an array", { ...envelope(undefined), request: [] }, "request is missing"],
    ["no uid", envelope(podRequest(minimalPod(), { uid: undefined })), "request.uid is missing"],
    ["empty uid", envelope(podRequest(minimalPod(), { uid: "" })), "request.uid is missing"],
    ["uid a number", envelope(podRequest(minimalPod(), { uid: 7 })), "request.uid is missing"],
    [
      "uid of 129 characters",
      envelope(podRequest(minimalPod(), { uid: "u".repeat(129) })),
      "request.uid is 129 characters long; a uid has at most 128",
    ],
    [
      "a Deployment",
      envelope(podRequest({}, { kind: { group: "apps", version: "v1", kind: "Deployment" } })),
      'only Pods are handled, not "Deployment"',
    ],
    [
      "a Pod kind in another group",
      envelope(podRequest({}, { kind: { group: "example.com", version: "v1", kind: "Pod" } })),
      'only Pods are handled, not "Pod"',
    ],
    [
      "a core kind that is not Pod",
      envelope(podRequest({}, { kind: { group: "", version: "v1", kind: "Service" } })),
      'only Pods are handled, not "Service"',
    ],
    [
      "pods kind, other resource",
      envelope(podRequest({}, { resource: { group: "", version: "v1", resource: "services" } })),
      'only Pods are handled, not "Pod"',
    ],
    [
      "no kind at all, a resource",
      envelope(podRequest({}, { kind: undefined, resource: { resource: "configmaps" } })),
      'only Pods are handled, not "configmaps"',
    ],
    [
      "a subresource",
      envelope(podRequest(minimalPod(), { subResource: "ephemeralcontainers" })),
      'only Pods are handled, not the "ephemeralcontainers" subresource',
    ],
  ];
  for (const [name, body, message] of cases)
    it(name, () => {
      assert.deepEqual(review(body, cfg, "namespace"), { kind: "rejected", status: 400, message });
    });

  it("a uid of exactly 128 characters and a request with no resource are fine", () => {
    assert.equal(review(envelope(podRequest(minimalPod(), { uid: "u".repeat(128) })), cfg, "namespace").kind, "mutated");
    assert.equal(review(envelope(podRequest(minimalPod(), { resource: undefined })), cfg, "namespace").kind, "mutated");
  });
});

describe("pods left alone: allowed, no patch, and why", () => {
  const unpatched = (apiVersion = "admission.k8s.io/v1") => ({
    apiVersion,
    kind: "AdmissionReview",
    response: { uid: UID, allowed: true },
  });
  const cases: [string, Json, "namespace" | "pod", string][] = [
    ["an UPDATE", envelope(podRequest(minimalPod(), { operation: "UPDATE" })), "namespace", "not-create"],
    ["no operation", envelope(podRequest(minimalPod(), { operation: undefined })), "namespace", "not-create"],
    ["kube-system", envelope(podRequest(minimalPod(), { namespace: "kube-system" })), "namespace", "protected-namespace"],
    [
      "the webhook's own namespace",
      envelope(podRequest(minimalPod(), { namespace: "procview-system" })),
      "namespace",
      "protected-namespace",
    ],
    [
      "opted out",
      envelope(podRequest({ metadata: { annotations: { "procview.io/inject": "false" } }, ...minimalPod() })),
      "namespace",
      "opted-out",
    ],
    [
      "opted out, through the per-pod entry",
      envelope(podRequest({ metadata: { annotations: { "procview.io/inject": "false" } }, ...minimalPod() })),
      "pod",
      "opted-out",
    ],
    ["per-pod entry, no annotation", envelope(podRequest(minimalPod())), "pod", "not-opted-in"],
    [
      "opted out by label",
      envelope(podRequest({ metadata: { labels: { "procview.io/inject": "false" } }, ...minimalPod() })),
      "namespace",
      "opted-out",
    ],
    [
      "per-pod entry, label not exactly true",
      envelope(podRequest({ metadata: { labels: { "procview.io/inject": "True" } }, ...minimalPod() })),
      "pod",
      "not-opted-in",
    ],
    [
      "per-pod entry, annotation not exactly true",
      envelope(podRequest({ metadata: { annotations: { "procview.io/inject": "yes" } }, ...minimalPod() })),
      "pod",
      "not-opted-in",
    ],
    ["no containers", envelope(podRequest({ spec: { containers: [] } })), "namespace", "no-containers"],
    ["containers not a list", envelope(podRequest({ spec: { containers: { name: "x" } } })), "namespace", "no-containers"],
  ];
  for (const [name, body, scope, reason] of cases)
    it(name, () => {
      assert.deepEqual(review(body, cfg, scope), { kind: "skipped", review: unpatched(), reason });
    });

  it("the per-pod entry injects a pod labelled (or annotated) procview.io/inject=true", () => {
    for (const f of ["labels", "annotations"])
      assert.equal(
        review(envelope(podRequest({ metadata: { [f]: { "procview.io/inject": "true" } }, ...minimalPod() })), cfg, "pod").kind,
        "mutated",
        f,
      );
  });

  it("a namespace-less request is not taken for a protected namespace", () => {
    const cfgEmpty = { targets, protectedNamespaces: new Set([""]) };
    assert.equal(review(envelope(podRequest(minimalPod(), { namespace: undefined })), cfg, "namespace").kind, "mutated");
    assert.equal(review(envelope(podRequest(minimalPod(), { namespace: 3 })), cfgEmpty, "namespace").kind, "skipped");
  });

  for (const [name, pod] of [
    ["an object that is not a pod", "not a pod"],
    ["a pod with no spec", { metadata: {} }],
    ["a pod whose spec is a list", { spec: [] }],
  ] as const)
    it(`${name}: allowed with a warning, counted as an error`, () => {
      assert.deepEqual(review(envelope(podRequest(pod)), cfg, "namespace"), {
        kind: "errored",
        review: { ...unpatched(), response: { uid: UID, allowed: true, warnings: ["procview: the pod could not be read; not injected"] } },
        error: "request.object is not a pod",
      });
    });

  it("more than 256 containers and init containers together: a warning, no patch", () => {
    const containers = (n: number, p: string) => Array.from({ length: n }, (_, i) => ({ name: `${p}${i}`, image: "x" }));
    const at = (c: number, i: number) =>
      review(envelope(podRequest({ spec: { containers: containers(c, "c"), initContainers: containers(i, "i") } })), cfg, "namespace");
    assert.equal(at(200, 56).kind, "mutated");
    assert.deepEqual(at(200, 57), {
      kind: "skipped",
      review: {
        ...unpatched(),
        response: { uid: UID, allowed: true, warnings: ["procview: the pod has 257 containers, more than 256; not injected"] },
      },
      reason: "too-large",
      // What the metric and the Kubernetes Event say.
      unpatched: { reason: "too-large", message: "the pod has 257 containers, more than 256; not injected" },
    });
  });

  it("a patch over 1 MiB: a warning, no patch", () => {
    const many = mountTargets(
      Array.from({ length: 60 }, (_, i) => `/sys/devices/system/cpu/file_number_${i}`),
      "/var/lib/procview",
    );
    const containers = Array.from({ length: 150 }, (_, i) => ({ name: `c${i}`, image: "x", volumeMounts: [] }));
    const out = review(envelope(podRequest({ spec: { containers } })), { ...cfg, targets: many }, "namespace");
    assert.equal(out.kind, "skipped");
    const warning = ((out as { review: { response: { warnings: string[] } } }).review.response.warnings ?? [])[0];
    const bytes = Number(/^procview: the patch would be (\d+) bytes, more than 1048576; not injected$/.exec(warning)?.[1]);
    assert.ok(bytes > 1048576, warning);
  });
});

describe("the patch", () => {
  it("a pod with no metadata, volumes or mounts: the whole arrays and the annotation are added", () => {
    const out = review(envelope(podRequest(minimalPod()), "admission.k8s.io/v1beta1"), cfg, "namespace");
    assert.equal(out.kind, "mutated");
    const r = (out as { review: { apiVersion: string; kind: string; response: Json } }).review;
    assert.equal(r.apiVersion, "admission.k8s.io/v1beta1");
    assert.equal(r.kind, "AdmissionReview");
    assert.deepEqual(Object.keys(r.response).sort(), ["allowed", "patch", "patchType", "uid"]);
    assert.equal(r.response.patchType, "JSONPatch");
    assert.deepEqual((out as { injected: string[] }).injected, ["/proc/meminfo", "/sys/devices/system/cpu", "/run/procview"]);
    assert.deepEqual(decode(r.response.patch as string), [
      {
        op: "add",
        path: "/spec/volumes",
        value: [
          { name: "procview-proc-meminfo", hostPath: { path: "/var/lib/procview/proc/meminfo", type: "File" } },
          { name: "procview-sys-devices-system-cpu", hostPath: { path: "/var/lib/procview/sys/devices/system/cpu", type: "Directory" } },
          { name: "procview-live", hostPath: { path: "/var/lib/procview", type: "Directory" } },
        ],
      },
      {
        op: "add",
        path: "/spec/containers/0/volumeMounts",
        value: [
          { name: "procview-proc-meminfo", mountPath: "/proc/meminfo", readOnly: true },
          { name: "procview-sys-devices-system-cpu", mountPath: "/sys/devices/system/cpu", readOnly: true },
          { name: "procview-live", mountPath: "/run/procview", readOnly: true, mountPropagation: "HostToContainer" },
        ],
      },
      {
        op: "add",
        path: "/metadata",
        value: { annotations: { "procview.io/injected": "/proc/meminfo,/sys/devices/system/cpu,/run/procview" } },
      },
    ]);
  });

  it("existing arrays get appended to; metadata without annotations gets the annotations object", () => {
    const pod = {
      metadata: { name: "p" },
      spec: {
        volumes: [{ name: "data", emptyDir: {} }],
        containers: [{ name: "app", volumeMounts: [{ name: "data", mountPath: "/data" }] }],
        initContainers: [{ name: "init" }],
      },
    };
    const { ops, injected, warnings } = injectMounts(pod as Pod, targets.slice(0, 1));
    assert.deepEqual(warnings, []);
    assert.deepEqual(injected, ["/proc/meminfo"]);
    assert.deepEqual(ops, [
      {
        op: "add",
        path: "/spec/volumes/-",
        value: { name: "procview-proc-meminfo", hostPath: { path: "/var/lib/procview/proc/meminfo", type: "File" } },
      },
      {
        op: "add",
        path: "/spec/containers/0/volumeMounts/-",
        value: { name: "procview-proc-meminfo", mountPath: "/proc/meminfo", readOnly: true },
      },
      {
        op: "add",
        path: "/spec/initContainers/0/volumeMounts",
        value: [{ name: "procview-proc-meminfo", mountPath: "/proc/meminfo", readOnly: true }],
      },
      { op: "add", path: "/metadata/annotations", value: { "procview.io/injected": "/proc/meminfo" } },
    ]);
    const patched = jsonpatch.applyPatch(structuredClone(pod), jsonpatch.deepClone(ops), true, false).newDocument;
    assert.equal(patched.spec.volumes.length, 2);
  });

  it("a container that mounts the path itself keeps it; another gets ours; the record names the file", () => {
    const pod = {
      metadata: { annotations: { team: "a" } },
      spec: {
        volumes: [{ name: "mine", configMap: { name: "m" } }],
        containers: [
          { name: "own", volumeMounts: [{ name: "mine", mountPath: "/proc/meminfo" }] },
          { name: "plain", volumeMounts: [] },
        ],
      },
    };
    const { ops, injected } = injectMounts(pod, targets.slice(0, 1));
    assert.deepEqual(injected, ["/proc/meminfo"]);
    assert.deepEqual(
      ops.map((o) => o.path),
      ["/spec/volumes/-", "/spec/containers/1/volumeMounts/-", "/metadata/annotations/procview.io~1injected"],
    );
  });

  it("a file one container already has from an earlier pass counts as injected in the record", () => {
    const ours = { name: "procview-proc-meminfo", mountPath: "/proc/meminfo", readOnly: true };
    const pod = {
      metadata: { annotations: {} },
      spec: {
        volumes: [{ name: "procview-proc-meminfo", hostPath: { path: "/var/lib/procview/proc/meminfo", type: "File" } }],
        containers: [
          { name: "app", volumeMounts: [ours] },
          { name: "own", volumeMounts: [{ name: "mine", mountPath: "/proc/meminfo" }] },
        ],
      },
    };
    const { ops, injected } = injectMounts(pod as Pod, targets.slice(0, 2));
    assert.deepEqual(injected, ["/proc/meminfo", "/sys/devices/system/cpu"]);
    assert.deepEqual(ops.at(-1), {
      op: "add",
      path: "/metadata/annotations/procview.io~1injected",
      value: "/proc/meminfo,/sys/devices/system/cpu",
    });
    assert.deepEqual(
      ops.map((o) => o.path),
      [
        "/spec/volumes/-",
        "/spec/containers/0/volumeMounts/-",
        "/spec/containers/1/volumeMounts/-",
        "/metadata/annotations/procview.io~1injected",
      ],
    );
  });

  it("only containers that mount it themselves: nothing to do, and no annotation", () => {
    const pod = { spec: { containers: [{ name: "own", volumeMounts: [{ name: "mine", mountPath: "/proc/meminfo" }] }] } };
    assert.deepEqual(injectMounts(pod, targets.slice(0, 1)), { ops: [], injected: [], warnings: [] });
    const out = review(envelope(podRequest(pod)), { ...cfg, targets: targets.slice(0, 1) }, "namespace");
    assert.deepEqual(out, {
      kind: "skipped",
      review: { apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response: { uid: UID, allowed: true } },
      reason: "nothing-to-do",
    });
  });

  it("a volume of that name that is not ours: that file is skipped with a warning, the others go in", () => {
    const pod = { spec: { volumes: [{ name: "procview-proc-meminfo", hostPath: { path: "/elsewhere" } }], containers: [{ name: "app" }] } };
    const out = review(envelope(podRequest(pod)), cfg, "namespace") as {
      kind: string;
      review: { response: { warnings: string[]; patch: string } };
      unpatched: unknown;
    };
    assert.equal(out.kind, "mutated");
    assert.deepEqual(out.review.response.warnings, [
      "procview: volume procview-proc-meminfo already exists and is not procview's: /proc/meminfo not injected",
    ]);
    assert.deepEqual(out.unpatched, {
      reason: "volume-conflict",
      message: "volume procview-proc-meminfo already exists and is not procview's: /proc/meminfo not injected",
    });
    const ops = decode(out.review.response.patch) as { path: string; value: { mountPath?: string }[] }[];
    assert.deepEqual(
      ops.find((o) => o.path === "/spec/containers/0/volumeMounts")?.value.map((m) => m.mountPath),
      ["/sys/devices/system/cpu", "/run/procview"],
    );
  });

  it("our own volume already there (a pod re-created from a patched spec): reused, not added again", () => {
    const pod = {
      spec: {
        volumes: [{ name: "procview-proc-meminfo", hostPath: { path: "/var/lib/procview/proc/meminfo", type: "File" } }],
        containers: [{ name: "app" }],
      },
    };
    const { ops } = injectMounts(pod as Pod, targets.slice(0, 1));
    assert.deepEqual(
      ops.map((o) => o.path),
      ["/spec/containers/0/volumeMounts", "/metadata"],
    );
  });

  it("a second pass over a patched pod changes nothing; a sidecar added since gets only its mounts", () => {
    const pod = minimalPod();
    const first = review(envelope(podRequest(pod)), cfg, "namespace") as { review: { response: { patch: string } } };
    const patched = jsonpatch.applyPatch(structuredClone(pod), decode(first.review.response.patch), true, false).newDocument as Json;
    assert.equal(review(envelope(podRequest(patched)), cfg, "namespace").kind, "skipped");
    ((patched.spec as Json).containers as Json[]).push({ name: "sidecar" });
    const again = injectMounts(patched, targets);
    assert.deepEqual(
      again.ops.map((o) => o.path),
      ["/spec/containers/1/volumeMounts"],
    );
  });
});

describe("the patch with --volumes csi", () => {
  it("--volumes takes hostPath or csi, nothing else", () => {
    assert.equal(volumeKind("hostPath"), "hostPath");
    assert.equal(volumeKind("csi"), "csi");
    for (const bad of ["emptyDir", "", "CSI", "hostpath"])
      assert.throws(() => volumeKind(bad), new RegExp(`^Error: "${bad}" is not hostPath or csi$`));
  });

  const csiTargets = mountTargets(["/proc/meminfo", "/sys/devices/system/cpu/online"], "/var/lib/procview", true, "csi");

  it("one csi volume of csi.procview.io; every file mounted from it by subPath; the live copy HostToContainer", () => {
    const { ops, injected, warnings } = injectMounts(minimalPod() as Pod, csiTargets);
    assert.deepEqual(warnings, []);
    assert.deepEqual(injected, ["/proc/meminfo", "/sys/devices/system/cpu/online", "/run/procview"]);
    assert.deepEqual(ops, [
      { op: "add", path: "/spec/volumes", value: [{ name: "procview", csi: { driver: "csi.procview.io", readOnly: true } }] },
      {
        op: "add",
        path: "/spec/containers/0/volumeMounts",
        value: [
          { name: "procview", mountPath: "/proc/meminfo", readOnly: true, subPath: "proc/meminfo" },
          { name: "procview", mountPath: "/sys/devices/system/cpu/online", readOnly: true, subPath: "sys/devices/system/cpu/online" },
          { name: "procview", mountPath: "/run/procview", readOnly: true, mountPropagation: "HostToContainer" },
        ],
      },
      {
        op: "add",
        path: "/metadata",
        value: { annotations: { "procview.io/injected": "/proc/meminfo,/sys/devices/system/cpu/online,/run/procview" } },
      },
    ]);
  });

  it("a second pass changes nothing; a volume named procview that is not procview's CSI volume is left alone, with a warning", () => {
    const pod = minimalPod();
    const patched = jsonpatch.applyPatch(structuredClone(pod), injectMounts(pod as Pod, csiTargets).ops as never, true, false).newDocument;
    assert.deepEqual(injectMounts(patched as Pod, csiTargets).ops, []);
    const taken = { spec: { volumes: [{ name: "procview", emptyDir: {} }], containers: [{ name: "app" }] } };
    const r = injectMounts(taken as Pod, csiTargets);
    assert.deepEqual(r.ops, []);
    assert.equal(r.warnings.length, 3);
    assert.match(r.warnings[0], /^volume procview already exists and is not procview's: \/proc\/meminfo not injected$/);
  });
});
