// Picks the reader's cgroup, gathers its figures and hands them to a view. Every path that
// cannot attribute a reader to a container falls back to the host's own file.
import { constants } from "node:os";
import type { KeptFiles } from "../cgroup/files";
import type { NamespaceInit, Processes } from "../cgroup/process";
import { CLOCK_TICKS } from "../cgroup/process";
import { CgroupReader, parseCpuList } from "../cgroup/reader";
import { NewestTasks } from "../cgroup/tasks";
import { TtlCache } from "../cgroup/ttl";
import type { CpuLimits, ReaderCgroups, TaskSample } from "../cgroup/types";
import { renderCpuinfo } from "../views/cpuinfo";
import { cpuShare, renderCpuRange, visibleCpus } from "../views/cpus";
import { renderDiskstats, renderPartitions } from "../views/disk";
import { type LoadTriple, renderLoadavg } from "../views/loadavg";
import { memoryFigures, parseMeminfo, renderMeminfo } from "../views/meminfo";
import { advanceCpuClock, type CpuClock, renderStat, type StatInput } from "../views/stat";
import { type ClockStore, LocalClocks } from "./clocks";
import { renderSwaps } from "../views/swaps";
import { renderUptime } from "../views/uptime";

export const VIEWS = [
  "proc/meminfo",
  "proc/cpuinfo",
  "proc/stat",
  "proc/uptime",
  "proc/loadavg",
  "proc/diskstats",
  "proc/partitions",
  "proc/swaps",
  "proc/slabinfo",
  "proc/pressure/cpu",
  "proc/pressure/memory",
  "proc/pressure/io",
  "sys/devices/system/cpu/online",
  "sys/devices/system/cpu/possible",
  "sys/devices/system/cpu/present",
  "sys/devices/system/cpu/offline",
] as const;
export type ViewName = (typeof VIEWS)[number];

/** Why a reader was given the host's file. */
export type FallbackReason = "outside-pid-namespace" | "process-gone" | "host-cgroup" | "cgroup-unreadable" | "cgroup-unplaced";

export interface Rendered {
  text: string;
  fallback?: FallbackReason;
  /** The reader's cgroup (its first controller's directory), when it got a container view. */
  cgroup?: string;
}

export interface LoadEntry extends TaskSample {
  load: LoadTriple;
}

/** The load averages kept by the sampler, and a way to ask it to watch a new cgroup. */
export interface LoadSource {
  get(cgroupDir: string): LoadEntry | undefined;
  watch(cgroupDir: string): void;
}

export interface RendererOptions {
  files: KeptFiles;
  reader: CgroupReader;
  processes: Processes;
  loads: LoadSource;
  /** Cap the CPUs shown at ceil(quota) (on by default). */
  cpuQuota: boolean;
  /** Where the host's /proc and /sys/devices/system/cpu are read from. */
  procRoot?: string;
  sysCpuDir?: string;
  /** Told about a reader whose cgroup lies outside the trees we can see (pid, its /proc/PID/cgroup). */
  onUnplaced?: (pid: number, procCgroup: string) => void;
  /** Where the containers' CPU clocks are kept (default: in this process). */
  clocks?: ClockStore;
}

/** The reader, resolved once per request. */
interface Reader {
  pid: number;
  cg: ReaderCgroups;
  /** Its pid namespace's init (undefined if it vanished): the container's start, and its cgroup. */
  init?: NamespaceInit;
}

/** How old the host-wide parts of a container's view (Vmalloc*, intr, cpu flags...) may be. */
export const HOST_TTL_MS = 1000;

export class Renderer {
  private readonly procRoot: string;
  private readonly sysCpuDir: string;
  private readonly hostBases = new TtlCache<ViewName, string>(HOST_TTL_MS);
  private readonly online = new TtlCache<0, number[]>(HOST_TTL_MS);
  private readonly clocks: ClockStore;
  private readonly newestTasks: NewestTasks;

  constructor(private readonly o: RendererOptions) {
    this.procRoot = o.procRoot ?? "/proc";
    this.clocks = o.clocks ?? new LocalClocks();
    this.newestTasks = new NewestTasks(this.procRoot, undefined, (p) => this.o.files.read(p));
    this.sysCpuDir = o.sysCpuDir ?? "/sys/devices/system/cpu";
  }

