// What answers the connection, wherever it runs: on a serving process's main thread (./child),
// or on the supervisor's serving thread (./worker). It loads and exercises the read path at
// once, so that it is warm before it is asked to serve; serves as a Connection; and, told to
// park, lets go of what it holds so that whoever serves next starts clean.
import type { KeptFiles } from "../cgroup/files";
import { Connection, requestResend } from "../fuse/server";
import type { CpuClock } from "../views/stat";
import { clockStore } from "./clocks";
import { systemRenderer } from "./context";
import { ReadCounters } from "./counters";
import type { ServedLoads } from "./loads";
import { Reclaimer } from "./reclaim";
import { ProcviewTree } from "./tree";

export interface ServingConfig {
  fd: number;
  journalFd?: number;
  /** The shared CPU clocks (see ./clocks), for `hostCpus` CPUs. */
  clocksFd?: number;
  hostCpus: number;
  cpuQuota: boolean;
  generation: number;
  metrics: SharedArrayBuffer;
}

// A reader we cannot place is served the host's files: say so once per cgroup, with its pid
// and what the kernel showed us, so that an operator can tell a layout problem from a bug.
const told = new Set<string>();
function onUnplaced(pid: number, procCgroup: string): void {
  if (told.has(procCgroup) || told.size >= 1024) return;
  told.add(procCgroup);
  const msg = "a reader's cgroup is outside the cgroup trees this daemon can see; it gets the host's files";
  process.stderr.write(`${JSON.stringify({ level: 40, time: Date.now(), component: "serve", pid, cgroup: procCgroup.trim(), msg })}\n`);
}

export class Serving {
  private readonly reclaim = new Reclaimer();
  private readonly files: KeptFiles;
  private readonly tree: ProcviewTree;
  /** A standby reads the shared CPU clocks but writes nothing there until it serves. */
  private standby = true;

  constructor(
    private readonly cfg: ServingConfig,
    private readonly loads: ServedLoads,
  ) {
    const shared = clockStore(cfg.clocksFd, cfg.hostCpus);
    const clocks = {
      get: (k: string) => shared.get(k),
      set: (k: string, c: CpuClock) => {
        if (!this.standby) shared.set(k, c);
      },
    };
    const { renderer, files } = systemRenderer(loads, cfg.cpuQuota, onUnplaced, clocks);
    this.files = files;
    const counters = new ReadCounters(cfg.metrics);
    this.tree = new ProcviewTree(renderer, undefined, (view, r, us, container) => counters.record(view, r, us, container), cfg.generation);
    // Warm the read path (cgroup files, host files, views) before the first real request.
    for (const v of ["proc/meminfo", "proc/cpuinfo", "proc/stat", "proc/uptime", "proc/loadavg", "proc/diskstats", "proc/swaps"] as const)
      renderer.render(v, process.pid, 0);
    // What warming up left behind goes before we wait, perhaps for a long time.
    this.reclaim.reclaimNow();
  }

  /**
   * Serves from now on: whatever a predecessor read but never answered comes back to us,
   * resent by the kernel (FUSE 7.40+) or from the journal it kept (older kernels). Undefined
   * once the filesystem is gone.
   */
  begin(priorFailed: boolean): Connection | undefined {
    this.standby = false;
    requestResend(this.cfg.fd);
    const c = new Connection(this.cfg.fd, this.tree, { fd: this.cfg.journalFd, priorFailed });
    return c.replay() ? c : undefined;
  }

  /** After every request: the latest load table, closing descriptors of what is gone, giving memory back. */
  afterEach(): void {
    this.loads.drain();
    this.reclaim.maybe(this.files.sweep() > 0);
  }

  /**
   * Parked: whoever serves next gets the handles this one issued, and their releases; kept
   * descriptors would hold removed cgroups' kernel objects for as long as it stays parked.
   */
  park(): void {
    this.standby = true;
    this.tree.forgetHandles();
    this.files.close();
  }

  /** Once parked and said so: give back what serving left behind. */
  reclaimNow(): void {
    this.reclaim.reclaimNow();
  }

  close(): void {
    this.files.close();
  }
}
