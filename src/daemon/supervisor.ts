// The serving processes: one serves on the inherited /dev/fuse descriptor, a standby,
// already loaded, waits to take over the moment it dies. Load averages live here, in the
// supervisor, so a crash of the serving process loses no history.
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Logger } from "pino";
import { openJournalFile, sharedMapHelper } from "../fuse/journal";
import { openClocksFile, possibleCpus, saveClocksFile } from "./clocks";
import { JOURNAL_FILE_SIZE } from "../fuse/server";
import { probe, writeStateRecord } from "../mounts/layout";
import type { ChildConfig, FromChild, ToChild } from "./child";
import type { Snapshot } from "./counters";
import { LoadSampler } from "./loads";

/** What the supervisor records; a no-op without --metrics-address. */
export interface SupervisorMetrics {
  restarts: { inc(): void };
  /** Serving processes the watchdog killed for not answering. */
  hangs: { inc(): void };
  remounts: { inc(labels: { action: string; result: string }, n: number): void };
  update(s: Snapshot): void;
  carryOver(): void;
}
export const NO_METRICS: SupervisorMetrics = {
  restarts: { inc() {} },
  hangs: { inc() {} },
  remounts: { inc() {} },
  update() {},
  carryOver() {},
};

const RESTART_WINDOW_MS = 10_000;
/**
 * The watchdog: a read through the mount every second; one that gets no answer within this
 * long means the serving process is hung (stopped, deadlocked, swapping) rather than slow
 * (reads take well under 0.2 s). It is killed; the standby takes over and the kernel resends
 * what it had read but not answered.
 */
export const HUNG_MS = 2000;
const WATCH_EVERY_MS = 1000;
/** How often the CPU clocks are saved besides at stop (a daemon killed outright loses what came since). */
const CLOCKS_SAVED_EVERY_MS = 30_000;

/**
 * Whether the kernel resends what a dead serving process had read to its successor
 * (FUSE_NOTIFY_RESEND, Linux 6.9+). Where it does not, the serving processes keep a
 * one-request journal instead (fuse/server), so a crash or the watchdog's kill never leaves a
 * read unanswered on either.
 */
export function kernelResends(release = os.release()): boolean {
  const [major, minor] = release.split(".").map((n) => Number.parseInt(n, 10));
  return major > 6 || (major === 6 && minor >= 9);
}
const RESTARTS_BEFORE_BACKOFF = 20;
// A small young generation: renders make short-lived strings only, and memory is the
// figure a node pays for three processes.
const CHILD_V8_FLAGS = ["--max-semi-space-size=1"];

/** A record for people and inspect: one the state directory cannot take (uninstalled) is skipped. */
function writeAtomically(file: string, text: string): void {
  try {
    writeStateRecord(file, text);
  } catch {
    // The state directory went away (uninstall).
  }
}

export class ServingProcesses {
  private stopping = false;
  private generation = 0;
  private active?: ChildProcess;
  private standby?: ChildProcess;
  private standbyReady = false;
  private needServer = true;
  private readonly recent: number[] = [];
  private readonly sampler: LoadSampler;
  private watchdog?: NodeJS.Timeout;
  private probing = false;
  /** The serving process the watchdog killed for hanging, if any. */
  private hungKilled?: ChildProcess;
  /** Whether the last serving process ended by a crash or a hang (not killed from outside). */
  private priorFailed = false;
  /** The serving processes' one-request journal, on kernels that cannot resend (see fuse/server). */
  // PROCVIEW_JOURNAL=off measures what the journal buys (the VM test bed does); nothing else should set it.
  private readonly hostCpus = possibleCpus();
  /** The containers' CPU clocks, shared by the serving processes (see ./clocks). */
  private readonly clocksFd?: number;
  private clocksSaver?: NodeJS.Timeout;
  private readonly journalFd = kernelResends() || process.env.PROCVIEW_JOURNAL === "off" ? undefined : openJournalFile(JOURNAL_FILE_SIZE);

  constructor(
    private readonly fd: number,
    private readonly cpuQuota: boolean,
    private readonly log: Logger,
    private readonly metrics: SupervisorMetrics,
    private readonly files: {
      /** A file of the mount that the watchdog reads (none: no watchdog). */
      probe?: string;
      /** Where the serving process's pid is written on each promotion (for `procview check`). */
      servingPid?: string;
      /** Where the containers' CPU clocks are saved for the next daemon (see ./clocks). */
      clocks?: string;
      /** Where the load table is written after each sample, for `procview inspect`. */
      loads?: string;
    } = {},
  ) {
    if (files.clocks) this.clocksFd = openClocksFile(this.hostCpus, files.clocks);
    this.sampler = new LoadSampler((loads) => {
      if (this.active?.connected) this.active.send({ loads } satisfies ToChild);
      if (files.loads) writeAtomically(files.loads, JSON.stringify(loads));
    });
  }

  start(): void {
    if (!sharedMapHelper()) {
      const journal =
        this.journalFd === undefined
          ? ""
          : "this kernel cannot resend a crashed serving process's request, so a crash in the microseconds after a read can leave that reader waiting for good; ";
      this.log.warn(
        { kernel: os.release() },
        `the native helper is not built: ${journal}a crashed serving process's successor restarts the containers' CPU clocks (their /proc/stat can step back); run npm ci with a C compiler to build build/Release/shared_map.node`,
      );
    }
    this.sampler.start();
    if (this.clocksFd !== undefined) {
      this.clocksSaver = setInterval(() => this.saveClocks(), CLOCKS_SAVED_EVERY_MS);
      this.clocksSaver.unref();
    }
    this.spawnStandby();
    const probeFile = this.files.probe;
    if (probeFile) {
      this.watchdog = setInterval(() => void this.watch(probeFile), WATCH_EVERY_MS);
      this.watchdog.unref();
    }
  }

