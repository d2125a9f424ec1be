// Turns a pid into its cgroups, and cgroup files into numbers. All I/O goes through
// KeptFiles; nothing here knows about FUSE or about how a view formats its figures.
import * as fs from "node:fs";
import * as path from "node:path";
import type { KeptFiles } from "./files";
import { type CgroupLayout, type Hierarchy, hierarchyFor } from "./layout";
import { TtlCache } from "./ttl";
import type { Controller, CpuLimits, CpuUsage, IoDevice, MemoryInfo, MemoryStat, Placement, ReaderCgroups } from "./types";

const CONTROLLERS: Controller[] = ["memory", "cpu", "cpuacct", "cpuset", "blkio", "pids"];
// The kernel reports "no limit" as PAGE_COUNTER_MAX pages; anything this large is unlimited.
const UNLIMITED = 2 ** 60;

/** Parses /proc/PID/cgroup into controller -> path; the v2 line ("0::/path") is under "". */
export function parseProcCgroup(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const first = line.indexOf(":");
    const second = line.indexOf(":", first + 1);
    if (first < 0 || second < 0) continue;
    const p = line.slice(second + 1);
    const list = line.slice(first + 1, second);
    if (list === "") out.set("", p);
    else for (const c of list.split(",")) out.set(c, p);
  }
  return out;
}

/** Parses a cpu list like "0-3,8,10-11" (cpuset.cpus, sysfs online) into sorted numbers. */
export function parseCpuList(text: string): number[] {
  const out: number[] = [];
  for (const part of text.trim().split(",")) {
    if (!part) continue;
    const [a, b] = part.split("-").map(Number);
    if (!Number.isInteger(a)) continue;
    const end = Number.isInteger(b) ? b : a;
    for (let i = a; i <= end; i++) out.push(i);
  }
  return [...new Set(out)].sort((x, y) => x - y);
}

/** "key value" lines (memory.stat, cpu.stat) into a map of numbers. */
export function parseFlatKeyed(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const sp = line.indexOf(" ");
    if (sp > 0) out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}

function limitOf(text: string | undefined): number | null | undefined {
  if (text === undefined) return undefined;
  const t = text.trim();
  if (t === "max" || t === "-1") return null;
  const n = Number(t);
  if (!Number.isFinite(n)) return undefined;
  return n >= UNLIMITED ? null : n;
}

/** `rel` applied to the absolute `base`, or undefined if it climbs above "/". */
export function under(base: string, rel: string): string | undefined {
  const out = base.split("/").filter(Boolean);
  for (const seg of rel.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg !== "..") out.push(seg);
    else if (out.pop() === undefined) return undefined;
  }
  return `/${out.join("/")}`;
}

/**
 * Where a cgroup path (as /proc/PID/cgroup shows it, relative to our cgroup namespace's
 * root) is on disk, or undefined when it is not inside the tree mounted at h.dir: a path
 * outside a container's own sub-tree, or a "/.." path above what we can place.
 */
function placementIn(h: Hierarchy, cgPath: string): Placement | undefined {
  const ns = h.nsRoot ?? "/";
  const real = under(ns, cgPath);
  const mounted = under(ns, h.root);
  if (real === undefined || mounted === undefined) return undefined;
  if (real !== mounted && !real.startsWith(mounted === "/" ? "/" : `${mounted}/`)) return undefined;
  return { version: h.version, dir: path.join(h.dir, real.slice(mounted.length)), top: h.dir };
}

/**
 * Limits change only when an operator changes them; re-walking every ancestor on every
 * read would cost more than the rest of the render. They are re-read after this long.
 */
export const LIMITS_TTL_MS = 1000;

export class CgroupReader {
  // Keyed by the text of /proc/PID/cgroup: every process of a container shares one entry.
  private readonly placements = new Map<string, ReaderCgroups>();
  private readonly limits = new TtlCache<string, number | null>(LIMITS_TTL_MS);
  private readonly cpuLimitCache = new TtlCache<string, CpuLimits>(LIMITS_TTL_MS);

