// The deploy kit as `kubectl kustomize` renders it, every object validated against the
// Kubernetes schemas (kubernetes-models, generated from the API's OpenAPI spec), and the
// invariants a platform team relies on checked one by one.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, it } from "node:test";
import { parseAllDocuments } from "yaml";

const ROOT = path.resolve(__dirname, "../../..");
type Obj = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; annotations?: Record<string, string> };
  [k: string]: unknown;
};

function render(dir: string): Obj[] {
  const r = spawnSync("kubectl", ["kustomize", "--load-restrictor", "LoadRestrictionsNone", path.resolve(ROOT, dir)], { encoding: "utf8" });
  if (r.error) throw new Error(`kubectl is needed to render the kustomization: ${r.error.message}`);
  assert.equal(r.status, 0, r.stderr);
  return parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj);
}

function validate(o: Obj): void {
  if (o.apiVersion.startsWith("cert-manager.io/")) return; // a CRD: checked by shape below
  const [group, version] = o.apiVersion.includes("/") ? o.apiVersion.split("/") : ["", o.apiVersion];
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const models = require(group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}`) as Record<
    string,
    new (o: unknown) => { validate(): void }
  >;
  const Model = models[o.kind];
  assert.ok(Model, `no schema for ${o.apiVersion} ${o.kind}`);
  new Model(o).validate();
}

const find = (objs: Obj[], kind: string, name?: string) => {
  const o = objs.find((x) => x.kind === kind && (name === undefined || x.metadata.name === name));
  assert.ok(o, `${kind} ${name ?? ""} rendered`);
  return o as Obj & Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
};

describe("deploy/base", () => {
  const objs = render("deploy/base");

  it("renders, and every object validates against the Kubernetes schema", () => {
    assert.deepEqual(objs.map((o) => o.kind).sort(), [
      "ClusterRole",
      "ClusterRole",
      "ClusterRoleBinding",
      "ClusterRoleBinding",
      "DaemonSet",
      "Deployment",
      "MutatingWebhookConfiguration",
      "Namespace",
      "PodDisruptionBudget",
      "Role",
      "RoleBinding",
      "Service",
      "ServiceAccount",
      "ServiceAccount",
    ]);
    for (const o of objs) validate(o);
  });

  it("the webhook configuration fails open, speaks v1, has no side effects and is reinvoked", () => {
    const mwc = find(objs, "MutatingWebhookConfiguration", "procview");
    assert.equal(mwc.webhooks.length, 2);
    for (const w of mwc.webhooks) {
      assert.deepEqual(w.admissionReviewVersions, ["v1"]);
      assert.equal(w.sideEffects, "None");
      assert.equal(w.failurePolicy, "Ignore");
      assert.equal(w.timeoutSeconds, 5);
      assert.equal(w.reinvocationPolicy, "IfNeeded");
      assert.deepEqual(w.rules, [
        { apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["pods"], scope: "Namespaced" },
      ]);
      assert.equal(w.clientConfig.service.name, "procview-webhook");
      assert.equal(w.clientConfig.service.namespace, "procview-system");
      assert.equal(w.clientConfig.caBundle, undefined, "the caBundle is written at run time, not shipped");
      const excluded = w.namespaceSelector.matchExpressions.find((e: { key: string }) => e.key === "kubernetes.io/metadata.name");
      assert.deepEqual([excluded.operator, [...excluded.values].sort()], ["NotIn", ["kube-public", "kube-system"]]);
    }
    const [byNamespace, byPod] = mwc.webhooks;
    assert.equal(byNamespace.clientConfig.service.path, "/mutate");
    assert.deepEqual(byNamespace.namespaceSelector.matchLabels, { "procview.io/inject": "enabled" });
    assert.equal(byPod.clientConfig.service.path, "/mutate-pod");
    assert.deepEqual(byPod.namespaceSelector.matchExpressions[0], {
      key: "procview.io/inject",
      operator: "NotIn",
      values: ["enabled", "disabled"],
    });
    // Only labelled pods reach the webhook: the API server selects, other pods never wait on it.
    assert.deepEqual(byPod.objectSelector, { matchLabels: { "procview.io/inject": "true" } });
    assert.deepEqual(byNamespace.objectSelector, {
      matchExpressions: [{ key: "procview.io/inject", operator: "NotIn", values: ["false"] }],
    });
    // Pod Security baseline and restricted reject hostPath volumes: no entry is called for a
    // pod there (it is created as it is), whichever way it opted in; privileged is injected.
    const calls = (nsLabels: Record<string, string>, podLabels: Record<string, string>) =>
      mwc.webhooks.filter((w: Webhook) => selects(w.namespaceSelector, nsLabels) && selects(w.objectSelector, podLabels)).length;
    const named = (name: string, labels: Record<string, string> = {}) => ({ "kubernetes.io/metadata.name": name, ...labels });
    for (const level of ["baseline", "restricted"]) {
      const psa = { "pod-security.kubernetes.io/enforce": level };
      assert.equal(calls(named("apps", { "procview.io/inject": "enabled", ...psa }), {}), 0, `namespace opt-in, ${level}`);
      assert.equal(calls(named("apps", psa), { "procview.io/inject": "true" }), 0, `pod opt-in, ${level}`);
    }
    const privileged = { "pod-security.kubernetes.io/enforce": "privileged" };
    assert.equal(calls(named("apps", { "procview.io/inject": "enabled", ...privileged }), {}), 1);
    assert.equal(calls(named("apps", privileged), { "procview.io/inject": "true" }), 1);
    assert.equal(calls(named("apps"), { "procview.io/inject": "true" }), 1);
    assert.equal(calls(named("apps"), {}), 0, "a pod that did not opt in never reaches the webhook");
    // The kit's own namespace is out of both entries by its label, not by its name.
    const ns = find(objs, "Namespace", "procview-system") as unknown as { metadata: { labels: Record<string, string> } };
    assert.equal(ns.metadata.labels["procview.io/inject"], "disabled");
  });

  it("the webhook's flags name the Secret and configuration its RBAC allows, and nothing more", () => {
    const args: string[] = find(objs, "Deployment", "procview-webhook").spec.template.spec.containers[0].args;
    assert.ok(args.includes("--secret-name=procview-webhook-certs"));
    assert.ok(args.includes("--webhook-config-name=procview"));
    const role = find(objs, "Role", "procview-webhook-certs");
    assert.deepEqual(role.rules, [
      { apiGroups: [""], resources: ["secrets"], verbs: ["create"] },
      { apiGroups: [""], resources: ["secrets"], resourceNames: ["procview-webhook-certs"], verbs: ["get", "update"] },
    ]);
    const cr = find(objs, "ClusterRole", "procview-webhook-cabundle");
    assert.deepEqual(cr.rules, [
      {
        apiGroups: ["admissionregistration.k8s.io"],
        resources: ["mutatingwebhookconfigurations"],
        resourceNames: ["procview"],
        verbs: ["get", "patch", "list", "watch"],
      },
    ]);
    // Events for pods admitted without procview's files: create, nothing else.
    assert.deepEqual(find(objs, "ClusterRole", "procview-webhook-events").rules, [
      { apiGroups: [""], resources: ["events"], verbs: ["create"] },
    ]);
    for (const o of objs.filter((x) => x.kind === "RoleBinding" || x.kind === "ClusterRoleBinding"))
      assert.deepEqual((o as Obj & { subjects: unknown }).subjects, [
        { kind: "ServiceAccount", name: "procview-webhook", namespace: "procview-system" },
      ]);
  });

  it("the node daemon: privileged, host pid namespace, the host's cgroup trees, Bidirectional mount, every taint tolerated, node-critical, probes that read the mount", () => {
    const spec = find(objs, "DaemonSet", "procview").spec.template.spec;
    assert.equal(spec.hostPID, true);
    assert.equal(spec.priorityClassName, "system-node-critical");
    assert.deepEqual(spec.tolerations, [{ operator: "Exists" }]);
    const c = spec.containers[0];
    assert.equal(c.securityContext.privileged, true);
    assert.deepEqual(c.volumeMounts, [
      { name: "procview", mountPath: "/var/lib/procview", mountPropagation: "Bidirectional" },
      // The handover record: beside the mountpoint, never inside what containers can read.
      { name: "state", mountPath: "/var/lib/procview.state" },
      // The host's cgroup trees, read-only: its own /sys/fs/cgroup shows only its own cgroup.
      { name: "cgroup", mountPath: "/host/sys/fs/cgroup", readOnly: true, mountPropagation: "HostToContainer" },
    ]);
    assert.ok(c.resources.requests.memory && c.resources.limits.memory);
    for (const p of ["livenessProbe", "readinessProbe", "startupProbe"])
      assert.deepEqual(c[p].exec.command, ["procview", "check", "--mountpoint", "/var/lib/procview"], p);
    assert.deepEqual(spec.volumes[0].hostPath, { path: "/var/lib/procview", type: "DirectoryOrCreate" });
    assert.deepEqual(spec.volumes[1].hostPath, { path: "/var/lib/procview.state", type: "DirectoryOrCreate" });
    assert.deepEqual(spec.volumes[2].hostPath, { path: "/sys/fs/cgroup", type: "Directory" });
  });

  it("the webhook: 2 replicas spread over nodes, a disruption budget, non-root, read-only root filesystem, HTTPS probes", () => {
    const d = find(objs, "Deployment", "procview-webhook");
    assert.equal(d.spec.replicas, 2);
    const spec = d.spec.template.spec;
    assert.equal(
      spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.topologyKey,
      "kubernetes.io/hostname",
    );
    assert.equal(spec.securityContext.runAsNonRoot, true);
    const c = spec.containers[0];
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    assert.equal(c.readinessProbe.httpGet.path, "/readyz");
    assert.equal(c.livenessProbe.httpGet.scheme, "HTTPS");
    assert.equal(find(objs, "PodDisruptionBudget").spec.minAvailable, 1);
    assert.equal(find(objs, "Service", "procview-webhook").spec.ports[0].port, 443);
  });
});

describe("deploy/overlays/cert-manager", () => {
  const objs = render("deploy/overlays/cert-manager");

  it("renders and validates; cert-manager issues the certificate and injects the CA", () => {
    for (const o of objs) validate(o);
    const cert = find(objs, "Certificate", "procview-webhook");
    assert.equal(cert.spec.secretName, "procview-webhook-tls");
    assert.ok(cert.spec.dnsNames.includes("procview-webhook.procview-system.svc"));
    assert.equal(
      find(objs, "MutatingWebhookConfiguration").metadata.annotations?.["cert-manager.io/inject-ca-from"],
      "procview-system/procview-webhook",
    );
    const c = find(objs, "Deployment", "procview-webhook").spec.template.spec.containers[0];
    assert.ok(c.args.includes("--tls-cert-file=/tls/tls.crt") && c.args.includes("--tls-key-file=/tls/tls.key"));
    // The Issuer and Certificate live where the webhook mounts the Secret from.
    for (const kind of ["Certificate", "Issuer", "Deployment"]) assert.equal(find(objs, kind).metadata.namespace, "procview-system", kind);
  });

  it("least privilege: the webhook may only create Events (cert-manager does the certificate work)", () => {
    const rbac = objs.filter((o) => ["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"].includes(o.kind));
    assert.deepEqual(
      rbac.map((o) => `${o.kind}/${o.metadata.name}`),
      ["ClusterRole/procview-webhook-events", "ClusterRoleBinding/procview-webhook-events"],
    );
    assert.deepEqual(find(objs, "ClusterRole").rules, [{ apiGroups: [""], resources: ["events"], verbs: ["create"] }]);
  });
});

describe("deploy/overlays/csi: Pod Security baseline and restricted namespaces too", () => {
  const objs = render("deploy/overlays/csi");

  it("renders and validates; a CSIDriver for inline ephemeral volumes only, nothing to attach, ownership left alone", () => {
    for (const o of objs) validate(o);
    const driver = find(objs, "CSIDriver", "csi.procview.io");
    assert.equal(driver.metadata.namespace, undefined, "cluster-scoped");
    assert.deepEqual(driver.spec, {
      attachRequired: false,
      podInfoOnMount: true,
      volumeLifecycleModes: ["Ephemeral"],
      fsGroupPolicy: "None",
      requiresRepublish: false,
      storageCapacity: false,
    });
  });

  it("the daemon serves the plugin where the registrar looks, and mounts volumes where the kubelet names them", () => {
    const spec = find(objs, "DaemonSet", "procview").spec.template.spec;
    const [daemon, registrar] = spec.containers;
    assert.equal(registrar.name, "node-driver-registrar");
    assert.match(registrar.image, /^registry\.k8s\.io\/sig-storage\/csi-node-driver-registrar:v2\.\d+\.\d+$/);
    const hostPathOf = (name: string) => spec.volumes.find((v: { name: string }) => v.name === name).hostPath.path;
    const mount = (c: { volumeMounts: { name: string; mountPath: string }[] }, name: string) => c.volumeMounts.find((m) => m.name === name);
    // The socket: serve's --csi-endpoint and the registrar's --csi-address are one file of one volume...
    assert.ok(daemon.args.includes("--csi-endpoint=unix:///csi/csi.sock"), daemon.args.join(" "));
    assert.ok(registrar.args.includes("--csi-address=/csi/csi.sock"));
    assert.equal(mount(daemon, "csi-plugin")?.mountPath, "/csi");
    assert.equal(mount(registrar, "csi-plugin")?.mountPath, "/csi");
    // ...which the kubelet finds on the host where the registrar says it is.
    assert.ok(registrar.args.includes(`--kubelet-registration-path=${hostPathOf("csi-plugin")}/csi.sock`), registrar.args.join(" "));
    assert.equal(hostPathOf("kubelet-registration"), "/var/lib/kubelet/plugins_registry");
    assert.equal(mount(registrar, "kubelet-registration")?.mountPath, "/registration");
    // The kubelet's pods directory at its host path (target paths are host paths), Bidirectional
    // so that volumes reach the host; serve mounts only inside it, by default exactly there.
    const pods = daemon.volumeMounts.find((m: { name: string }) => m.name === "kubelet-pods");
    assert.deepEqual(pods, { name: "kubelet-pods", mountPath: "/var/lib/kubelet/pods", mountPropagation: "Bidirectional" });
    assert.equal(hostPathOf("kubelet-pods"), "/var/lib/kubelet/pods");
    const help = spawnSync(process.execPath, [path.join(ROOT, "bin/procview"), "serve", "--help"], { encoding: "utf8" }).stdout;
    assert.match(help.replace(/\s+/g, " "), /--csi-pods-dir <dir> .*\(default: "\/var\/lib\/kubelet\/pods"\)/);
    assert.deepEqual(daemon.env, [{ name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } }]);
  });

  it("the webhook injects the csi volume, and is called in baseline and restricted namespaces as elsewhere", () => {
    assert.ok(find(objs, "Deployment", "procview-webhook").spec.template.spec.containers[0].args.includes("--volumes=csi"));
    const mwc = find(objs, "MutatingWebhookConfiguration", "procview");
    const calls = (nsLabels: Record<string, string>, podLabels: Record<string, string>) =>
      mwc.webhooks.filter((w: Webhook) => selects(w.namespaceSelector, nsLabels) && selects(w.objectSelector, podLabels)).length;
    for (const level of ["baseline", "restricted", "privileged"]) {
      const ns = { "kubernetes.io/metadata.name": "apps", "pod-security.kubernetes.io/enforce": level };
      assert.equal(calls({ ...ns, "procview.io/inject": "enabled" }, {}), 1, `namespace opt-in, ${level}`);
      assert.equal(calls(ns, { "procview.io/inject": "true" }), 1, `pod opt-in, ${level}`);
      assert.equal(calls(ns, {}), 0, `no opt-in, ${level}`);
    }
    assert.equal(calls({ "kubernetes.io/metadata.name": "kube-system", "procview.io/inject": "enabled" }, {}), 0);
  });
});

/** Every namespace an object lives in or refers to (subjects, services, CA injection, DNS names). */
function namespacesIn(objs: Obj[]): Set<string> {
  const seen = new Set<string>();
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  for (const o of objs as (Obj & Record<string, any>)[]) {
    if (o.metadata.namespace) seen.add(o.metadata.namespace);
    if (o.kind === "Namespace") seen.add(o.metadata.name);
    for (const s of o.subjects ?? []) if (s.namespace) seen.add(s.namespace);
    for (const w of o.webhooks ?? []) seen.add(w.clientConfig.service.namespace);
    const inject = o.metadata.annotations?.["cert-manager.io/inject-ca-from"];
    if (inject) seen.add(inject.split("/")[0]);
    for (const n of o.spec?.dnsNames ?? []) seen.add(n.split(".")[1]);
  }
  return seen;
}

describe("moving the kit to another namespace", () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "pv-kustomize-"));
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  /** The overlay as README says to use it: copied, its `namespace:` line changed. */
  function moved(overlay: string, namespace: string): Obj[] {
    const dir = path.join(tmp, path.basename(overlay));
    fs.mkdirSync(dir);
    const text = fs.readFileSync(path.join(ROOT, overlay, "kustomization.yaml"), "utf8");
    assert.match(text, /^namespace: \S+$/m);
    const rel = path.relative(dir, path.join(ROOT, overlay));
    fs.writeFileSync(
      path.join(dir, "kustomization.yaml"),
      text.replace(/^namespace: \S+$/m, `namespace: ${namespace}`).replace(/(^\s+- )\.\.\//gm, `$1${rel}/../`),
    );
    return render(dir);
  }

  for (const overlay of ["deploy/overlays/namespace", "deploy/overlays/cert-manager", "deploy/overlays/csi"])
    it(`${overlay}, copied with one namespace line changed: every object and every reference moves`, () => {
      const objs = moved(overlay, "team-infra");
      for (const o of objs) validate(o);
      assert.deepEqual([...namespacesIn(objs)], ["team-infra"]);
    });

  it("deploy/overlays/namespace as shipped renders into its own namespace", () => {
    assert.deepEqual([...namespacesIn(render("deploy/overlays/namespace"))], ["platform-procview"]);
  });
});

describe("Dockerfile", () => {
  it("its steps, replayed without an engine, give an image whose procview runs as 65532 with production dependencies only", () => {
    const docker = fs.readFileSync(path.join(ROOT, "Dockerfile"), "utf8");
    assert.match(fs.readFileSync(path.join(ROOT, "README.md"), "utf8"), /npm ci && npm run build/);
    assert.match(docker, /^USER 65532:65532$/m);
    const [build, final] = docker.split(/^FROM /m).slice(1);
    assert.match(build, /AS build\n/);
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "pv-image-"));
    // COPY's rule: a destination ending in "/" is a directory the source goes into.
    const copy = (src: string, dest: string, into: string) =>
      fs.cpSync(src, path.join(into, dest.endsWith("/") ? path.join(dest, path.basename(src)) : dest), { recursive: true });
    try {
      // Stage 1: the COPY lines into an empty directory, then its RUN line.
      const stage1 = path.join(scratch, "build");
      fs.mkdirSync(stage1);
      for (const m of build.matchAll(/^COPY (.+) (\S+)$/gm))
        for (const src of m[1].split(" "))
          fs.cpSync(path.join(ROOT, src), path.join(stage1, m[2] === "./" ? src : m[2].replace(/^\.\//, "")), { recursive: true });
      // The build's own RUN line (its package installs are this machine's prerequisites).
      const run = [...build.matchAll(/^RUN (.+)$/gm)].map((m) => m[1]).find((r) => r.includes("npm ci")) ?? "";
      assert.match(run, /npm ci .*&& npm run build/);
      const r = spawnSync("sh", ["-c", run], { cwd: stage1, encoding: "utf8", timeout: 170_000 });
      assert.equal(r.status, 0, `${run}: ${r.stderr.slice(-2000)}`);
      // Stage 2: only what the final stage copies from the build.
      const image = path.join(scratch, "opt/procview");
      for (const m of final.matchAll(/^COPY --from=build \/src\/(\S+) (\S+)$/gm)) copy(path.join(stage1, m[1]), m[2], image);
      fs.chmodSync(scratch, 0o755);
      const asUser = (args: string[]) =>
        spawnSync("setpriv", ["--reuid=65532", "--regid=65532", "--clear-groups", path.join(image, "bin/procview"), ...args], {
          encoding: "utf8",
          timeout: 30_000,
        });
      const args = asUser(["docker-args"]);
      assert.equal(args.status, 0, args.stderr);
      assert.match(args.stdout, /-v \/var\/lib\/procview\/proc\/meminfo:\/proc\/meminfo:ro/);
      const refused = asUser(["webhook", "--files", "/etc/shadow"]);
      assert.equal(refused.status, 2, refused.stderr);
      assert.match(refused.stderr, /cannot inject \/etc\/shadow/);
      assert.equal(fs.existsSync(path.join(image, "node_modules/typescript")), false, "no dev dependencies in the image");
      // The crash journal's native helper is built and shipped (kernels before 6.9 need it).
      assert.ok(fs.statSync(path.join(image, "build/Release/shared_map.node")).size > 0);
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
    }
  });
});

interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: "In" | "NotIn" | "Exists" | "DoesNotExist"; values?: string[] }[];
}
interface Webhook {
  namespaceSelector?: LabelSelector;
  objectSelector?: LabelSelector;
}

/** A label selector as the API server applies it (NotIn and DoesNotExist match a missing key). */
function selects(sel: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!sel) return true;
  const has = (k: string) => Object.hasOwn(labels, k);
  return (
    Object.entries(sel.matchLabels ?? {}).every(([k, v]) => labels[k] === v) &&
    (sel.matchExpressions ?? []).every((e) => {
      switch (e.operator) {
        case "In":
          return has(e.key) && (e.values ?? []).includes(labels[e.key]);
        case "NotIn":
          return !has(e.key) || !(e.values ?? []).includes(labels[e.key]);
        case "Exists":
          return has(e.key);
        case "DoesNotExist":
          return !has(e.key);
      }
      return false;
    })
  );
}
