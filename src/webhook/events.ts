// A Kubernetes Event for every pod that asked for procview's files and was admitted without
// (some of) them, so that `kubectl get events` (and `kubectl describe` of its ReplicaSet,
// Job or StatefulSet) says why a pod reads the node's figures. At admission a pod has no
// uid and often no name yet, so the Event is about its controller when it has one, else
// about the pod by the name it will have. One Event per pod owner and reason in 10 minutes
// (a 100-replica Deployment makes one), at most 5 a second; the metric counts every pod.
import * as os from "node:os";
import type { Logger } from "pino";
import type { Unpatched } from "./admission";
import { loadK8s, makeKubeConfig } from "./kube";

export interface PodIdentity {
  namespace: string;
  name?: string;
  generateName?: string;
  controller?: { apiVersion: string; kind: string; name: string; uid: string };
}

/** A Kubernetes name or uid as the client sent it; anything longer than a name can be is dropped. */
const str = (v: unknown): string | undefined => (typeof v === "string" && v && v.length <= 253 ? v : undefined);
const obj = (v: unknown): Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

/** Who the pod in an AdmissionReview is, from fields a client controls: nothing longer than a name. */
export function podIdentity(body: unknown): PodIdentity | undefined {
  const req = obj(obj(body).request);
  const namespace = str(req.namespace);
  if (!namespace) return undefined;
  const meta = obj(obj(req.object).metadata);
  const owners = Array.isArray(meta.ownerReferences) ? meta.ownerReferences.map(obj) : [];
  const c = owners.find((o) => o.controller === true);
  const controller =
    c && str(c.apiVersion) && str(c.kind) && str(c.name) && str(c.uid)
      ? { apiVersion: str(c.apiVersion) as string, kind: str(c.kind) as string, name: str(c.name) as string, uid: str(c.uid) as string }
      : undefined;
  return { namespace, name: str(meta.name), generateName: str(meta.generateName), controller };
}

const QUIET_MS = 10 * 60_000;
const PER_SECOND = 5;
const REMEMBERED = 4096;

export class EventRecorder {
  private api?: Promise<{ createNamespacedEvent(a: { namespace: string; body: object }): Promise<unknown> }>;
  /** key -> when its last Event was sent. */
  private readonly recent = new Map<string, number>();
  private second = 0;
  private sentThisSecond = 0;
  private lastFailureLog = 0;
  readonly instance = os.hostname();

  constructor(private readonly o: { kubeconfig?: string; logger: Logger }) {}

  /**
   * Loads the Kubernetes client and its configuration now, not in the middle of a burst of
   * admissions; returns why Events cannot be sent (no kubeconfig and not in a pod), if so.
   */
  async connect(): Promise<string | undefined> {
    this.api ??= this.makeApi();
    try {
      await this.api;
      return undefined;
    } catch (e) {
      return (e as Error).message.slice(0, 256);
    }
  }

  /** Sends the Event unless one like it went out lately; never throws, never waits. */
  record(pod: PodIdentity, why: Unpatched, now = Date.now()): void {
    const subject = pod.controller ? `${pod.controller.kind}/${pod.controller.name}` : `Pod/${pod.name ?? pod.generateName ?? ""}`;
    const key = `${pod.namespace}/${subject}/${why.reason}`;
    if (now - (this.recent.get(key) ?? -Infinity) < QUIET_MS) return;
    const sec = Math.floor(now / 1000);
    if (sec !== this.second) [this.second, this.sentThisSecond] = [sec, 0];
    if (this.sentThisSecond >= PER_SECOND) return;
    this.sentThisSecond++;
    this.recent.delete(key);
    this.recent.set(key, now);
    if (this.recent.size > REMEMBERED) this.recent.delete(this.recent.keys().next().value as string);
    void this.send(pod, why, now).catch((e: Error) => {
      if (now - this.lastFailureLog < 60_000) return;
      this.lastFailureLog = now;
      this.o.logger.warn(
        { err: e.message.slice(0, 256) },
        "could not record a Kubernetes Event for a pod admitted without procview's files",
      );
    });
  }

  private async send(pod: PodIdentity, why: Unpatched, now: number): Promise<void> {
    const api = await (this.api ??= this.makeApi());
    const time = new Date(Math.floor(now / 1000) * 1000);
    const podName = pod.name ?? pod.generateName ?? "";
    const involvedObject = pod.controller
      ? { ...pod.controller, namespace: pod.namespace }
      : { apiVersion: "v1", kind: "Pod", name: podName, namespace: pod.namespace };
    await api.createNamespacedEvent({
      namespace: pod.namespace,
      body: {
        metadata: { generateName: "procview-", namespace: pod.namespace },
        involvedObject,
        reason: "ProcviewNotInjected",
        type: "Warning",
        message: `pod ${podName || "(unnamed)"} admitted without procview's files: ${why.message}`.slice(0, 1024),
        source: { component: "procview-webhook" },
        reportingComponent: "procview.io/webhook",
        reportingInstance: this.instance,
        firstTimestamp: time,
        lastTimestamp: time,
        count: 1,
      },
    });
  }

  private async makeApi() {
    const k8s = await loadK8s();
    return (await makeKubeConfig(this.o.kubeconfig)).makeApiClient(k8s.CoreV1Api);
  }
}