  constructor(
    private readonly layout: CgroupLayout,
    private readonly files: KeptFiles,
    /** Where /proc is: tests point this elsewhere. */
    private readonly procRoot = "/proc",
  ) {}

  /** The cgroups of a process or thread, or undefined when it is gone or unreadable. */
  resolve(pid: number): ReaderCgroups | undefined {
    const text = this.files.read(`${this.procRoot}/${pid}/cgroup`);
    if (text === undefined) return undefined;
    let cg = this.placements.get(text);
    if (!cg) {
      cg = this.fromProcCgroup(text);
      if (this.placements.size >= 4096) this.placements.clear();
      this.placements.set(text, cg);
    }
    return cg;
  }

  fromProcCgroup(text: string): ReaderCgroups {
    const paths = parseProcCgroup(text);
    const byController: ReaderCgroups["byController"] = {};
    let unplaced: string | undefined;
    for (const c of CONTROLLERS) {
      const h = hierarchyFor(this.layout, c);
      if (!h) continue;
      const p = h.version === 1 ? paths.get(c) : paths.get("");
      if (p === undefined) continue;
      const at = placementIn(h, p);
      if (at) byController[c] = at;
      else unplaced ??= `${c}:${p}`;
    }
    // Placed by the rules but found nowhere: the trees we read are not the ones the kernel
    // named (another mount namespace's, or a stale mount).
    const placed = Object.entries(byController);
    if (!unplaced && placed.length > 0 && !placed.some(([, at]) => fs.existsSync(at.dir))) unplaced = `${placed[0][0]}:${placed[0][1].dir}`;
    const u = this.layout.unified;
    const up = paths.get("");
    const unified = u && up !== undefined ? placementIn(u, up) : undefined;
    return { byController, unified, ...(unplaced ? { unplaced } : {}) };
  }

  /** True when every cgroup of the reader is its hierarchy's root: a host process. */
  static isRoot(cg: ReaderCgroups): boolean {
    return Object.values(cg.byController).every((p) => p.dir === p.top);
  }

  private read(dir: string, file: string): string | undefined {
    return this.files.read(`${dir}/${file}`);
  }

  /** The smallest value of `file` over the cgroup and its ancestors (null: unlimited). */
  private minOverAncestors(p: Placement, file: string, parse: (t: string | undefined) => number | null | undefined): number | null {
    return this.limits.get(`${p.dir}/${file}`, () => this.walkMin(p, file, parse));
  }

  /** The smallest of `valueAt` over the cgroup and its ancestors, up to the hierarchy's root. */
  private static minUp(p: Placement, valueAt: (dir: string) => number | null | undefined): number | null {
    let best: number | null = null;
    for (let dir = p.dir; ; dir = path.dirname(dir)) {
      const v = valueAt(dir);
      if (typeof v === "number" && (best === null || v < best)) best = v;
      if (dir === p.top || dir.length <= p.top.length) break;
    }
    return best;
  }

  private walkMin(p: Placement, file: string, parse: (t: string | undefined) => number | null | undefined): number | null {
    return CgroupReader.minUp(p, (dir) => parse(this.read(dir, file)));
  }