  private hostFile(view: ViewName): string {
    const p = view.startsWith("proc/") ? `${this.procRoot}/${view.slice(5)}` : `${this.sysCpuDir}/${view.split("/").pop()}`;
    return this.o.files.read(p) ?? "";
  }

  /** The host's file under a container's figures; a host reader always gets a fresh one. */
  private hostBase(view: ViewName): string {
    return this.hostBases.get(view, () => this.hostFile(view));
  }

  hostOnline(): number[] {
    return this.online.get(0, () => parseCpuList(this.o.files.read(`${this.sysCpuDir}/online`) ?? "0"));
  }

  /** The reader's cgroups, or why it is treated as the host. */
  resolve(pid: number): Reader | FallbackReason {
    if (pid === 0) return "outside-pid-namespace";
    let cg = this.o.reader.resolve(pid);
    if (!cg) return "process-gone";
    const init = this.o.processes.namespaceInit(pid);
    cg = this.containerOf(pid, cg, init);
    if (cg.unplaced) {
      this.o.onUnplaced?.(pid, this.o.files.read(`${this.procRoot}/${pid}/cgroup`) ?? cg.unplaced);
      return "cgroup-unplaced";
    }
    if (CgroupReader.isRoot(cg)) return "host-cgroup";
    return { pid, cg, init };
  }

  /**
   * One view per reader: a process that entered a container's pid namespace from outside
   * its cgroup (nsenter, a debugger, a host agent) gets the container's view in every file,
   * taken from its pid namespace's init, as LXCFS does. A process in the init's own cgroup
   * or below it (a tighter child cgroup) keeps its own.
   */
  private containerOf(pid: number, cg: ReaderCgroups, init: NamespaceInit | undefined): ReaderCgroups {
    if (!init || init.host || init.pid === pid) return cg;
    const own = cg.byController.memory ?? cg.byController.cpu ?? cg.unified;
    const icg = this.o.reader.resolve(init.pid);
    const theirs = icg?.byController.memory ?? icg?.byController.cpu ?? icg?.unified;
    if (!icg || icg.unplaced || !theirs || CgroupReader.isRoot(icg)) return cg;
    // A systemd inside the container sits in <container>/init.scope, its services beside it.
    const container = theirs.dir.endsWith("/init.scope") ? theirs.dir.slice(0, -"/init.scope".length) : theirs.dir;
    const inside = !cg.unplaced && own !== undefined && (own.dir === container || own.dir.startsWith(`${container}/`));
    return inside ? cg : icg;
  }

  /** Host CPUs shown to `pid`, in order; null for a host reader (shown everything as is). */
  visibleFor(pid: number): number[] | null {
    const r = this.resolve(pid);
    return typeof r === "string" ? null : this.cpu(r).visible;
  }

  render(view: ViewName, pid: number, uid: number): Rendered | number {
    // /proc/slabinfo is root-only on the host: keep it that way through us.
    if (view === "proc/slabinfo" && uid !== 0) return constants.errno.EACCES;
    const r = this.resolve(pid);
    if (typeof r === "string") return { text: this.hostFile(view), fallback: r };
    const text = this.renderFor(view, r);
    if (typeof text === "number") return text;
    if (text === undefined) return { text: this.hostFile(view), fallback: "cgroup-unreadable" };
    const p = r.cg.byController.memory ?? r.cg.byController.cpu ?? r.cg.unified;
    return { text, cgroup: p?.dir };
  }

  private cpu(r: Reader): { limits: CpuLimits; visible: number[]; pool: number[] } {
    const limits = this.o.reader.cpuLimits(r.cg);
    const online = this.hostOnline();
    const visible = visibleCpus(online, limits, this.o.cpuQuota);
    const pool = limits.cpuset?.filter((c) => online.includes(c)) ?? online;
    return { limits, visible, pool: pool.length ? pool : online };
  }

  /** The cgroup whose tasks make the reader's load average. */
  private taskDir(r: Reader): string | undefined {
    return this.taskCgroup(r)?.dir;
  }

  private taskCgroup(r: Reader) {
    return r.cg.byController.cpu ?? r.cg.byController.pids ?? r.cg.unified;
  }

  private loadEntry(r: Reader): LoadEntry | undefined {
    const dir = this.taskDir(r);
    if (dir === undefined) return undefined;
    const e = this.o.loads.get(dir);
    if (!e) this.o.loads.watch(dir);
    return e;
  }

