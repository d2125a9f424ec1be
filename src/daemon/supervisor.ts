// Who answers the connection. A serving process (a child) serves on the inherited /dev/fuse
// descriptor. Beside it, the supervisor keeps a serving thread of its own, warm and parked:
// the moment the child dies (or hangs and is killed), that thread serves, at once and for as
// long as it takes a new child to start and warm up; then it parks again and hands the
// connection back. So a crash never waits for a process to start, however often they come,
// and only two processes run. Load averages live here too, so a crash loses no history.
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Logger } from "pino";
import { openJournalFile, sharedMapHelper } from "../fuse/journal";
import { clocksFileSize, openClocksFile, possibleCpus, saveClocksFile } from "./clocks";
import { JOURNAL_FILE_SIZE } from "../fuse/server";
import { probe, writeStateRecord } from "../mounts/layout";
import type { ChildConfig, FromChild, ToChild } from "./child";
import { METRICS_SLOTS, type Snapshot, snapshot } from "./counters";
import { LoadSampler, type LoadTable } from "./loads";
import { type FromWorker, ServingThread } from "./serving-thread";
import type { Giver } from "./handover";

/** What a predecessor daemon handed over with its connection (see ./handover). */
export interface Adopted {
  clocksFd?: number;
  journalFd?: number;
  generation: number;
  loads: LoadTable;
  hostCpus: number;
}

/** What the supervisor records; a no-op without --metrics-address. */
export interface SupervisorMetrics {
  restarts: { inc(): void };
  /** Serving processes (or the supervisor's own thread) the watchdog ended for not answering. */
  hangs: { inc(): void };
  /** Who answers the connection now. */
  servedBy(by: ServedBy): void;
  remounts: { inc(labels: { action: string; result: string }, n: number): void };
  /** What the serving process (`child`) or the supervisor's serving thread (`bridge`) counted since it started. */
  update(s: Snapshot, from?: Source): void;
  /** That one is gone: keep what it counted. */
  carryOver(from?: Source): void;
}
export type Source = "child" | "bridge";
/** The serving process, the supervisor's own thread, or no one (between a death and the next). */
export type ServedBy = "process" | "supervisor-thread" | "none";
export const NO_METRICS: SupervisorMetrics = {
  restarts: { inc() {} },
  hangs: { inc() {} },
  servedBy() {},
  remounts: { inc() {} },
  update() {},
  carryOver() {},
};

const RESTART_WINDOW_MS = 10_000;
/**
 * The watchdog: a read through the mount every half second; one that gets no answer within
 * this long means the serving process is hung (stopped, deadlocked, swapping) rather than
 * slow (reads take well under 0.2 s). It is killed; the supervisor's thread takes over within
 * milliseconds and is answered what the dead one had read (resent by the kernel, or from the
 * journal), so a mistaken kill costs a process start, no reader anything.
 */
export const HUNG_MS = 1000;
const WATCH_EVERY_MS = 500;
/**
 * The supervisor's own thread is given longer: ending it leaves no one serving until it is
 * started again or a serving process is ready.
 */
const BRIDGE_HUNG_MS = 5 * HUNG_MS;
/** How often the CPU clocks are saved besides at stop (a daemon killed outright loses what came since). */
const CLOCKS_SAVED_EVERY_MS = 30_000;
/** How long a serving process or thread gets to park for a handover (it finishes the request in hand). */
const PARK_WITHIN_MS = 5000;

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
/** The supervisor's serving thread: a heap it cannot outgrow (a runaway ends the thread, not the supervisor). */
const BRIDGE_LIMITS = { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 256 };
// A small young generation: renders make short-lived strings only, and memory is the
// figure a node pays for two processes. V8's size-over-speed mode keeps the serving process's
// heap smaller under load (PSS right after 8 readers: 35.8-36.7 MiB, against 42.0-44.3
// without), at no cost measured in reads/s.
const CHILD_V8_FLAGS = ["--max-semi-space-size=1", "--optimize-for-size"];

