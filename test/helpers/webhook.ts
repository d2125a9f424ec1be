// A webhook server on loopback with a certificate from our own CA, and a keep-alive
// HTTPS client that verifies it by the Service's DNS name, as kube-apiserver does.
import * as https from "node:https";
import pino from "pino";
import { type CertBundle, issueBundle, serviceDnsNames } from "../../src/webhook/certs";
import { DEFAULT_WEBHOOK_FILES, mountTargets } from "../../src/webhook/patch";
import { WebhookServer } from "../../src/webhook/server";

export const DNS_NAMES = serviceDnsNames("procview-webhook", "procview-system");
export const DAY = 86_400_000;

export interface Reply {
  status: number;
  body: string;
  json: () => Record<string, unknown>;
}

export class Client {
  private readonly agent: https.Agent;
  constructor(
    private readonly port: number,
    ca: string,
  ) {
    this.agent = new https.Agent({ keepAlive: true, maxSockets: 8, ca, servername: DNS_NAMES[0] });
  }

  request(method: string, path: string, body?: string | Buffer, contentType = "application/json"): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: "127.0.0.1",
          port: this.port,
          method,
          path,
          agent: this.agent,
          servername: DNS_NAMES[0],
          headers: body === undefined ? {} : { "content-type": contentType },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            resolve({ status: res.statusCode ?? 0, body: text, json: () => JSON.parse(text) });
          });
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  }

  post(path: string, body: unknown): Promise<Reply> {
    return this.request("POST", path, typeof body === "string" ? body : JSON.stringify(body));
  }

  close(): void {
    this.agent.destroy();
  }
}

export async function startWebhook(
  bundle?: CertBundle,
): Promise<{ server: WebhookServer; client: Client; bundle: CertBundle; port: number }> {
  const b = bundle ?? (await issueBundle({ dnsNames: DNS_NAMES, certValidityMs: 30 * DAY, caValidityMs: 300 * DAY }));
  const server = new WebhookServer({
    host: "127.0.0.1",
    port: 0,
    tls: { cert: b.cert, key: b.key },
    admission: {
      targets: mountTargets(DEFAULT_WEBHOOK_FILES, "/var/lib/procview"),
      protectedNamespaces: new Set(["kube-system", "kube-public", "procview-system"]),
    },
    logger: pino({ level: "silent" }),
  });
  const { port } = await server.listen();
  return { server, client: new Client(port, b.caBundle), bundle: b, port };
}