  /** Kills a serving process that leaves a read unanswered for HUNG_MS. */
  private async watch(file: string): Promise<void> {
    const serving = this.active;
    if (this.probing || this.stopping || !serving || this.needServer) return;
    this.probing = true;
    try {
      const r = await probe(file, HUNG_MS);
      if (!r.ok && r.why === "timeout" && serving === this.active && !this.stopping) {
        this.metrics.hangs.inc();
        this.log.warn({ pid: serving.pid, waitedMs: HUNG_MS }, "serving process not answering: killing it; the standby takes over");
        this.hungKilled = serving;
        serving.kill("SIGKILL");
      }
    } finally {
      this.probing = false;
    }
  }

  /** Stops the standby at once; resolves when the serving process has left (the unmount ends its loop). */
  /** Saves the CPU clocks for the next daemon; a failure costs continuity only, so it is logged. */
  private saveClocks(): void {
    // No state directory: uninstalled, nothing to carry on.
    if (this.clocksFd === undefined || !this.files.clocks || !fs.existsSync(path.dirname(this.files.clocks))) return;
    try {
      saveClocksFile(this.clocksFd, this.hostCpus, this.files.clocks);
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, "could not save the CPU clocks");
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.watchdog);
    clearInterval(this.clocksSaver);
    this.sampler.stop();
    this.standby?.kill("SIGKILL");
    const a = this.active;
    const force = setTimeout(() => a?.kill("SIGKILL"), 3000);
    force.unref();
    if (a && a.exitCode === null && a.signalCode === null) await new Promise((r) => a.once("exit", r));
    clearTimeout(force);
    this.saveClocks();
  }

  private promote(): void {
    if (!this.needServer || !this.standby || !this.standbyReady || this.stopping) return;
    const next = this.standby;
    this.active = next;
    this.standby = undefined;
    this.standbyReady = false;
    this.needServer = false;
    next.send({ go: true, priorFailed: this.priorFailed } satisfies ToChild, (e) => {
      // It died between "ready" and "go": its exit handler asks for the next standby.
      if (e) this.log.warn({ pid: next.pid, err: e.message }, "standby could not be told to serve");
    });
    if (this.files.servingPid && next.pid) writeAtomically(this.files.servingPid, `${next.pid}\n`);
    // The load history survives its predecessor: hand it over at once.
    if (next.connected) next.send({ loads: this.sampler.table() } satisfies ToChild);
    this.spawnStandby();
  }

  private spawnStandby(): void {
    if (this.stopping || this.standby) return;
    const cfg: ChildConfig = {
      cpuQuota: this.cpuQuota,
      journal: this.journalFd !== undefined,
      clocks: this.clocksFd !== undefined,
      hostCpus: this.hostCpus,
      generation: this.generation++,
    };
    const child = spawn(process.execPath, [...CHILD_V8_FLAGS, path.join(__dirname, "child.js")], {
      stdio: ["ignore", "inherit", "inherit", "ipc", this.fd, this.journalFd ?? "ignore", this.clocksFd ?? "ignore"],
      env: { ...process.env, PROCVIEW_CHILD: JSON.stringify(cfg) },
    });
    this.standby = child;
    // IPC to a process that just died reports here instead of throwing.
    child.on("error", (e) => this.log.warn({ pid: child.pid, err: e.message }, "serving process channel error"));
    let everReady = false;
    child.on("message", (m: FromChild) => {
      if ("watch" in m) {
        this.sampler.watch(m.watch);
      } else if ("ready" in m) {
        everReady = true;
        if (child === this.standby) {
          this.standbyReady = true;
          this.promote();
        }
      } else if (child === this.active) this.metrics.update(m);
    });
    child.once("exit", (code, signal) => this.exited(child, everReady, code, signal));
  }

  private exited(child: ChildProcess, everReady: boolean, code: number | null, signal: NodeJS.Signals | null): void {
    if (child === this.standby) {
      this.standby = undefined;
      this.standbyReady = false;
    }
    if (child === this.active) {
      this.active = undefined;
      // A crash, or a hang the watchdog ended, may be the request's doing; a SIGKILL from
      // outside (the OOM killer, an operator) is not (see fuse/journal: poison requests).
      this.priorFailed = signal !== "SIGKILL" || this.hungKilled === child;
      this.metrics.carryOver();
      if (this.stopping) return;
      this.needServer = true;
      // The descriptor is still ours: the standby serves on the same connection.
      this.log.warn({ code, signal, pid: child.pid }, "serving process died; the standby takes over");
      this.metrics.restarts.inc();
    }
    if (this.stopping) return;
    // Back off only from processes that die before they are ready (a broken install),
    // never from one killed while serving: readers are waiting for its successor.
    const now = Date.now();
    if (!everReady) this.recent.push(now);
    while (this.recent.length && now - this.recent[0] > RESTART_WINDOW_MS) this.recent.shift();
    const delay = this.recent.length > RESTARTS_BEFORE_BACKOFF ? 1000 : 0;
    setTimeout(() => {
      this.spawnStandby();
      this.promote();
    }, delay);
  }
}
