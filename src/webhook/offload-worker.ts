// The offload worker: decides large AdmissionReviews off the server's thread (see offload.ts).
import { parentPort, workerData } from "node:worker_threads";
import type { Scope } from "./admission";
import { decide } from "./decide";
import type { MountTarget } from "./patch";

const data = workerData as { targets: MountTarget[]; protectedNamespaces: string[] };
const cfg = { targets: data.targets, protectedNamespaces: new Set(data.protectedNamespaces) };

parentPort?.on("message", (m: { id: number; body: ArrayBuffer; scope: Scope }) => {
  const text = Buffer.from(m.body).toString("utf8");
  parentPort?.postMessage({ id: m.id, decision: decide(text, cfg, m.scope) });
});
