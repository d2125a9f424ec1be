// AdmissionReview in, AdmissionReview out: validation of the envelope, the opt-in rules,
// and the patch. No HTTP, no TLS, no Kubernetes client here.
import { describe, MAX_CONTAINERS, MAX_PATCH_BYTES } from "./limits";
import { injectMounts, LABEL_INJECT, type MountTarget } from "./patch";

export const SUPPORTED_VERSIONS = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

/** Why a pod left without a patch (a metric label). */
export type SkipReason =
  "opted-out" | "not-opted-in" | "protected-namespace" | "not-create" | "nothing-to-do" | "no-containers" | "too-large";

export interface AdmissionConfig {
  targets: readonly MountTarget[];
  /** Namespaces never touched: kube-system, kube-public and the webhook's own. */
  protectedNamespaces: ReadonlySet<string>;
}

/** How the webhook was reached: through the opted-in-namespace entry, or the per-pod one. */
export type Scope = "namespace" | "pod";

export interface AdmissionResponse {
  uid: string;
  allowed: true;
  patchType?: "JSONPatch";
  patch?: string;
  warnings?: string[];
}

/** Why a pod that asked for procview's files was admitted without (some of) them. */
export type UnpatchedReason = "too-large" | "volume-conflict" | "error";
export interface Unpatched {
  reason: UnpatchedReason;
  message: string;
}

export type Outcome =
  | { kind: "mutated"; review: object; injected: string[]; unpatched?: Unpatched }
  | { kind: "skipped"; review: object; reason: SkipReason; unpatched?: Unpatched }
  // The pod is allowed unpatched: something about it we could not handle.
  | { kind: "errored"; review: object; error: string }
  | { kind: "rejected"; status: number; message: string };

function reject(status: number, message: string): Outcome {
  return { kind: "rejected", status, message };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Reviews one AdmissionReview body (already parsed JSON). */
export function review(body: unknown, cfg: AdmissionConfig, scope: Scope): Outcome {
  if (!isObject(body)) return reject(400, "the body must be a JSON object (an AdmissionReview)");
  if (body.kind !== "AdmissionReview") return reject(400, `kind must be AdmissionReview, not ${describe(body.kind)}`);
  if (typeof body.apiVersion !== "string" || !SUPPORTED_VERSIONS.includes(body.apiVersion))
    return reject(400, `apiVersion must be one of ${SUPPORTED_VERSIONS.join(", ")}, not ${describe(body.apiVersion)}`);
  const req = body.request;
  if (!isObject(req)) return reject(400, "request is missing");
  if (typeof req.uid !== "string" || req.uid === "") return reject(400, "request.uid is missing");
  if (req.uid.length > 128) return reject(400, `request.uid is ${req.uid.length} characters long; a uid has at most 128`);
  const kind = isObject(req.kind) ? req.kind : {};
  const resource = isObject(req.resource) ? req.resource : {};
  if (kind.kind !== "Pod" || (kind.group ?? "") !== "" || (resource.resource !== undefined && resource.resource !== "pods"))
    return reject(400, `only Pods are handled, not ${describe(kind.kind ?? resource.resource)}`);
  if (req.subResource) return reject(400, `only Pods are handled, not the ${describe(req.subResource)} subresource`);

  const answer = (response: Omit<AdmissionResponse, "uid" | "allowed">) => ({
    apiVersion: body.apiVersion,
    kind: "AdmissionReview",
    response: { uid: req.uid, allowed: true, ...response },
  });
  const skip = (reason: SkipReason): Outcome => ({ kind: "skipped", review: answer({}), reason });

  if (req.operation !== "CREATE") return skip("not-create");
  const namespace = typeof req.namespace === "string" ? req.namespace : "";
  if (cfg.protectedNamespaces.has(namespace)) return skip("protected-namespace");
  const pod = req.object;
  if (!isObject(pod) || !isObject(pod.spec)) {
    return {
      kind: "errored",
      review: answer({ warnings: ["procview: the pod could not be read; not injected"] }),
      error: "request.object is not a pod",
    };
  }
  // The label is what the API server selects on; the annotation is the older way, still heard.
  const field = (f: string) => (isObject(pod.metadata) && isObject(pod.metadata[f]) ? (pod.metadata[f] as Record<string, unknown>) : {});
  const wishes = [field("labels")[LABEL_INJECT], field("annotations")[LABEL_INJECT]];
  if (wishes.includes("false")) return skip("opted-out");
  if (scope === "pod" && !wishes.includes("true")) return skip("not-opted-in");
  if (!Array.isArray(pod.spec.containers) || pod.spec.containers.length === 0) return skip("no-containers");
  const tooLarge = (why: string): Outcome => ({
    kind: "skipped",
    review: answer({ warnings: [`procview: ${why}; not injected`] }),
    reason: "too-large",
    unpatched: { reason: "too-large", message: `${why}; not injected` },
  });
  const count = pod.spec.containers.length + (Array.isArray(pod.spec.initContainers) ? pod.spec.initContainers.length : 0);
  if (count > MAX_CONTAINERS) return tooLarge(`the pod has ${count} containers, more than ${MAX_CONTAINERS}`);

  const result = injectMounts(pod, cfg.targets);
  const warnings = result.warnings.map((w) => `procview: ${w}`);
  const conflict: Unpatched | undefined = result.warnings.length
    ? { reason: "volume-conflict", message: result.warnings.join("; ") }
    : undefined;
  if (result.ops.length === 0) {
    return {
      kind: "skipped",
      review: answer(warnings.length ? { warnings } : {}),
      reason: "nothing-to-do",
      ...(conflict ? { unpatched: conflict } : {}),
    };
  }
  const json = JSON.stringify(result.ops);
  if (json.length > MAX_PATCH_BYTES) return tooLarge(`the patch would be ${json.length} bytes, more than ${MAX_PATCH_BYTES}`);
  const patch = Buffer.from(json).toString("base64");
  return {
    kind: "mutated",
    review: answer({ patchType: "JSONPatch", patch, ...(warnings.length ? { warnings } : {}) }),
    injected: result.injected,
    ...(conflict ? { unpatched: conflict } : {}),
  };
}
