// What the deploy kit says, read the way kubectl would read it.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { parseAllDocuments } from "yaml";

export const REPO = path.resolve(__dirname, "../../..");

/** The first object of `kind` in one of the kit's files, e.g. ("deploy/base/webhook.yaml", "Deployment"). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function kitObject(file: string, kind: string): any {
  const docs = parseAllDocuments(fs.readFileSync(path.join(REPO, file), "utf8")).map((d) => d.toJS());
  const o = docs.find((d) => d?.kind === kind);
  if (!o) throw new Error(`no ${kind} in ${file}`);
  return o;
}

/** The environment the kit's Deployment gives the webhook container (plain values only). */
export function webhookDeploymentEnv(): Record<string, string> {
  const deployment = kitObject("deploy/base/webhook.yaml", "Deployment");
  const env: { name: string; value?: string }[] = deployment.spec.template.spec.containers[0].env ?? [];
  return Object.fromEntries(env.filter((e) => e.value !== undefined).map((e) => [e.name, e.value as string]));
}

/** The first object of `kind` in a kustomization as `kubectl kustomize` renders it, e.g. ("deploy/overlays/csi", "DaemonSet"). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function renderedObject(dir: string, kind: string): any {
  const r = spawnSync("kubectl", ["kustomize", path.join(REPO, dir)], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`kubectl kustomize ${dir}: ${r.stderr || r.error?.message}`);
  const o = parseAllDocuments(r.stdout)
    .map((d) => d.toJS())
    .find((d) => d?.kind === kind);
  if (!o) throw new Error(`no ${kind} in ${dir}`);
  return o;
}
