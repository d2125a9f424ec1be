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
