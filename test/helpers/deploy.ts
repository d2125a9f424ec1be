// What the deploy kit says, read the way kubectl would read it.
import * as fs from "node:fs";
import * as path from "node:path";
import { parseAllDocuments } from "yaml";

export const REPO = path.resolve(__dirname, "../../..");

/** The environment the kit's Deployment gives the webhook container (plain values only). */
export function webhookDeploymentEnv(): Record<string, string> {
  const docs = parseAllDocuments(fs.readFileSync(path.join(REPO, "deploy/base/webhook.yaml"), "utf8")).map((d) => d.toJS());
  const deployment = docs.find((d) => d?.kind === "Deployment");
  const env: { name: string; value?: string }[] = deployment.spec.template.spec.containers[0].env ?? [];
  return Object.fromEntries(env.filter((e) => e.value !== undefined).map((e) => [e.name, e.value as string]));
}
