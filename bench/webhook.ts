// npm run bench:webhook: admissions/s and latency of the real `procview webhook` process
// over TLS with keep-alive on loopback, 8 concurrent connections from wrk (Debian's wrk;
// one wrk thread, so the load generator shares the 2 cores as in the Go comparison).
// Each request is a Deployment-made pod that gets the full patch. Bounded: 2 s + 10 s.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { issueBundle, serviceDnsNames } from "../src/webhook/certs";
import { admissionReview, deploymentPod } from "../test/helpers/admission";
import { webhookDeploymentEnv } from "../test/helpers/deploy";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = 8;

async function main(): Promise<void> {
  if (spawnSync("wrk", ["--version"]).error) throw new Error("wrk is needed: apt-get install wrk");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "procview-bench-webhook-"));
  const b = await issueBundle({
    dnsNames: serviceDnsNames("procview-webhook", "procview-system"),
    certValidityMs: 86_400_000,
    caValidityMs: 86_400_000,
  });
  fs.writeFileSync(path.join(dir, "tls.crt"), b.cert);
  fs.writeFileSync(path.join(dir, "tls.key"), b.key);
  const body = JSON.stringify(admissionReview(deploymentPod()));
  fs.writeFileSync(
    path.join(dir, "post.lua"),
    `wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = ${JSON.stringify(body)}\n`,
  );

  const bin = path.resolve(__dirname, "../../bin/procview");
  const args = [
    "webhook",
    "--tls-cert-file",
    path.join(dir, "tls.crt"),
    "--tls-key-file",
    path.join(dir, "tls.key"),
    "--listen",
    "127.0.0.1:0",
    "--log-level",
    "warn",
  ];
  // Run as the image and the Deployment run it (its shebang's node flags, jemalloc).
  const hook = spawn(bin, args, { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...webhookDeploymentEnv() } });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      hook.stdout.on("data", (d) => {
        const m = /serving on [^:]+:(\d+)/.exec(String(d));
        if (m) resolve(Number(m[1]));
      });
      hook.once("exit", (code) => reject(new Error(`webhook exited ${code}`)));
    });
    const url = `https://127.0.0.1:${port}/mutate`;
    const wrk = (secs: number) =>
      spawnSync("wrk", ["-t1", `-c${CONNECTIONS}`, `-d${secs}s`, "--latency", "-s", path.join(dir, "post.lua"), url], { encoding: "utf8" })
        .stdout;
    wrk(2); // warm-up: JIT and TLS sessions
    const out = wrk(SECONDS);
    const rate = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
    const pct = (p: string) =>
      /(\d+(?:\.\d+)?)(us|ms|s)\b/.exec(new RegExp(`^\\s+${p}%\\s+(\\S+)`, "m").exec(out)?.[1] ?? "")?.slice(1) ?? [];
    const ms = (v: string[]) => (v.length ? Number(v[0]) * ({ us: 0.001, ms: 1, s: 1000 } as Record<string, number>)[v[1]] : Number.NaN);
    const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
    const rss = Number(/^VmRSS:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${hook.pid}/status`, "utf8"))?.[1] ?? 0) / 1024;
    const rows = [
      ["admissions/s", rate.toFixed(0)],
      ["p50 latency (ms)", ms(pct("50")).toFixed(2)],
      ["p99 latency (ms)", ms(pct("99")).toFixed(2)],
      ["non-2xx responses", String(non2xx)],
      ["webhook RSS (MiB)", rss.toFixed(1)],
    ];
    process.stdout.write(
      `| ${CONNECTIONS} keep-alive TLS connections, ${SECONDS} s, pod of ${body.length} bytes | procview webhook |\n|---|---|\n`,
    );
    for (const [k, v] of rows) process.stdout.write(`| ${k} | ${v} |\n`);
  } finally {
    hook.kill("SIGTERM");
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`bench:webhook: ${e instanceof Error ? e.message : e}\n`);
  process.exit(1);
});