/** A record for people and inspect: one the state directory cannot take (uninstalled) is skipped. */
function writeAtomically(file: string, text: string): void {
  try {
    writeStateRecord(file, text);
  } catch {
    // The state directory went away (uninstall).
  }
}

/** A file's size, or -1 for a descriptor that is not one. */
function sizeOf(fd: number): number {
  try {
    return fs.fstatSync(fd).size;
  } catch {
    return -1;
  }
}

export class ServingProcesses implements Giver {
  private stopping = false;
  private generation = 0;
  /** No one is given the connection: a newcomer until its predecessor parked, a giver while it hands over. */
  private holding = false;
  /** Handing the connection over (see ./handover): no new serving process, no watchdog. */
  private handingOver = false;
  private readonly parkWaiters: (() => void)[] = [];
  /** Handed-over files that did not fit (another layout), closed once we serve. */
  private readonly unused: number[] = [];
  private readyWaiters: (() => void)[] = [];
  /** Who answers the connection now: a serving process, the supervisor's own thread, or no one (for the moment). */
  private serving?: ChildProcess | "bridge";
  /** The next serving process, starting or warm (`nextReady`). */
  private next?: ChildProcess;
  private nextReady = false;
  private readonly bridge: {
    thread?: ServingThread;
    warm: boolean;
    state: "idle" | "serving" | "parking";
    metrics: SharedArrayBuffer;
  } = {
    warm: false,
    state: "idle",
    metrics: new SharedArrayBuffer(METRICS_SLOTS * 8),
  };
  private readonly recent: number[] = [];
  private readonly sampler: LoadSampler;
  private watchdog?: NodeJS.Timeout;
  private bridgeReport?: NodeJS.Timeout;
  private probing = false;
  /** The serving process the watchdog killed for hanging, if any. */
  private hungKilled?: ChildProcess;
  /** Whether the last one to serve ended by a crash or a hang (not killed from outside). */
  private priorFailed = false;
  /** The serving processes' one-request journal, on kernels that cannot resend (see fuse/server). */
  // PROCVIEW_JOURNAL=off measures what the journal buys (the VM test bed does); nothing else should set it.
  private readonly hostCpus = possibleCpus();
  /** The containers' CPU clocks, shared by the serving processes (see ./clocks). */
  private readonly clocksFd?: number;
  private clocksSaver?: NodeJS.Timeout;
  private readonly journalFd?: number;

  constructor(
    private readonly fd: number,
    private readonly cpuQuota: boolean,
    private readonly log: Logger,
    private readonly metrics: SupervisorMetrics,
    private readonly files: {
      /** A file of the mount: read by the watchdog (with `watchdog`), and to wake the supervisor's thread to park. */
      probe: string;
      watchdog?: boolean;
      /** Where the serving pid is written whenever another takes over (for `procview check`). */
      servingPid?: string;
      /** Where the containers' CPU clocks are saved for the next daemon (see ./clocks). */
      clocks?: string;
      /** Where the load table is written after each sample, for `procview inspect`. */
      loads?: string;
    },
    /** A predecessor's connection: its shared files are used where they fit, and nothing serves until serveNow(). */
    adopt?: Adopted,
  ) {
    // The predecessor's clocks carry on exactly where they fit (same layout); else the saved ones.
    if (adopt?.clocksFd !== undefined && adopt.hostCpus === this.hostCpus && sizeOf(adopt.clocksFd) === clocksFileSize(this.hostCpus))
      this.clocksFd = adopt.clocksFd;
    else {
      if (adopt?.clocksFd !== undefined) this.unused.push(adopt.clocksFd);
      if (files.clocks) this.clocksFd = openClocksFile(this.hostCpus, files.clocks);
    }
    const journal = !kernelResends() && process.env.PROCVIEW_JOURNAL !== "off";
    // Its journal too: a request its last serving process read and never answered is answered from it.
    if (journal && adopt?.journalFd !== undefined && sizeOf(adopt.journalFd) === JOURNAL_FILE_SIZE) this.journalFd = adopt.journalFd;
    else {
      if (adopt?.journalFd !== undefined) this.unused.push(adopt.journalFd);
      if (journal) this.journalFd = openJournalFile(JOURNAL_FILE_SIZE);
    }
    this.sampler = new LoadSampler((loads) => {
      this.handLoads(loads);
      if (files.loads) writeAtomically(files.loads, JSON.stringify(loads));
    });
    if (adopt) {
      // Its handles may still be open: ours must not take their numbers.
      this.generation = adopt.generation;
      this.sampler.seed(adopt.loads);
      this.holding = true;
    }
  }

