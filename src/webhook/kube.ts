// Keeps the webhook's certificates in a Secret and its CA in the MutatingWebhookConfiguration's
// caBundle, through the official Kubernetes client. Replicas race safely: whoever writes
// the Secret first wins, the others read what it wrote.
import type { Logger } from "pino";
import { type CertBundle, type CertPolicy, issueBundle, renewLeaf, rotationNeeded } from "./certs";

// @kubernetes/client-node is an ES module; this project is CommonJS, so it is loaded on use.
type K8s = typeof import("@kubernetes/client-node");
let k8sModule: Promise<K8s> | undefined;
export const loadK8s = (): Promise<K8s> => (k8sModule ??= import("@kubernetes/client-node"));

/** A kubeconfig file's configuration, or the pod's own (in-cluster) when there is no file. */
export async function makeKubeConfig(file?: string): Promise<InstanceType<K8s["KubeConfig"]>> {
  const kc = new (await loadK8s()).KubeConfig();
  if (file) kc.loadFromFile(file);
  else kc.loadFromCluster();
  return kc;
}

const KEYS = { caCert: "ca.crt", caKey: "ca.key", caBundle: "ca-bundle.crt", cert: "tls.crt", key: "tls.key" } as const;

export interface ManagerOptions {
  /** A kubeconfig file, or in-cluster configuration when undefined. */
  kubeconfig?: string;
  namespace: string;
  secretName: string;
  webhookConfigName: string;
  policy: CertPolicy;
  checkIntervalMs: number;
  logger: Logger;
  /** Called with every bundle the server should serve (the first one, and each rotation). */
  onBundle: (b: CertBundle) => void;
}

function statusOf(e: unknown): number | undefined {
  return typeof e === "object" && e !== null && "code" in e ? Number((e as { code: unknown }).code) : undefined;
}

function decodeSecret(data: Record<string, string> | undefined): CertBundle | undefined {
  if (!data) return undefined;
  const get = (k: string) => (data[k] ? Buffer.from(data[k], "base64").toString("utf8") : undefined);
  const b = { caCert: get(KEYS.caCert), caKey: get(KEYS.caKey), caBundle: get(KEYS.caBundle), cert: get(KEYS.cert), key: get(KEYS.key) };
  if (!b.caCert || !b.caKey || !b.cert || !b.key) return undefined;
  return { caCert: b.caCert, caKey: b.caKey, caBundle: b.caBundle ?? b.caCert, cert: b.cert, key: b.key };
}

function encodeSecret(b: CertBundle): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [field, key] of Object.entries(KEYS)) out[key] = Buffer.from(b[field as keyof CertBundle]).toString("base64");
  return out;
}

/** How long to wait before watching again after the API server ended a watch with an error. */
const REWATCH_MS = 2000;

/** The JSON Patch that puts the bundle's CA into every webhook whose caBundle differs. */
function caBundleOps(webhooks: { clientConfig?: { caBundle?: string } }[] | undefined, bundle: CertBundle) {
  const want = Buffer.from(bundle.caBundle).toString("base64");
  return (webhooks ?? []).flatMap((w, i) =>
    w.clientConfig?.caBundle === want ? [] : [{ op: "add", path: `/webhooks/${i}/clientConfig/caBundle`, value: want }],
  );
}

export class CertificateManager {
  private timer?: NodeJS.Timeout;
  private current?: CertBundle;
  private running?: Promise<void>;
  private stopped = false;
  private watchAbort?: AbortController;
  private republish: Promise<void> = Promise.resolve();
  private rewatch?: NodeJS.Timeout;

  constructor(private readonly o: ManagerOptions) {}

  private apiClients?: ReturnType<CertificateManager["makeApis"]>;

  private apis() {
    return (this.apiClients ??= this.makeApis());
  }

  private async makeApis() {
    const k8s = await loadK8s();
    const kc = await makeKubeConfig(this.o.kubeconfig);
    return { k8s, kc, core: kc.makeApiClient(k8s.CoreV1Api), admission: kc.makeApiClient(k8s.AdmissionregistrationV1Api) };
  }

