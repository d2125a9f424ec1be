// `procview serve`: the supervisor. It mounts the filesystem and keeps the /dev/fuse
// descriptor for the life of the mount; the serving process it starts can crash and be
// replaced on the same connection, so no container ever sees the mount go stale. When a
// daemon already serves the mountpoint, the new one takes its connection over instead
// (./handover): the mount stays, and the old daemon, told to stop later, leaves it alone.
import * as fs from "node:fs";
import * as path from "node:path";
import pino, { type Logger } from "pino";
import { cgroupBlindness, HOST_CGROUP_FIX } from "../cgroup/host";
import { UsageError } from "../errors";
import { mountFuse, mountFusectl, unmountFusectl } from "../fuse/mount";
import { detachAll, remountAll } from "../mounts/containers";
import { bindTopDirs, type Layout, LayoutError, layoutOf, prepareAnchor, probe, removeAnchor, unmountFs } from "../mounts/layout";
import type { CsiNode, CsiOptions } from "../csi/node";
import { type Giver, HandoverServer, type Taken, takeOver } from "./handover";
import { type Adopted, NO_METRICS, ServingProcesses, type SupervisorMetrics } from "./supervisor";

export const DEFAULT_MOUNTPOINT = "/var/lib/procview";

export type OnExit = "upgrade" | "uninstall";

export interface ServeOptions {
  mountpoint: string;
  /** Root-only records (the handover); default: the mountpoint's sibling "<mountpoint>.state". */
  stateDir?: string;
  cpuQuota: boolean;
  onExit: OnExit;
  metricsAddress?: string;
  /** Re-bind containers whose procview mounts are stale, and those a previous daemon handed over. */
  remount: boolean;
  /** Kill (and replace) a serving process that leaves the watchdog's read unanswered for 1 s. */
  watchdog: boolean;
  /** Also serve CSI inline ephemeral volumes (the DaemonSet's CSI mode). */
  csi?: CsiOptions;
  /** A daemon already serving the mountpoint hands us its connection (an upgrade with no gap). */
  takeOver?: boolean;
}

function preflight(dir: string, stateDir?: string): Layout {
  if (process.getuid?.() !== 0) throw new UsageError("procview serve must run as root (it mounts a filesystem)");
  if (!fs.existsSync("/dev/fuse"))
    throw new UsageError("/dev/fuse does not exist: load the fuse module or pass the device to this container");
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new UsageError(`mountpoint ${dir} does not exist: create it first (mkdir -p ${dir})`);
  }
  if (!st.isDirectory()) throw new UsageError(`mountpoint ${dir} is not a directory`);
  return layoutOf(fs.realpathSync(dir), stateDir);
}

type MetricsServer = import("node:http").Server;

async function newMetrics(address?: string): Promise<SupervisorMetrics & { listen?(a: string): Promise<MetricsServer> }> {
  if (!address) return NO_METRICS;
  // prom-client is loaded only when metrics are asked for: every MiB counts on every node.
  return new (await import("./daemon-metrics.js")).DaemonMetrics();
}

async function listenMetrics(m: { listen?(a: string): Promise<MetricsServer> }, address?: string): Promise<MetricsServer | undefined> {
  if (!address || !m.listen) return undefined;
  try {
    return await m.listen(address);
  } catch (e) {
    throw new UsageError(`--metrics-address ${address}: ${(e as Error).message}`);
  }
}