  /** Resolves once something of ours can serve at once (the supervisor's thread warm, or a serving process ready). */
  ready(): Promise<void> {
    if (this.bridge.warm || this.nextReady) return Promise.resolve();
    return new Promise((r) => this.readyWaiters.push(r));
  }

  /** The predecessor parked: serve. Its files we could not use go (until then they are the handover's to close). */
  serveNow(): void {
    for (const fd of this.unused.splice(0)) fs.closeSync(fd);
    this.holding = false;
    this.decide();
  }

  // ---- handing over to a successor (see ./handover)

  offer() {
    return {
      fuseFd: this.fd,
      clocksFd: this.clocksFd,
      journalFd: this.journalFd,
      // Room for the processes started while the successor warms up.
      generation: this.generation + 64,
      loads: this.sampler.table(),
      hostCpus: this.hostCpus,
    };
  }

  /** Stops serving: no new serving process, and whoever serves parks after the request in hand. */
  async park(): Promise<boolean> {
    this.holding = true;
    this.handingOver = true;
    this.next?.kill("SIGKILL");
    const serving = this.serving;
    if (serving === undefined) return true;
    const parked = new Promise<void>((r) => this.parkWaiters.push(r));
    if (serving === "bridge") {
      this.bridge.state = "parking";
      this.bridge.thread?.park();
    } else serving.send({ park: true } satisfies ToChild, () => {});
    // A loop parks after a request: readers send them, and so do we until it has.
    let done = false;
    void parked.then(() => (done = true));
    for (const end = Date.now() + PARK_WITHIN_MS; !done && Date.now() < end;) await Promise.race([parked, probe(this.files.probe, 200)]);
    return done;
  }

  /** The successor failed: serve again. */
  resume(): void {
    this.handingOver = false;
    this.holding = false;
    this.spawnNext();
    this.decide();
  }

  /** The successor serves: stop everything and let go of the shared files (the caller closes the connection). */
  async release(): Promise<void> {
    await this.stop();
    for (const fd of [this.clocksFd, this.journalFd]) if (fd !== undefined) fs.closeSync(fd);
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
    this.bridgeReport = setInterval(() => this.metrics.update(snapshot(this.bridge.metrics), "bridge"), 1000);
    this.bridgeReport.unref();
    this.startBridge();
    this.spawnNext();
    if (this.files.watchdog) {
      this.watchdog = setInterval(() => void this.watch(this.files.probe), WATCH_EVERY_MS);
      this.watchdog.unref();
    }
  }

  /** Ends whoever serves if it leaves a read unanswered for HUNG_MS (BRIDGE_HUNG_MS). */
  private async watch(file: string): Promise<void> {
    const serving = this.serving;
    if (this.probing || this.stopping || this.handingOver || !serving) return;
    this.probing = true;
    try {
      const waitedMs = serving === "bridge" ? BRIDGE_HUNG_MS : HUNG_MS;
      const r = await probe(file, waitedMs);
      if (!r.ok && r.why === "timeout" && serving === this.serving && !this.stopping) {
        this.metrics.hangs.inc();
        if (serving === "bridge") {
          this.log.warn({ waitedMs }, "the supervisor's serving thread is not answering: ending it");
          void this.bridge.thread?.worker.terminate();
        } else {
          this.log.warn({ pid: serving.pid, waitedMs }, "serving process not answering: killing it; the supervisor's thread takes over");
          this.hungKilled = serving;
          serving.kill("SIGKILL");
        }
      }
    } finally {
      this.probing = false;
    }
  }

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

