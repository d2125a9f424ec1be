// From the body's text to the answer: the nesting check, the parse, the review, and our own
// faults turned into an unpatched allow. Pure and self-contained, so that it runs the same
// on the server's thread (ordinary bodies) and in the offload worker (large ones).
import { type Outcome, review, type Scope, type AdmissionConfig, type Unpatched } from "./admission";
import { type PodIdentity, podIdentity } from "./events";
import { clip, jsonDepthExceeds, MAX_JSON_DEPTH } from "./limits";

export type Decision =
  /** Refused with this status and reason (nothing about the pod is decided). */
  | { kind: "refused"; status: number; message: string }
  | {
      kind: "answered";
      outcome: Exclude<Outcome, { kind: "rejected" }>;
      /** The AdmissionReview to send, serialised. */
      answer: string;
      /** When the pod asked for procview's files and goes without them: why, and who it is. */
      unpatched?: { why: Unpatched; pod?: PodIdentity };
    };

export function decide(text: string, cfg: AdmissionConfig, scope: Scope): Decision {
  if (jsonDepthExceeds(text))
    return { kind: "refused", status: 400, message: `the body nests deeper than ${MAX_JSON_DEPTH} levels; no AdmissionReview does` };
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (e) {
    return { kind: "refused", status: 400, message: `malformed JSON: ${clip(e instanceof Error ? e.message : String(e))}` };
  }
  let outcome: Outcome;
  let answer: string;
  try {
    outcome = review(body, cfg, scope);
    if (outcome.kind === "rejected") return { kind: "refused", status: outcome.status, message: outcome.message };
    answer = JSON.stringify(outcome.review);
  } catch (e) {
    // Our bug: the pod goes through unpatched, and we say so.
    outcome = { kind: "errored", review: allowUnpatched(body), error: clip(e instanceof Error ? e.message : String(e)) };
    answer = JSON.stringify(outcome.review);
  }
  const why: Unpatched | undefined = outcome.kind === "errored" ? { reason: "error", message: outcome.error } : outcome.unpatched;
  return { kind: "answered", outcome, answer, ...(why ? { unpatched: { why, pod: podIdentity(body) } } : {}) };
}

/** An allow answer for a review whose uid we can still find; used when our own code failed. Only strings are echoed. */
function allowUnpatched(body: unknown): object {
  const b = (typeof body === "object" && body !== null ? body : {}) as { apiVersion?: unknown; request?: { uid?: unknown } };
  const uid = typeof b.request === "object" && b.request !== null ? b.request.uid : undefined;
  return {
    apiVersion: typeof b.apiVersion === "string" ? clip(b.apiVersion) : "admission.k8s.io/v1",
    kind: "AdmissionReview",
    response: {
      uid: typeof uid === "string" ? clip(uid) : "",
      allowed: true,
      warnings: ["procview: internal error; the pod was not injected"],
    },
  };
}
