// `procview webhook`: the server, its certificates (managed or from files), and shutdown.
import * as fs from "node:fs";
import pino from "pino";
import { UsageError } from "../errors";
import { notAfter, serviceDnsNames } from "./certs";
import { CertificateManager } from "./kube";
import { EventRecorder } from "./events";
import { mountTargets, volumeKind } from "./patch";
import { memorySetupGaps } from "./reclaim";
import { WebhookServer } from "./server";

export interface WebhookFlags {
  listen: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  namespace?: string;
  serviceName: string;
  secretName: string;
  webhookConfigName: string;
  kubeconfig?: string;
  files: string;
  mountpoint: string;
  volumes: string;
  /** Create a Kubernetes Event for each pod admitted without procview's files. */
  events: boolean;
  certValidity: string;
  caValidity: string;
  certCheckInterval: string;
  logLevel: string;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(flag: string, text: string): number {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(text);
  if (!m || Number(m[1]) <= 0) throw new UsageError(`${flag}: "${text}" is not a duration like 90s, 12h or 365d`);
  return Number(m[1]) * UNITS[m[2]];
}

export function parseListen(text: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(text);
  const port = Number(m?.[2]);
  if (!m || port < 0 || port > 65535) throw new UsageError(`--listen: "${text}" is not HOST:PORT (e.g. :8443)`);
  return { host: m[1].replace(/^\[|\]$/g, "") || "0.0.0.0", port };
}

function ownNamespace(flag?: string): string {
  if (flag) return flag;
  if (process.env.POD_NAMESPACE) return process.env.POD_NAMESPACE;
  try {
    return fs.readFileSync("/var/run/secrets/kubernetes.io/serviceaccount/namespace", "utf8").trim();
  } catch {
    return "procview-system";
  }
}

export async function runWebhook(f: WebhookFlags): Promise<number> {
  // JSON logs on stderr; stdout carries only the one "serving on" line.
  const logger = pino({ level: f.logLevel, base: { component: "webhook" } }, pino.destination(2));
  const listen = parseListen(f.listen);
  const namespace = ownNamespace(f.namespace);
  let kind;
  try {
    kind = volumeKind(f.volumes);
  } catch (e) {
    throw new UsageError(`--volumes: ${(e as Error).message}`);
  }
  let targets;
  try {
    targets = mountTargets(
      f.files
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean),
      f.mountpoint,
      true,
      kind,
    );
  } catch (e) {
    throw new UsageError(`--files: ${(e as Error).message}`);
  }
  if ((f.tlsCertFile === undefined) !== (f.tlsKeyFile === undefined))
    throw new UsageError("--tls-cert-file and --tls-key-file go together");
  const admission = { targets, protectedNamespaces: new Set(["kube-system", "kube-public", namespace]) };

  let manager: CertificateManager | undefined;
  // Certificate reloads can fire before the server exists; they reach it through here.
  const live: { server?: WebhookServer } = {};
  let tls: { cert: string; key: string };
  if (f.tlsCertFile && f.tlsKeyFile) {
    const certFile = f.tlsCertFile;
    const keyFile = f.tlsKeyFile;
    const read = () => ({ cert: fs.readFileSync(certFile, "utf8"), key: fs.readFileSync(keyFile, "utf8") });
    try {
      tls = read();
    } catch (e) {
      throw new UsageError(`cannot read the TLS files: ${(e as Error).message}`);
    }
    // cert-manager (or anyone) renews the files in place: pick the new pair up without a restart.
    fs.watchFile(certFile, { interval: 5000 }, () => {
      try {
        const next = read();
        live.server?.setTls(next, notAfter(next.cert));
        logger.info({ certFile }, "serving certificate reloaded");
      } catch (e) {
        logger.error({ err: (e as Error).message }, "could not reload the serving certificate; keeping the old one");
      }
    });
  } else {
    manager = new CertificateManager({
      kubeconfig: f.kubeconfig,
      namespace,
      secretName: f.secretName,
      webhookConfigName: f.webhookConfigName,
      policy: {
        dnsNames: serviceDnsNames(f.serviceName, namespace),
        certValidityMs: parseDuration("--cert-validity", f.certValidity),
        caValidityMs: parseDuration("--ca-validity", f.caValidity),
      },
      checkIntervalMs: parseDuration("--cert-check-interval", f.certCheckInterval),
      logger,
      onBundle: (b) => {
        live.server?.setTls({ cert: b.cert, key: b.key }, notAfter(b.cert));
        if (live.server) logger.info("serving certificate rotated");
      },
    });
    const b = await manager.start();
    tls = { cert: b.cert, key: b.key };
  }

  let recorder = f.events ? new EventRecorder({ kubeconfig: f.kubeconfig, logger }) : undefined;
  const noApi = await recorder?.connect();
  if (noApi) {
    logger.warn({ err: noApi }, "no Kubernetes API access: no Events for pods admitted without procview's files");
    recorder = undefined;
  }
  const server = new WebhookServer({
    host: listen.host,
    port: listen.port,
    tls,
    admission,
    logger,
    onUnpatched: recorder ? (pod, why) => recorder?.record(pod, why) : undefined,
  });
  live.server = server;
  server.setTls(tls, notAfter(tls.cert));
  const addr = await server.listen();
  logger.info({ address: `${addr.address}:${addr.port}`, namespace, files: targets.map((t) => t.mountPath) }, "webhook serving");
  process.stdout.write(`procview: webhook serving on ${addr.address}:${addr.port}\n`);
  const gaps = memorySetupGaps();
  if (gaps.length)
    logger.warn(
      { missing: gaps },
      `memory taken by bursts of large requests will not be returned; run with ${gaps.join(" and ")} as deploy/base/webhook.yaml does`,
    );

  return new Promise((resolve) => {
    const stop = async () => {
      logger.info("shutting down");
      if (f.tlsCertFile) fs.unwatchFile(f.tlsCertFile);
      await manager?.stop();
      await server.close();
      resolve(0);
    };
    process.once("SIGTERM", () => void stop());
    process.once("SIGINT", () => void stop());
  });
}
