// The checks the API server would make on a patched pod: the Kubernetes schema
// (kubernetes-models' Pod, generated from the OpenAPI spec) and the validation rules
// that matter here.
import assert from "node:assert/strict";
import { Pod } from "kubernetes-models/v1";
import type { Json } from "./admission";

export function assertValidPod(pod: Json): void {
  new Pod(pod as ConstructorParameters<typeof Pod>[0]).validate();
  const spec = pod.spec as {
    volumes?: { name: string }[];
    containers: { name: string; volumeMounts?: { name: string; mountPath: string }[] }[];
    initContainers?: typeof spec.containers;
  };
  const volumeNames = (spec.volumes ?? []).map((v) => v.name);
  assert.equal(new Set(volumeNames).size, volumeNames.length, `duplicate volume names: ${volumeNames}`);
  for (const c of [...spec.containers, ...(spec.initContainers ?? [])]) {
    const paths = (c.volumeMounts ?? []).map((m) => m.mountPath);
    assert.equal(new Set(paths).size, paths.length, `container ${c.name}: duplicate mountPath in ${paths}`);
    for (const m of c.volumeMounts ?? []) assert.ok(volumeNames.includes(m.name), `container ${c.name} mounts unknown volume ${m.name}`);
  }
}

/**
 * What Pod Security admission would say of the pod's volumes, the only part of a pod the
 * webhook adds (kubernetes.io/docs/concepts/security/pod-security-standards): baseline
 * forbids hostPath volumes; restricted allows only the volume types listed here.
 */
export function podSecurityVolumeViolations(pod: Json, level: "baseline" | "restricted"): string[] {
  const restricted = ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];
  const volumes = ((pod.spec as { volumes?: Json[] }).volumes ?? []) as Json[];
  const out: string[] = [];
  for (const v of volumes)
    for (const type of Object.keys(v).filter((k) => k !== "name"))
      if (type === "hostPath" || (level === "restricted" && !restricted.includes(type))) out.push(`${v.name}: ${type}`);
  return out;
}