  memory(cg: ReaderCgroups): MemoryInfo | undefined {
    const p = cg.byController.memory;
    if (!p) return undefined;
    const statText = this.read(p.dir, "memory.stat");
    if (statText === undefined) return undefined;
    const s = parseFlatKeyed(statText);
    const g = (k: string) => s.get(k) ?? 0;
    if (p.version === 1) {
      const usage = Number(this.read(p.dir, "memory.usage_in_bytes") ?? Number.NaN);
      if (!Number.isFinite(usage)) return undefined;
      // hierarchical_* already hold the minimum over the ancestors (memory.use_hierarchy).
      const limit = s.has("hierarchical_memory_limit")
        ? (limitOf(String(g("hierarchical_memory_limit"))) ?? null)
        : this.minOverAncestors(p, "memory.limit_in_bytes", limitOf);
      const memswUsage = Number(this.read(p.dir, "memory.memsw.usage_in_bytes") ?? Number.NaN);
      const memswLimit = s.has("hierarchical_memsw_limit")
        ? (limitOf(String(g("hierarchical_memsw_limit"))) ?? null)
        : this.minOverAncestors(p, "memory.memsw.limit_in_bytes", limitOf);
      const swapUsage = s.has("total_swap") ? g("total_swap") : Number.isFinite(memswUsage) ? Math.max(0, memswUsage - usage) : 0;
      const stat: MemoryStat = {
        cache: g("total_cache"),
        anon: g("total_rss"),
        shmem: g("total_shmem"),
        mapped: g("total_mapped_file"),
        dirty: g("total_dirty"),
        writeback: g("total_writeback"),
        swapCached: 0,
        activeAnon: g("total_active_anon"),
        inactiveAnon: g("total_inactive_anon"),
        activeFile: g("total_active_file"),
        inactiveFile: g("total_inactive_file"),
        unevictable: g("total_unevictable"),
        anonHuge: g("total_rss_huge"),
        slabReclaimable: 0,
        slabUnreclaimable: 0,
      };
      return { version: 1, limit, usage, memswLimit, swapUsage, stat };
    }
    const usage = Number(this.read(p.dir, "memory.current") ?? Number.NaN);
    if (!Number.isFinite(usage)) return undefined;
    const stat: MemoryStat = {
      cache: g("file"),
      anon: g("anon"),
      shmem: g("shmem"),
      mapped: g("file_mapped"),
      dirty: g("file_dirty"),
      writeback: g("file_writeback"),
      swapCached: g("swapcached"),
      activeAnon: g("active_anon"),
      inactiveAnon: g("inactive_anon"),
      activeFile: g("active_file"),
      inactiveFile: g("inactive_file"),
      unevictable: g("unevictable"),
      anonHuge: g("anon_thp"),
      slabReclaimable: g("slab_reclaimable"),
      slabUnreclaimable: g("slab_unreclaimable"),
      kernelStack: s.get("kernel_stack"),
      pageTables: s.get("pagetables"),
    };
    return {
      version: 2,
      limit: this.minOverAncestors(p, "memory.max", limitOf),
      usage,
      swapMax: this.minOverAncestors(p, "memory.swap.max", limitOf),
      swapUsage: Number(this.read(p.dir, "memory.swap.current") ?? 0) || 0,
      stat,
    };
  }

  cpuLimits(cg: ReaderCgroups): CpuLimits {
    const key = `${cg.byController.cpuset?.dir}\0${cg.byController.cpu?.dir}`;
    return this.cpuLimitCache.get(key, () => this.readCpuLimits(cg));
  }

  private readCpuLimits(cg: ReaderCgroups): CpuLimits {
    const set = cg.byController.cpuset;
    let cpuset: number[] | null = null;
    if (set) {
      const text = this.read(set.dir, set.version === 1 ? "cpuset.effective_cpus" : "cpuset.cpus.effective");
      if (text !== undefined && text.trim() !== "") cpuset = parseCpuList(text);
    }
    const cpu = cg.byController.cpu;
    let quota: number | null = null;
    if (cpu?.version === 1) {
      // quota and period live in separate files: each level's ratio is taken from both.
      quota = CgroupReader.minUp(cpu, (dir) => {
        const q = Number(this.read(dir, "cpu.cfs_quota_us") ?? -1);
        const period = Number(this.read(dir, "cpu.cfs_period_us") ?? 0);
        return q > 0 && period > 0 ? q / period : undefined;
      });
    } else if (cpu?.version === 2) {
      quota = this.minOverAncestors(cpu, "cpu.max", (t) => {
        if (t === undefined) return undefined;
        const [q, period] = t.trim().split(/\s+/);
        if (q === "max") return null;
        const v = Number(q) / Number(period || 100000);
        return Number.isFinite(v) && v > 0 ? v : undefined;
      });
    }
    return { cpuset, quota };
  }