/** After a handover: the address is the predecessor's until it has let go (milliseconds after our first answer). */
async function listenMetricsOnceFree(
  m: { listen?(a: string): Promise<MetricsServer> },
  address: string | undefined,
  log: Logger,
): Promise<MetricsServer | undefined> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await listenMetrics(m, address);
    } catch (e) {
      if (attempt === 50) {
        log.warn({ err: (e as Error).message }, "serving without metrics");
        return undefined;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** A daemon serving this mountpoint hands us its connection, if one does (see ./handover). */
async function askForConnection(layout: Layout): Promise<Taken | undefined> {
  try {
    return await takeOver(layout.handoverSocket);
  } catch (e) {
    throw new UsageError(`the daemon serving ${layout.anchor} did not hand its connection over: ${(e as Error).message}`);
  }
}

function adoptedFrom(t: Taken): Adopted {
  const { generation, loads, hostCpus } = t.offer;
  return { clocksFd: t.clocksFd, journalFd: t.journalFd, generation, loads, hostCpus };
}

const READY_WITHIN_MS = 20_000;

/**
 * Takes over from the predecessor once our serving thread is warm: it parks, and we serve.
 * Readers wait only between its last answer and our first.
 */
async function takeFrom(t: Taken, serving: ServingProcesses, log: Logger): Promise<void> {
  let how: "parked" | "gone";
  let started: number;
  try {
    // Well within the predecessor's patience (30 s), after which it refuses us.
    let timer: NodeJS.Timeout | undefined;
    const tooLong = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`our serving thread was not ready within ${READY_WITHIN_MS / 1000} s`)), READY_WITHIN_MS);
    });
    await Promise.race([serving.ready(), tooLong]).finally(() => clearTimeout(timer));
    started = Date.now();
    how = await t.take();
  } catch (e) {
    // It serves on: everything of ours goes.
    await serving.stop();
    t.abort();
    throw new UsageError(`the daemon serving (pid ${t.offer.pid}) did not hand its connection over: ${(e as Error).message}`);
  }
  serving.serveNow();
  if (how === "gone") log.warn({ from: t.offer.pid }, "the daemon handing over went away before it parked: serving its connection");
  process.stdout.write(`procview: took the connection over from pid ${t.offer.pid} in ${Date.now() - started} ms\n`);
}