  /** Resolves when whoever serves has left (the unmount ends its loop); the rest are stopped at once. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.watchdog);
    clearInterval(this.clocksSaver);
    clearInterval(this.bridgeReport);
    this.sampler.stop();
    this.next?.kill("SIGKILL");
    const serving = this.serving;
    const thread = this.bridge.thread;
    if (serving && serving !== "bridge") {
      const force = setTimeout(() => serving.kill("SIGKILL"), 3000);
      force.unref();
      if (serving.exitCode === null && serving.signalCode === null) await new Promise((r) => serving.once("exit", r));
      clearTimeout(force);
    }
    if (thread) {
      // Serving, it leaves on the unmount; parked, it waits for a go that will not come.
      const force = setTimeout(() => void thread.worker.terminate(), serving === "bridge" ? 3000 : 0);
      await new Promise((r) => thread.worker.once("exit", r));
      clearTimeout(force);
    }
    this.saveClocks();
  }

  /** Gives the connection to whoever should have it: a warm serving process, else the supervisor's thread. */
  private decide(): void {
    if (this.stopping) return;
    const childReady = this.next !== undefined && this.nextReady;
    if (childReady || this.bridge.warm) for (const r of this.readyWaiters.splice(0)) r();
    if (this.holding) return;
    if (this.serving === undefined) {
      if (childReady) this.goChild();
      else if (this.bridge.warm && this.bridge.state === "idle") this.goBridge();
    } else if (this.serving === "bridge" && this.bridge.state === "serving" && childReady) {
      // Park after the request it is answering; the read below is such a request when none comes.
      this.bridge.state = "parking";
      this.bridge.thread?.park();
      void probe(this.files.probe, HUNG_MS);
    }
  }

  private nobodyServes(): void {
    this.serving = undefined;
    this.metrics.servedBy("none");
    for (const r of this.parkWaiters.splice(0)) r();
  }

  private goChild(): void {
    const child = this.next as ChildProcess;
    this.next = undefined;
    this.nextReady = false;
    this.serving = child;
    this.metrics.servedBy("process");
    child.send({ go: true, priorFailed: this.priorFailed } satisfies ToChild, (e) => {
      // It died between "ready" and "go": its exit handler hands over again.
      if (e) this.log.warn({ pid: child.pid, err: e.message }, "serving process could not be told to serve");
    });
    this.priorFailed = false;
    if (this.files.servingPid && child.pid) writeAtomically(this.files.servingPid, `${child.pid}\n`);
    // The load history survives its predecessor: hand it over at once.
    this.handLoads(this.sampler.table());
  }

  /** The load table, to whoever serves. */
  private handLoads(loads: LoadTable): void {
    const s = this.serving;
    if (s === "bridge") this.bridge.thread?.loads(loads);
    else if (s?.connected) s.send({ loads } satisfies ToChild);
  }

  private goBridge(): void {
    this.serving = "bridge";
    this.metrics.servedBy("supervisor-thread");
    this.bridge.state = "serving";
    // Before the go: its first request already sees the load history.
    this.handLoads(this.sampler.table());
    this.bridge.thread?.go(this.priorFailed);
    this.priorFailed = false;
    if (this.files.servingPid) writeAtomically(this.files.servingPid, `${process.pid}\n`);
  }

