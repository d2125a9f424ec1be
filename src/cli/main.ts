// procview's command line. Every failure is one line on stderr and a non-zero exit.
import * as os from "node:os";
import * as path from "node:path";
import { Command, CommanderError } from "commander";
import type { CsiOptions } from "../csi/node";
import { DEFAULT_MOUNTPOINT, serve } from "../daemon/serve";
import { UsageError } from "../errors";
import type { Report } from "../mounts/containers";
import { DEFAULT_PODS_DIR } from "../targets";
import { WEBHOOK_DEFAULTS } from "../webhook/defaults";
import type { WebhookFlags } from "../webhook/run";

function fail(message: string, code = 2): never {
  process.stderr.write(`procview: ${message}\n`);
  process.exit(code);
}

const STATE_DIR_HELP = "root-only records of the daemon (default: <mountpoint>.state)";

function csiOptions(o: { csiEndpoint?: string; csiPodsDir: string; csiNodeId?: string }): CsiOptions | undefined {
  if (!o.csiEndpoint) return undefined;
  const sock = o.csiEndpoint.replace(/^unix:\/\//, "");
  if (!path.isAbsolute(sock)) throw new UsageError(`--csi-endpoint ${o.csiEndpoint}: give an absolute unix socket path`);
  if (!path.isAbsolute(o.csiPodsDir)) throw new UsageError(`--csi-pods-dir ${o.csiPodsDir}: give an absolute path`);
  return { endpoint: sock, podsDir: path.resolve(o.csiPodsDir), nodeId: o.csiNodeId || process.env.NODE_NAME || os.hostname() };
}

function serveCommand(program: Command): void {
  program
    .command("serve")
    .description("mount the filesystem and serve it in the foreground")
    .option("--mountpoint <dir>", "where to mount", DEFAULT_MOUNTPOINT)
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .option("--no-cpu-quota", "show the whole cpuset, not ceil(CFS quota) CPUs")
    .option(
      "--on-exit <mode>",
      "upgrade: detach containers' mounts and record them for the next daemon; uninstall: detach and forget",
      "upgrade",
    )
    .option("--no-remount", "do not re-bind containers' stale or handed-over mounts at start")
    .option("--take-over", "if a daemon serves the mountpoint, take its connection over (an upgrade: the mount never goes away)")
    .option("--no-watchdog", "do not replace a serving process that leaves a read unanswered for 1 s")
    .option("--metrics-address <host:port>", "serve Prometheus metrics here (e.g. 127.0.0.1:9105)")
    .option("--csi-endpoint <socket>", "also serve CSI inline ephemeral volumes on this unix socket (unix:///csi/csi.sock)")
    .option("--csi-pods-dir <dir>", "the kubelet's pods directory: CSI volumes are mounted only inside it", DEFAULT_PODS_DIR)
    .option("--csi-node-id <name>", "the node's name for CSI (default: NODE_NAME or the hostname)")
    .action(
      async (o: {
        mountpoint: string;
        stateDir?: string;
        cpuQuota: boolean;
        onExit: string;
        remount: boolean;
        takeOver?: boolean;
        watchdog: boolean;
        metricsAddress?: string;
        csiEndpoint?: string;
        csiPodsDir: string;
        csiNodeId?: string;
      }) => {
        if (o.onExit !== "upgrade" && o.onExit !== "uninstall")
          throw new UsageError(`--on-exit: "${o.onExit}" is not upgrade or uninstall`);
        process.exitCode = await serve({ ...o, onExit: o.onExit, csi: csiOptions(o) });
      },
    );

  program
    .command("inspect")
    .description("show what a process sees through procview next to the host's values")
    .argument("<pid>", "process id (as seen from the host)")
    .option("--json", "print JSON instead of a table")
    .option("--mountpoint <dir>", "the daemon's mountpoint (its state directory has the load averages)", DEFAULT_MOUNTPOINT)
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .action(async (pid: string, o: { json?: boolean; mountpoint: string; stateDir?: string }) => {
      const { inspect } = await import("./inspect.js");
      process.stdout.write(inspect(pid, { json: Boolean(o.json), mountpoint: o.mountpoint, stateDir: o.stateDir }));
    });

  program
    .command("check")
    .description("exit 0 if the mount answers a read within the deadline, else say why and exit 1")
    .option("--mountpoint <dir>", "procview's mountpoint", DEFAULT_MOUNTPOINT)
    .option("--timeout-ms <ms>", "deadline for the read", "2000")
    .option("--state-dir <dir>", "the daemon's state directory (default: <mountpoint>.state)")
    .action(async (o: { mountpoint: string; timeoutMs: string; stateDir?: string }) => {
      const ms = Number(o.timeoutMs);
      if (!Number.isInteger(ms) || ms <= 0) throw new UsageError(`--timeout-ms: "${o.timeoutMs}" is not a positive number of milliseconds`);
      const { check } = await import("../toolkit/check.js");
      const r = await check(o.mountpoint, ms, o.stateDir);
      (r.ok ? process.stdout : process.stderr).write(`${r.ok ? "" : "procview: "}${r.message}\n`);
      // A read stuck in a hung daemon would keep the process alive: leave now.
      process.exit(r.ok ? 0 : 1);
    });
}

interface ContainerFlags {
  mountpoint: string;
  stateDir?: string;
  all?: boolean;
  pid?: string;
  containerId?: string;
}

/**
 * Which containers a toolkit command acts on. Malformed flags are usage errors (exit 2); no
 * such container, or an id that names several, is a plain failure (exit 1). Either way
 * nothing is touched.
 */
async function selected(o: ContainerFlags): Promise<string | undefined> {
  const chosen = [o.all, o.pid, o.containerId].filter((x) => x !== undefined && x !== false).length;
  if (chosen !== 1) throw new UsageError("say which containers: exactly one of --all, --pid PID, --container-id ID");
  const c = await import("../mounts/containers.js");
  if (o.pid !== undefined) {
    if (!/^\d+$/.test(o.pid)) throw new UsageError(`--pid: "${o.pid}" is not a process id`);
    return c.selectPid(Number(o.pid));
  }
  return o.containerId !== undefined ? c.selectContainerId(o.containerId) : undefined;
}

function printReport(verb: string, r: Report): void {
  process.stdout.write(
    `${verb} ${r.rebound + r.detached} mount(s) in ${r.containers} container(s)${r.failed.length ? `; ${r.failed.length} failed` : ""}\n`,
  );
  for (const f of r.failed) process.stderr.write(`procview: pid ${f.pid}: ${f.error}\n`);
  process.exitCode = r.failed.length ? 1 : 0;
}

function toolkitCommands(program: Command): void {
  const onContainers = (cmd: Command) =>
    cmd
      .option("--mountpoint <dir>", "procview's mountpoint", DEFAULT_MOUNTPOINT)
      .option("--state-dir <dir>", STATE_DIR_HELP)
      .option("--all", "every container")
      .option("--pid <pid>", "the container this process runs in")
      .option("--container-id <id>", `a container by its full id or a unique prefix of at least 12 characters`);

  onContainers(
    program
      .command("remount")
      .description("re-bind containers' stale procview mounts (and ones handed over by a stopped daemon) to the live filesystem"),
  ).action(async (o: ContainerFlags) => {
    const only = await selected(o);
    const { layoutOf, answers } = await import("../mounts/layout.js");
    const l = layoutOf(o.mountpoint, o.stateDir);
    if (!(await answers(l.fsDir))) throw new UsageError(`procview is not serving at ${l.anchor}: start procview serve first`);
    const { remountAll } = await import("../mounts/containers.js");
    printReport("re-bound", await remountAll(l, only));
  });

  onContainers(
    program.command("umount").description("remove procview's mounts from containers, so they read the host's files again"),
  ).action(async (o: ContainerFlags) => {
    const only = await selected(o);
    const { layoutOf } = await import("../mounts/layout.js");
    const { detachAll } = await import("../mounts/containers.js");
    printReport("detached", await detachAll(layoutOf(o.mountpoint, o.stateDir), { record: false, only }));
  });

  program
    .command("oci-hook")
    .description("OCI createRuntime/prestart hook: bind procview's files into the starting container (state JSON on stdin)")
    .option("--mountpoint <dir>", "procview's mountpoint", DEFAULT_MOUNTPOINT)
    .action(async (o: { mountpoint: string }) => {
      const { runHook, HookError } = await import("../toolkit/oci-hook.js");
      const { layoutOf } = await import("../mounts/layout.js");
      const chunks: Buffer[] = [];
      for await (const c of process.stdin) chunks.push(c as Buffer);
      try {
        const r = await runHook(Buffer.concat(chunks).toString("utf8"), layoutOf(o.mountpoint));
        for (const line of r.refused) process.stderr.write(`procview: oci-hook: ${line}\n`);
      } catch (e) {
        throw e instanceof HookError ? new UsageError(`oci-hook: ${e.message}`) : e;
      }
    });

  program
    .command("docker-args")
    .description("print the docker/podman run flags that mount procview's files")
    .option("--mountpoint <dir>", "procview's mountpoint", DEFAULT_MOUNTPOINT)
    .option("--no-remountable", "leave out the slave mount of the mountpoint that lets a restarted daemon re-bind")
    .action(async (o: { mountpoint: string; remountable: boolean }) => {
      const { dockerArgs } = await import("../toolkit/docker-args.js");
      process.stdout.write(`${dockerArgs(o.mountpoint, o.remountable).join(" ")}\n`);
    });
}

function webhookCommand(program: Command): void {
  program
    .command("webhook")
    .description("serve the Kubernetes mutating admission webhook that injects procview's mounts")
    .option("--listen <host:port>", "address to listen on", WEBHOOK_DEFAULTS.listen)
    .option("--tls-cert-file <file>", "serving certificate (PEM); with --tls-key-file, certificates are not managed")
    .option("--tls-key-file <file>", "serving key (PEM)")
    .option("--namespace <ns>", "the webhook's namespace (default: POD_NAMESPACE or the service account's)")
    .option("--service-name <name>", "the webhook's Service, for the certificate's DNS names", WEBHOOK_DEFAULTS.serviceName)
    .option("--secret-name <name>", "Secret that keeps the managed certificates", WEBHOOK_DEFAULTS.secretName)
    .option("--webhook-config-name <name>", "MutatingWebhookConfiguration whose caBundle is managed", WEBHOOK_DEFAULTS.webhookConfigName)
    .option("--kubeconfig <file>", "kubeconfig (default: in-cluster)")
    .option("--files <list>", "comma-separated container paths to mount over", WEBHOOK_DEFAULTS.files)
    .option("--mountpoint <dir>", "procview's mountpoint on the nodes", DEFAULT_MOUNTPOINT)
    .option(
      "--volumes <kind>",
      "hostPath: a hostPath volume per file; csi: one inline volume of procview's CSI driver (admitted by Pod Security baseline and restricted)",
      WEBHOOK_DEFAULTS.volumes,
    )
    .option("--no-events", "do not create a Kubernetes Event for each pod admitted without procview's files")
    .option("--cert-validity <duration>", "serving certificate lifetime", WEBHOOK_DEFAULTS.certValidity)
    .option("--ca-validity <duration>", "CA lifetime", WEBHOOK_DEFAULTS.caValidity)
    .option("--cert-check-interval <duration>", "how often to check the Secret and rotate", WEBHOOK_DEFAULTS.certCheckInterval)
    .option("--log-level <level>", "pino log level", WEBHOOK_DEFAULTS.logLevel)
    .action(async (o: WebhookFlags) => {
      // Loaded on use: the daemon need not carry the webhook's libraries.
      const { runWebhook } = await import("../webhook/run.js");
      process.exitCode = await runWebhook(o);
    });
}

export function buildProgram(): Command {
  const program = new Command("procview")
    .description("Container-aware /proc and /sys/devices/system/cpu over FUSE")
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  serveCommand(program);
  toolkitCommands(program);
  webhookCommand(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : 2);
    if (e instanceof UsageError) fail(e.message);
    fail(e instanceof Error ? e.message : String(e), 1);
  }
}

if (require.main === module) void main(process.argv);