/** No daemon serves the mountpoint: the anchor is made ready (a dead daemon's mount cleared) and the filesystem mounted. */
async function mountFresh(layout: Layout, log: Logger): Promise<number> {
  let replacedStale: boolean;
  try {
    ({ replacedStale } = await prepareAnchor(layout));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (replacedStale) log.warn({ fsDir: layout.fsDir }, "replaced a stale mount left by a daemon that died");
  return mountFuse(layout.fsDir, { source: layout.source, subtype: "procview" });
}

async function stopCsi(csi: { node?: CsiNode }, log: Logger): Promise<void> {
  const node = csi.node;
  csi.node = undefined;
  await node?.stop().catch((e: Error) => log.warn({ err: e.message }, "CSI plugin did not stop cleanly"));
}

/** The CSI node plugin, loaded only when asked for (gRPC is a few MiB on every node). */
async function startCsi(layout: Layout, o: CsiOptions, log: Logger): Promise<CsiNode> {
  const node = new (await import("../csi/node.js")).CsiNode(layout, o, log.child({ component: "csi" }));
  await node.start();
  process.stdout.write(`procview: CSI node plugin listening on ${o.endpoint}\n`);
  return node;
}

/**
 * The first read goes through INIT and a full render: when it answers, we serve. Then the
 * CSI plugin starts, if asked for, and containers are re-bound.
 */
async function whenServing(
  layout: Layout,
  opts: ServeOptions,
  log: Logger,
  metrics: SupervisorMetrics,
  csi: { node?: CsiNode },
  taken?: Taken,
): Promise<void> {
  const first = await probe(path.join(layout.fsDir, "proc/uptime"), 20_000);
  if (!first.ok) throw new Error(`${layout.fsDir} does not answer: ${first.message}`);
  // Answered by us: the predecessor lets go.
  taken?.serving();
  await bindTopDirs(layout);
  if (opts.csi) csi.node = await startCsi(layout, opts.csi, log);
  process.stdout.write(`procview: serving ${layout.anchor} (pid ${process.pid})\n`);
  if (!opts.remount) return;
  const started = Date.now();
  const report = await remountAll(layout);
  metrics.remounts.inc({ action: "rebind", result: "ok" }, report.rebound);
  metrics.remounts.inc({ action: "rebind", result: "failed" }, report.failed.length);
  if (!report.containers) return;
  const ms = Date.now() - started;
  log.info({ ...report, ms }, "re-bound containers' mounts");
  for (const f of report.failed) log.warn({ pid: f.pid, err: f.error }, "container not re-bound");
  process.stdout.write(
    `procview: re-bound ${report.rebound} mount(s) in ${report.containers} container(s) in ${ms} ms${report.failed.length ? `; ${report.failed.length} failed` : ""}\n`,
  );
}

/** What this daemon does when a successor takes its connection over (see ./handover). */
function giverOf(
  serving: ServingProcesses,
  csi: { node?: CsiNode },
  d: { layout: Layout; opts: ServeOptions; log: Logger; fd: number; closeMetrics: () => void; idle: { timer?: NodeJS.Timeout } },
): Giver {
  return {
    offer: () => serving.offer(),
    async park() {
      // Before the successor starts its own plugin on the same socket.
      await stopCsi(csi, d.log);
      return serving.park();
    },
    resume() {
      serving.resume();
      const o = d.opts.csi;
      if (o)
        startCsi(d.layout, o, d.log).then(
          (n) => (csi.node = n),
          (e: Error) => d.log.error({ err: e.message }, "CSI plugin did not start again"),
        );
    },
    async release(pid) {
      d.closeMetrics();
      await serving.release();
      fs.closeSync(d.fd);
      // Idle until told to stop: a daemon that exited would be restarted (systemd, the
      // kubelet) and take the connection back.
      d.idle.timer = setInterval(() => {}, 2 ** 30);
      process.stdout.write(`procview: handed the connection over to pid ${pid}; stopping now leaves the mounts to it\n`);
    },
  };
}

/** Runs until a signal; resolves with the process exit code. */
export async function serve(opts: ServeOptions): Promise<number> {
  const layout = preflight(path.resolve(opts.mountpoint), opts.stateDir);
  const blind = cgroupBlindness();
  if (blind)
    process.stderr.write(
      `procview: warning: cannot see the host's cgroup trees (${blind}): every container will read the host's figures; ${HOST_CGROUP_FIX}\n`,
    );
  const log = pino({ level: process.env.PROCVIEW_LOG_LEVEL ?? "info", base: { component: "serve" } }, pino.destination(2));
  const metrics = await newMetrics(opts.metricsAddress);
  const taken = opts.takeOver ? await askForConnection(layout) : undefined;
  // A port already taken must fail before anything is mounted; a predecessor's is ours once it parked.
  let metricsServer = taken ? undefined : await listenMetrics(metrics, opts.metricsAddress);
  const fd = taken ? taken.fuseFd : await mountFresh(layout, log);

  // A reader of our output that goes away must not take the filesystem down with it.
  process.stdout.on("error", () => {});
  process.stderr.on("error", () => {});

  const ownFusectl = mountFusectl();
  const serving = new ServingProcesses(
    fd,
    opts.cpuQuota,
    log,
    metrics,
    {
      probe: path.join(layout.fsDir, "proc/uptime"),
      watchdog: opts.watchdog,
      servingPid: layout.servingFile,
      clocks: layout.clocksFile,
      loads: layout.loadsFile,
    },
    taken && adoptedFrom(taken),
  );
  serving.start();
  if (taken) await takeFrom(taken, serving, log);

  const csi: { node?: CsiNode } = {};
  const idle: { timer?: NodeJS.Timeout } = {};
  const handover = new HandoverServer(
    layout.handoverSocket,
    giverOf(serving, csi, { layout, opts, log, fd, closeMetrics: () => metricsServer?.close(), idle }),
    log,
  );
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async (code: number) => {
      if (stopping) return;
      stopping = true;
      await handover.close();
      if (handover.handedOver) {
        // The mounts, the connection and the records are the successor's now.
        if (ownFusectl) unmountFusectl();
        clearInterval(idle.timer);
        return resolve(code);
      }
      await stopCsi(csi, log);
      // Containers fall back to the host's own files rather than a mount that will go stale;
      // on upgrade the next daemon re-binds the ones recorded here.
      const report = await detachAll(layout, { record: opts.onExit === "upgrade" });
      metrics.remounts.inc({ action: "detach", result: "ok" }, report.detached);
      log.info({ onExit: opts.onExit, ...report }, "detached containers' mounts");
      if (opts.onExit === "uninstall") removeAnchor(layout);
      else unmountFs(layout);
      // The serving process leaves its loop when the kernel reports the unmount (ENODEV).
      await serving.stop();
      fs.closeSync(fd);
      for (const f of [layout.servingFile, layout.loadsFile]) fs.rmSync(f, { force: true });
      if (ownFusectl) unmountFusectl();
      metricsServer?.close();
      resolve(code);
    };
    process.once("SIGTERM", () => void stop(0));
    process.once("SIGINT", () => void stop(0));
    process.once("uncaughtException", (e) => {
      log.error({ err: e.message }, "supervisor failed");
      void stop(1);
    });
    whenServing(layout, opts, log, metrics, csi, taken)
      .then(async () => {
        // The predecessor frees the metrics port once it has let go, just after our first answer.
        if (taken) metricsServer = await listenMetricsOnceFree(metrics, opts.metricsAddress, log);
        if (!stopping) await handover.listen();
      })
      .catch((e: Error) => {
        if (e instanceof LayoutError || !stopping) log.error({ err: e.message }, "startup failed");
        void stop(1);
      });
  });
}