  /** Seconds since the reader's container started (since boot for the host's pid namespace). */
  private elapsed(r: Reader): { seconds: number; hostNamespace: boolean } | undefined {
    const init = r.init;
    if (!init) return undefined;
    const host = this.o.processes.hostUptime().uptime;
    return { seconds: init.host ? host : host - init.startTicks / CLOCK_TICKS, hostNamespace: init.host };
  }

  /**
   * The container's CPU clock advanced to now, with the input it was advanced by; undefined
   * when its usage cannot be read. Kept per container (its cgroup and its init's start), so
   * /proc/stat and uptime's idle never go backwards while this process serves.
   */
  private cpuClock(r: Reader, elapsed: number): { clock: CpuClock; input: StatInput } | undefined {
    const usage = this.o.reader.cpuUsage(r.cg);
    const dir = this.taskDir(r);
    if (!usage || dir === undefined) return undefined;
    const c = this.cpu(r);
    const input: StatInput = {
      visible: c.visible,
      pool: c.pool,
      usage,
      elapsed,
      share: cpuShare(c.visible.length, c.limits, this.o.cpuQuota),
    };
    const key = `${dir}\0${r.init?.startTicks ?? 0}`;
    const clock = advanceCpuClock(this.clocks.get(key), input);
    this.clocks.set(key, clock);
    return { clock, input };
  }

  /** The container's text, undefined when its figures cannot be read, or an errno. */
  private renderFor(view: ViewName, r: Reader): string | undefined | number {
    const { reader } = this.o;
    switch (view) {
      case "proc/meminfo": {
        const mem = reader.memory(r.cg);
        return mem && renderMeminfo(this.hostBase(view), mem);
      }
      case "proc/swaps": {
        const mem = reader.memory(r.cg);
        if (!mem) return undefined;
        const f = memoryFigures(parseMeminfo(this.hostBase("proc/meminfo")), mem);
        return renderSwaps(f.swapTotalKb, f.swapTotalKb - f.swapFreeKb);
      }
      case "proc/cpuinfo":
        return renderCpuinfo(this.hostBase(view), this.cpu(r).visible);
      case "proc/stat": {
        const elapsed = this.elapsed(r)?.seconds;
        const at = elapsed === undefined ? undefined : this.cpuClock(r, elapsed);
        if (!at) return undefined;
        const load = this.loadEntry(r);
        return renderStat(this.hostBase(view), { ...at.input, procsRunning: load?.running, procsBlocked: load?.uninterruptible }, at.clock);
      }
      case "proc/uptime": {
        const e = this.elapsed(r);
        // A process in a cgroup but in the host's pid namespace has the host's uptime.
        if (!e || e.hostNamespace) return undefined;
        const at = this.cpuClock(r, e.seconds);
        return at && renderUptime(e.seconds, at.clock.total.idle / CLOCK_TICKS);
      }
      case "proc/loadavg": {
        // The averages and the running count from the 5-second samples (none yet: 0); the
        // thread count and the newest pid as they are now, as the kernel's (the reader is
        // often that newest pid).
        const e = this.loadEntry(r);
        const cg = this.taskCgroup(r);
        const t = cg && this.newestTasks.sample(cg.dir, cg.version === 2);
        if (t) return renderLoadavg(e?.load ?? [0, 0, 0], e?.running ?? 0, t.total, t.lastPid);
        return e && renderLoadavg(e.load, e.running, e.total, e.lastPid);
      }
      case "proc/diskstats": {
        const io = reader.io(r.cg);
        return io && renderDiskstats(this.hostBase(view), io);
      }
      case "proc/partitions": {
        const io = reader.io(r.cg);
        return io && renderPartitions(this.hostBase(view), io);
      }
      case "proc/slabinfo":
        // The container's own slab caches where the kernel keeps them (cgroup v1 before 5.9);
        // otherwise the host's, which its root reads without procview too.
        return reader.slabinfo(r.cg);
      case "proc/pressure/cpu":
      case "proc/pressure/memory":
      case "proc/pressure/io":
        return reader.pressure(r.cg, view.slice("proc/pressure/".length) as "cpu" | "memory" | "io");
      case "sys/devices/system/cpu/online":
      case "sys/devices/system/cpu/possible":
      case "sys/devices/system/cpu/present":
        return renderCpuRange(this.cpu(r).visible.length);
      case "sys/devices/system/cpu/offline":
        return "\n";
    }
  }
}