  /** The supervisor's serving thread: the same code as a serving process's, on the supervisor's descriptor. */
  private startBridge(): void {
    if (this.stopping) return;
    new Float64Array(this.bridge.metrics).fill(0);
    const thread = new ServingThread(
      {
        fd: this.fd,
        journalFd: this.journalFd,
        clocksFd: this.clocksFd,
        hostCpus: this.hostCpus,
        cpuQuota: this.cpuQuota,
        generation: this.generation++,
        metrics: this.bridge.metrics,
      },
      BRIDGE_LIMITS,
      (dir) => this.sampler.watch(dir),
    );
    Object.assign(this.bridge, { thread, warm: false, state: "idle" });
    thread.worker.on("message", (m: FromWorker) => {
      if (thread !== this.bridge.thread) return;
      if ("warm" in m) this.bridge.warm = true;
      else {
        this.bridge.state = "idle";
        if (this.serving === "bridge") this.nobodyServes();
      }
      this.decide();
    });
    thread.worker.on("error", (e) => this.log.warn({ err: e.message }, "the supervisor's serving thread failed"));
    thread.worker.once("exit", () => {
      if (thread !== this.bridge.thread) return;
      this.metrics.update(snapshot(this.bridge.metrics), "bridge");
      this.metrics.carryOver("bridge");
      this.bridge.thread = undefined;
      this.bridge.warm = false;
      thread.close();
      if (this.stopping) return;
      if (this.serving === "bridge") {
        this.nobodyServes();
        this.priorFailed = true;
        this.log.warn("the supervisor's serving thread ended; the serving process takes over when ready");
      }
      this.bridge.state = "idle";
      // Not at once: a thread that cannot start would otherwise be restarted in a loop.
      setTimeout(() => this.startBridge(), 1000).unref();
      this.decide();
    });
  }

  private spawnNext(): void {
    if (this.stopping || this.handingOver || this.next) return;
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
    this.next = child;
    this.nextReady = false;
    // IPC to a process that just died reports here instead of throwing.
    child.on("error", (e) => this.log.warn({ pid: child.pid, err: e.message }, "serving process channel error"));
    let everReady = false;
    child.on("message", (m: FromChild) => {
      if ("watch" in m) {
        this.sampler.watch(m.watch);
      } else if ("parked" in m) {
        // Parked for a handover: it holds no request; the successor serves from here.
        if (child === this.serving) {
          this.nobodyServes();
          child.kill("SIGKILL");
        }
      } else if ("ready" in m) {
        everReady = true;
        if (child === this.next) {
          this.nextReady = true;
          this.decide();
        }
      } else if (child === this.serving) this.metrics.update(m);
    });
    child.once("exit", (code, signal) => this.exited(child, everReady, code, signal));
  }

  private exited(child: ChildProcess, everReady: boolean, code: number | null, signal: NodeJS.Signals | null): void {
    if (child === this.next) {
      this.next = undefined;
      this.nextReady = false;
    }
    if (child === this.serving) {
      this.nobodyServes();
      // A crash, or a hang the watchdog ended, may be the request's doing; a SIGKILL from
      // outside (the OOM killer, an operator) is not (see fuse/journal: poison requests).
      this.priorFailed = signal !== "SIGKILL" || this.hungKilled === child;
      this.metrics.carryOver();
      if (this.stopping) return;
      this.log.warn({ code, signal, pid: child.pid }, "serving process died; the supervisor's thread takes over");
      this.metrics.restarts.inc();
      this.decide();
    }
    if (this.stopping) return;
    // Back off only from processes that die before they are ready (a broken install),
    // never from one killed while serving.
    const now = Date.now();
    if (!everReady) this.recent.push(now);
    while (this.recent.length && now - this.recent[0] > RESTART_WINDOW_MS) this.recent.shift();
    const delay = this.recent.length > RESTARTS_BEFORE_BACKOFF ? 1000 : 0;
    // Said once per run of such deaths: a broken install would otherwise only show as a quiet loop.
    if (!everReady && this.recent.length === RESTARTS_BEFORE_BACKOFF + 1)
      this.log.warn(
        { code, signal, pid: child.pid, withinMs: RESTART_WINDOW_MS },
        `${this.recent.length} serving processes ended before they were ready: starting one a second; the supervisor's thread serves meanwhile`,
      );
    setTimeout(() => this.spawnNext(), delay);
  }
}