  /** Makes sure a valid bundle is in the Secret and in the caBundle; returns the bundle. */
  async ensure(now = new Date()): Promise<CertBundle> {
    const { core } = await this.apis();
    const { namespace, secretName: name, policy, logger } = this.o;
    for (let attempt = 0; attempt < 5; attempt++) {
      let existing: { data?: Record<string, string>; metadata?: { resourceVersion?: string } } | undefined;
      try {
        existing = await core.readNamespacedSecret({ name, namespace });
      } catch (e) {
        if (statusOf(e) !== 404) throw e;
      }
      const bundle = decodeSecret(existing?.data);
      const reason = rotationNeeded(bundle, policy, now);
      if (!reason && bundle) {
        await this.publishCa(bundle);
        return bundle;
      }
      const next =
        bundle && (reason === "cert-expiring" || reason === "names-changed")
          ? await renewLeaf(bundle, policy, now)
          : await issueBundle(policy, now, bundle);
      const body = {
        apiVersion: "v1",
        kind: "Secret",
        type: "Opaque",
        metadata: { name, namespace, resourceVersion: existing?.metadata?.resourceVersion },
        data: encodeSecret(next),
      };
      try {
        if (existing) await core.replaceNamespacedSecret({ name, namespace, body });
        else await core.createNamespacedSecret({ namespace, body });
        logger.info({ secret: `${namespace}/${name}`, reason }, "certificates written");
        await this.publishCa(next);
        return next;
      } catch (e) {
        // 409: another replica wrote first (AlreadyExists or a stale resourceVersion): read theirs.
        if (statusOf(e) !== 409) throw e;
        logger.info({ secret: `${namespace}/${name}` }, "another replica wrote the certificates first; reading them");
      }
    }
    throw new Error(`secret ${namespace}/${name}: could not settle the certificates after 5 attempts`);
  }

  /** Writes the CA bundle into every webhook of the configuration whose caBundle differs. */
  private async publishCa(bundle: CertBundle): Promise<void> {
    const { admission, k8s } = await this.apis();
    const name = this.o.webhookConfigName;
    const cfg = await admission.readMutatingWebhookConfiguration({ name });
    const ops = caBundleOps(cfg.webhooks, bundle);
    if (ops.length === 0) return;
    await admission.patchMutatingWebhookConfiguration(
      { name, body: ops },
      k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.JsonPatch),
    );
    this.o.logger.info({ webhookConfiguration: name, webhooks: ops.length }, "caBundle updated");
  }

  private async tick(): Promise<void> {
    try {
      const b = await this.ensure();
      if (b.cert !== this.current?.cert || b.key !== this.current?.key) {
        this.current = b;
        this.o.onBundle(b);
      }
    } catch (e) {
      // Keep serving the certificate we have; try again at the next tick.
      this.o.logger.error({ err: e instanceof Error ? e.message : String(e) }, "certificate check failed");
    }
  }

  /**
   * The first bundle, then a check every interval (another replica may have rotated), and a
   * watch on the MutatingWebhookConfiguration: when it is re-applied or re-created without
   * our CA (kubectl apply of the kit empties the caBundle), the CA is written back at once.
   */
  async start(): Promise<CertBundle> {
    this.current = await this.ensure();
    this.o.onBundle(this.current);
    this.timer = setInterval(() => {
      this.running ??= this.tick().finally(() => (this.running = undefined));
    }, this.o.checkIntervalMs);
    this.timer.unref();
    await this.watchConfiguration();
    return this.current;
  }

  private async watchConfiguration(): Promise<void> {
    if (this.stopped) return;
    const { k8s, kc } = await this.apis();
    const name = this.o.webhookConfigName;
    const again = (err: unknown) => {
      if (this.stopped) return;
      if (err)
        this.o.logger.warn(
          { err: err instanceof Error ? err.message : String(err) },
          "watch on the webhook configuration ended; watching again",
        );
      this.rewatch = setTimeout(() => void this.watchConfiguration(), err ? REWATCH_MS : 100);
      this.rewatch.unref();
    };
    try {
      this.watchAbort = await new k8s.Watch(kc).watch(
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        { fieldSelector: `metadata.name=${name}` },
        (phase, obj: { webhooks?: { clientConfig?: { caBundle?: string } }[] }) => {
          const bundle = this.current;
          if ((phase !== "ADDED" && phase !== "MODIFIED") || !bundle) return;
          if (caBundleOps(obj.webhooks, bundle).length === 0) return;
          // After whatever is in flight (a tick may be writing the bundle already).
          this.republish = this.republish
            .then(() => this.publishCa(bundle))
            .catch((e) => this.o.logger.error({ err: e instanceof Error ? e.message : String(e) }, "caBundle not written back"));
        },
        again,
      );
    } catch (e) {
      again(e);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.rewatch);
    this.watchAbort?.abort();
    await this.running;
    await this.republish;
  }
}
