import type { MemoryInfo } from "../cgroup/types";

const KB = 1024;

let memoText = "";
let memoParsed = new Map<string, number>();

/** Host /proc/meminfo as key -> kB (the last text's result is kept: hosts re-send the same). */
export function parseMeminfo(text: string): Map<string, number> {
  if (text === memoText) return memoParsed;
  memoText = text;
  memoParsed = parseMeminfoText(text);
  return memoParsed;
}

function parseMeminfoText(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^([^:]+):\s+(\d+)/.exec(line);
    if (m) out.set(m[1], Number(m[2]));
  }
  return out;
}

export interface MemoryFigures {
  totalKb: number;
  freeKb: number;
  availableKb: number;
  swapTotalKb: number;
  swapFreeKb: number;
}

/** The container's headline figures; shared by meminfo, swaps and `inspect`. */
export function memoryFigures(host: Map<string, number>, mem: MemoryInfo): MemoryFigures {
  const hostTotal = (host.get("MemTotal") ?? 0) * KB;
  const hostSwap = (host.get("SwapTotal") ?? 0) * KB;
  const total = Math.min(mem.limit ?? hostTotal, hostTotal);
  const free = Math.max(0, total - mem.usage);
  const s = mem.stat;
  // Page cache on the file LRUs and reclaimable slab can be given back under pressure.
  const available = Math.min(total, free + s.activeFile + s.inactiveFile + s.slabReclaimable);
  let swapTotal: number;
  if (mem.version === 2) swapTotal = Math.min(hostSwap, mem.swapMax ?? hostSwap);
  else if (mem.memswLimit === null || mem.memswLimit === undefined) swapTotal = hostSwap;
  // memsw is memory + swap together; equal limits mean no swap at all.
  else swapTotal = Math.min(hostSwap, Math.max(0, mem.memswLimit - total));
  const swapFree = Math.max(0, swapTotal - mem.swapUsage);
  const kb = (b: number) => Math.floor(b / KB);
  return { totalKb: kb(total), freeKb: kb(free), availableKb: kb(available), swapTotalKb: kb(swapTotal), swapFreeKb: kb(swapFree) };
}

// Figures that count memory use but have no per-cgroup source: shown as 0 rather than
// the host's, which could exceed the container's total.
const UNATTRIBUTABLE = [
  "Mlocked",
  "Bounce",
  "WritebackTmp",
  "NFS_Unstable",
  "Zswap",
  "Zswapped",
  "FileHugePages",
  "FilePmdMapped",
  "ShmemHugePages",
  "ShmemPmdMapped",
  "SecPageTables",
  "Percpu",
];

/** The kernel's show_val_kb layout: a 16-column label, an 8-column value, " kB". */
function kbLine(key: string, kb: number): string {
  return `${`${key}:`.padEnd(16)}${String(kb).padStart(8)} kB`;
}

interface Template {
  lines: string[];
  /** Lines ending in " kB", by index, with their key. */
  slots: [number, string][];
}
let memoTemplate: { text: string; t: Template } | undefined;

function template(hostText: string): Template {
  if (memoTemplate?.text === hostText) return memoTemplate.t;
  const lines = hostText.split("\n");
  const slots: [number, string][] = [];
  lines.forEach((line, i) => {
    const colon = line.indexOf(":");
    if (colon > 0 && line.endsWith(" kB")) slots.push([i, line.slice(0, colon)]);
  });
  memoTemplate = { text: hostText, t: { lines, slots } };
  return memoTemplate.t;
}

/**
 * /proc/meminfo for a container: the lines of the host's file, in the host's order, with
 * every figure we can attribute to the cgroup replaced. Host-wide lines (Vmalloc*,
 * HugePages_*, DirectMap*, Commit*) are left as they are.
 */
export function renderMeminfo(hostText: string, mem: MemoryInfo): string {
  const f = memoryFigures(parseMeminfo(hostText), mem);
  const s = mem.stat;
  const kb = (b: number) => Math.floor(b / KB);
  const values: Record<string, number | undefined> = {
    MemTotal: f.totalKb,
    MemFree: f.freeKb,
    MemAvailable: f.availableKb,
    Buffers: 0,
    Cached: kb(Math.max(0, s.cache - s.swapCached)),
    SwapCached: kb(s.swapCached),
    Active: kb(s.activeAnon + s.activeFile),
    Inactive: kb(s.inactiveAnon + s.inactiveFile),
    "Active(anon)": kb(s.activeAnon),
    "Inactive(anon)": kb(s.inactiveAnon),
    "Active(file)": kb(s.activeFile),
    "Inactive(file)": kb(s.inactiveFile),
    Unevictable: kb(s.unevictable),
    SwapTotal: f.swapTotalKb,
    SwapFree: f.swapFreeKb,
    Dirty: kb(s.dirty),
    Writeback: kb(s.writeback),
    AnonPages: kb(s.anon),
    Mapped: kb(s.mapped),
    Shmem: kb(s.shmem),
    KReclaimable: kb(s.slabReclaimable),
    Slab: kb(s.slabReclaimable + s.slabUnreclaimable),
    SReclaimable: kb(s.slabReclaimable),
    SUnreclaim: kb(s.slabUnreclaimable),
    AnonHugePages: kb(s.anonHuge),
    KernelStack: s.kernelStack === undefined ? undefined : kb(s.kernelStack),
    PageTables: s.pageTables === undefined ? undefined : kb(s.pageTables),
  };
  for (const k of UNATTRIBUTABLE) values[k] = 0;
  const t = template(hostText);
  const out = t.lines.slice();
  for (const [i, key] of t.slots) {
    const v = values[key];
    if (v !== undefined) out[i] = kbLine(key, v);
  }
  return out.join("\n");
}
