// `procview serve`: the supervisor. It mounts the filesystem and keeps the /dev/fuse
// descriptor for the life of the mount; the serving process it starts can crash and be
// replaced on the same connection, so no container ever sees the mount go stale.
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import pino from "pino";
import { mountFuse } from "../fuse/mount";
import type { ChildConfig, FromChild, ToChild } from "./child";
import { LoadSampler } from "./loads";
import { fuseAt, type Layout, LayoutError, layoutOf, prepareAnchor, probe, removeAnchor, unmountFs } from "./layout";
import type { Snapshot } from "./counters";

export const DEFAULT_MOUNTPOINT = "/var/lib/procview";
export { FS_TYPE } from "./layout";

export type OnExit = "upgrade" | "uninstall";

export interface ServeOptions {
  mountpoint: string;
  cpuQuota: boolean;
  onExit: OnExit;
  metricsAddress?: string;
  /** Re-bind containers whose procview mounts are stale, and those a previous daemon handed over. */
  remount: boolean;
}

/** What the supervisor records; a no-op without --metrics-address. */
interface SupervisorMetrics {
  restarts: { inc(): void };
  remounts: { inc(labels: { action: string; result: string }, n: number): void };
  update(s: Snapshot): void;
  carryOver(): void;
}
const NO_METRICS: SupervisorMetrics = { restarts: { inc() {} }, remounts: { inc() {} }, update() {}, carryOver() {} };

/** A problem the operator must fix before serving; the message is the whole story. */
export class UsageError extends Error {}

/** True when a procview filesystem is mounted under `mountpoint` (answering or not). */
export function isMounted(mountpoint: string): boolean {
  return fuseAt(layoutOf(mountpoint).fsDir) !== undefined;
}

function preflight(dir: string): Layout {
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
  return layoutOf(fs.realpathSync(dir));
}

const RESTART_WINDOW_MS = 10_000;
// A small young generation: renders make short-lived strings only, and memory is the
// figure a node pays for three processes.
const CHILD_V8_FLAGS = ["--max-semi-space-size=1"];
const RESTARTS_BEFORE_BACKOFF = 20;