  cpuUsage(cg: ReaderCgroups): CpuUsage | undefined {
    const p = cg.byController.cpuacct ?? cg.byController.cpu;
    if (!p) return undefined;
    if (p.version === 1) {
      const users = this.read(p.dir, "cpuacct.usage_percpu_user");
      const syss = this.read(p.dir, "cpuacct.usage_percpu_sys");
      if (users !== undefined && syss !== undefined) {
        const u = users.trim().split(/\s+/).map(Number);
        const sy = syss.trim().split(/\s+/).map(Number);
        const perCpu = u.map((userNs, i) => ({ userNs, systemNs: sy[i] ?? 0 }));
        return {
          userNs: perCpu.reduce((a, c) => a + c.userNs, 0),
          systemNs: perCpu.reduce((a, c) => a + c.systemNs, 0),
          perCpu,
        };
      }
      const stat = this.read(p.dir, "cpuacct.stat");
      if (stat === undefined) return undefined;
      const s = parseFlatKeyed(stat); // USER_HZ ticks
      return { userNs: (s.get("user") ?? 0) * 1e7, systemNs: (s.get("system") ?? 0) * 1e7, perCpu: null };
    }
    const text = this.read(p.dir, "cpu.stat");
    if (text === undefined) return undefined;
    const s = parseFlatKeyed(text);
    return { userNs: (s.get("user_usec") ?? 0) * 1000, systemNs: (s.get("system_usec") ?? 0) * 1000, perCpu: null };
  }

  io(cg: ReaderCgroups): IoDevice[] | undefined {
    const p = cg.byController.blkio;
    if (!p) return undefined;
    const devices = new Map<string, IoDevice>();
    const dev = (d: string) => {
      let e = devices.get(d);
      if (!e) {
        e = { device: d, rbytes: 0, wbytes: 0, rios: 0, wios: 0, dbytes: 0, dios: 0 };
        devices.set(d, e);
      }
      return e;
    };
    if (p.version === 1) {
      const bytes = this.read(p.dir, "blkio.throttle.io_service_bytes_recursive");
      const ios = this.read(p.dir, "blkio.throttle.io_serviced_recursive");
      if (bytes === undefined && ios === undefined) return undefined;
      const take = (text: string | undefined, r: "rbytes" | "rios", w: "wbytes" | "wios", d: "dbytes" | "dios") => {
        for (const line of (text ?? "").split("\n")) {
          const [device, op, value] = line.split(" ");
          if (!device?.includes(":") || value === undefined) continue;
          const e = dev(device);
          if (op === "Read") e[r] = Number(value);
          else if (op === "Write") e[w] = Number(value);
          else if (op === "Discard") e[d] = Number(value);
        }
      };
      take(bytes, "rbytes", "wbytes", "dbytes");
      take(ios, "rios", "wios", "dios");
    } else {
      const text = this.read(p.dir, "io.stat");
      if (text === undefined) return undefined;
      for (const line of text.split("\n")) {
        const [device, ...kv] = line.trim().split(/\s+/);
        if (!device?.includes(":")) continue;
        const e = dev(device);
        for (const pair of kv) {
          const [k, v] = pair.split("=");
          if (k === "rbytes" || k === "wbytes" || k === "rios" || k === "wios" || k === "dbytes" || k === "dios") e[k] = Number(v);
        }
      }
    }
    return [...devices.values()];
  }

  /** The cgroup's own PSI file (v2 and hybrid), or undefined for the root or v1-only. */
  pressure(cg: ReaderCgroups, kind: "cpu" | "memory" | "io"): string | undefined {
    const u = cg.unified;
    if (!u || u.dir === u.top) return undefined;
    return this.read(u.dir, `${kind}.pressure`);
  }

  /** The cgroup's own slab statistics (cgroup v1 memory.kmem.slabinfo), if the kernel keeps them. */
  slabinfo(cg: ReaderCgroups): string | undefined {
    const p = cg.byController.memory;
    if (p?.version !== 1) return undefined;
    const text = this.read(p.dir, "memory.kmem.slabinfo");
    return text?.trim() ? text : undefined;
  }
}