/** Runs until a signal; resolves with the process exit code. */
export async function serve(opts: ServeOptions): Promise<number> {
  const layout = preflight(path.resolve(opts.mountpoint));
  const log = pino({ level: process.env.PROCVIEW_LOG_LEVEL ?? "info", base: { component: "serve" } }, pino.destination(2));
  // Metrics first: a port already taken must fail before anything is mounted.
  // prom-client is loaded only when metrics are asked for: every MiB counts on every node.
  let metrics: SupervisorMetrics = NO_METRICS;
  let metricsServer: import("node:http").Server | undefined;
  if (opts.metricsAddress) {
    const m = new (await import("./daemon-metrics.js")).DaemonMetrics();
    try {
      metricsServer = await m.listen(opts.metricsAddress);
    } catch (e) {
      throw new UsageError(`--metrics-address ${opts.metricsAddress}: ${(e as Error).message}`);
    }
    metrics = m;
  }
  let replacedStale: boolean;
  try {
    ({ replacedStale } = await prepareAnchor(layout));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (replacedStale) log.warn({ fsDir: layout.fsDir }, "replaced a stale mount left by a daemon that died");
  const fd = mountFuse(layout.fsDir, { source: "procview", subtype: "procview" });

  // A reader of our output that goes away must not take the filesystem down with it.
  process.stdout.on("error", () => {});
  process.stderr.on("error", () => {});

  let stopping = false;
  let generation = 0;
  const sampler = new LoadSampler((loads) => active?.connected && active.send({ loads } satisfies ToChild));
  sampler.start();
  // One process serves; a standby, already loaded, waits to take over the moment it dies.
  let active: ChildProcess | undefined;
  let standby: ChildProcess | undefined;
  let standbyReady = false;
  let needServer = true;
  const recent: number[] = [];

  const promote = () => {
    if (!needServer || !standby || !standbyReady || stopping) return;
    active = standby;
    standby = undefined;
    standbyReady = false;
    needServer = false;
    const next = active;
    next.send({ go: true } satisfies ToChild, (e) => {
      // It died between "ready" and "go": its exit handler asks for the next standby.
      if (e) log.warn({ pid: next.pid, err: e.message }, "standby could not be told to serve");
    });
    // The load history survives its predecessor: hand it over at once.
    if (next.connected) next.send({ loads: sampler.table() } satisfies ToChild);
    spawnStandby();
  };

  const spawnStandby = () => {
    if (stopping || standby) return;
    const cfg: ChildConfig = { cpuQuota: opts.cpuQuota, generation: generation++ };
    const child = spawn(process.execPath, [...CHILD_V8_FLAGS, path.join(__dirname, "child.js")], {
      stdio: ["ignore", "inherit", "inherit", "ipc", fd],
      env: { ...process.env, PROCVIEW_CHILD: JSON.stringify(cfg) },
    });
    standby = child;
    // IPC to a process that just died reports here instead of throwing.
    child.on("error", (e) => log.warn({ pid: child.pid, err: e.message }, "serving process channel error"));
    let everReady = false;
    child.on("message", (m: FromChild) => {
      if ("watch" in m) {
        sampler.watch(m.watch);
      } else if ("ready" in m) {
        everReady = true;
        if (child === standby) {
          standbyReady = true;
          promote();
        }
      } else if (child === active) metrics.update(m);
    });
    child.once("exit", (code, signal) => {
      if (child === standby) {
        standby = undefined;
        standbyReady = false;
      }
      if (child === active) {
        active = undefined;
        metrics.carryOver();
        if (stopping) return;
        needServer = true;
        // The descriptor is still ours: the standby serves on the same connection.
        log.warn({ code, signal, pid: child.pid }, "serving process died; the standby takes over");
        metrics.restarts.inc();
      }
      if (stopping) return;
      // Back off only from processes that die before they are ready (a broken install),
      // never from one killed while serving: readers are waiting for its successor.
      const now = Date.now();
      if (!everReady) recent.push(now);
      while (recent.length && now - recent[0] > RESTART_WINDOW_MS) recent.shift();
      const delay = recent.length > RESTARTS_BEFORE_BACKOFF ? 1000 : 0;
      setTimeout(() => {
        spawnStandby();
        promote();
      }, delay);
    });
  };
  spawnStandby();

  return new Promise<number>((resolve) => {
    const stop = async (code: number) => {
      if (stopping) return;
      stopping = true;
      const { detachAll } = await import("../toolkit/containers.js");
      // Containers fall back to the host's own files rather than a mount that will go stale;
      // on upgrade the next daemon re-binds the ones recorded here.
      const report = detachAll(layout, { record: opts.onExit === "upgrade" });
      metrics.remounts.inc({ action: "detach", result: "ok" }, report.detached);
      log.info({ onExit: opts.onExit, ...report }, "detached containers' mounts");
      if (opts.onExit === "uninstall") removeAnchor(layout);
      else unmountFs(layout);
      // The serving process leaves its loop when the kernel reports the unmount (ENODEV).
      sampler.stop();
      standby?.kill("SIGKILL");
      const force = setTimeout(() => active?.kill("SIGKILL"), 3000);
      force.unref();
      const a = active;
      if (a && a.exitCode === null && a.signalCode === null) await new Promise((r) => a.once("exit", r));
      fs.closeSync(fd);
      metricsServer?.close();
      resolve(code);
    };
    process.once("SIGTERM", () => void stop(0));
    process.once("SIGINT", () => void stop(0));
    process.once("uncaughtException", (e) => {
      log.error({ err: e.message }, "supervisor failed");
      void stop(1);
    });
    const ready = async () => {
      // The first read goes through INIT and a full render: when it answers, we serve.
      // (Asynchronously: the event loop must stay free to tell the first process to serve.)
      const first = await probe(path.join(layout.fsDir, "proc/uptime"), 20_000);
      if (!first.ok) throw new Error(`${layout.fsDir} does not answer: ${first.message}`);
      process.stdout.write(`procview: serving ${layout.anchor} (pid ${process.pid})\n`);
      if (!opts.remount) return;
      const { remountAll } = await import("../toolkit/containers.js");
      const started = Date.now();
      const report = remountAll(layout);
      metrics.remounts.inc({ action: "rebind", result: "ok" }, report.rebound);
      metrics.remounts.inc({ action: "rebind", result: "failed" }, report.failed.length);
      if (report.containers) {
        log.info({ ...report, ms: Date.now() - started }, "re-bound containers' mounts");
        process.stdout.write(
          `procview: re-bound ${report.rebound} mount(s) in ${report.containers} container(s) in ${Date.now() - started} ms${report.failed.length ? `; ${report.failed.length} failed` : ""}\n`,
        );
      }
    };
    ready().catch((e: Error) => {
      if (e instanceof LayoutError || !stopping) log.error({ err: e.message }, "startup failed");
      void stop(1);
    });
  });
}
