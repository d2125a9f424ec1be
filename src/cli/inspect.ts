// `procview inspect PID`: what that process sees through procview, next to the host's
// values, with the cgroups it resolved to. Computed with the same renderer as the daemon.
import * as fs from "node:fs";
import { systemRenderer } from "../daemon/context";
import type { LoadTable } from "../daemon/loads";
import type { LoadEntry } from "../daemon/render";
import { UsageError } from "../errors";
import { layoutOf } from "../mounts/layout";

interface Row {
  file: string;
  field: string;
  container: string;
  host: string;
}

const meminfoField = (key: string) => (t: string) =>
  /^[^:]+:\s+(\d+ kB)/m.exec(t.split("\n").find((l) => l.startsWith(`${key}:`)) ?? "")?.[1] ?? "-";
const countLines = (re: RegExp) => (t: string) => String((t.match(re) ?? []).length);
const firstWord = (t: string) => t.trim().split(/\s+/)[0] ?? "-";

const FIELDS: [string, string, (t: string) => string][] = [
  ["proc/meminfo", "MemTotal", meminfoField("MemTotal")],
  ["proc/meminfo", "MemFree", meminfoField("MemFree")],
  ["proc/meminfo", "MemAvailable", meminfoField("MemAvailable")],
  ["proc/meminfo", "SwapTotal", meminfoField("SwapTotal")],
  ["proc/meminfo", "SwapFree", meminfoField("SwapFree")],
  ["proc/cpuinfo", "processors", countLines(/^processor/gm)],
  ["proc/stat", "cpuN lines", countLines(/^cpu\d+ /gm)],
  ["proc/uptime", "seconds", firstWord],
  ["proc/loadavg", "1-minute load", firstWord],
  ["proc/swaps", "devices", (t) => String(Math.max(0, t.trim().split("\n").length - 1))],
  ["proc/diskstats", "devices", countLines(/^.+$/gm)],
  ["sys/devices/system/cpu/online", "online", (t) => t.trim()],
];

/**
 * The load averages the daemon sampled last (its supervisor rewrites them every 5 s), so the
 * load shown is the one the file shows; none when no daemon runs there.
 */
function daemonLoads(file: string): Map<string, LoadEntry> | undefined {
  try {
    return new Map(JSON.parse(fs.readFileSync(file, "utf8")) as LoadTable);
  } catch {
    return undefined;
  }
}

export function inspect(pidArg: string, o: { json: boolean; mountpoint: string; stateDir?: string }): string {
  if (!/^\d+$/.test(pidArg)) throw new UsageError(`inspect: "${pidArg}" is not a process id`);
  const pid = Number(pidArg);
  if (!fs.existsSync(`/proc/${pid}`)) throw new UsageError(`inspect: no process ${pid}`);
  const loadsFile = layoutOf(o.mountpoint, o.stateDir).loadsFile;
  const loads = daemonLoads(loadsFile);
  const { renderer, reader } = systemRenderer({ get: (dir) => loads?.get(dir), watch: () => {} }, true);
  const who = renderer.resolve(pid);
  const cgroups = typeof who === "string" ? {} : Object.fromEntries(Object.entries(who.cg.byController).map(([c, p]) => [c, p.dir]));
  const limits =
    typeof who === "string"
      ? undefined
      : { memory: reader.memory(who.cg)?.limit ?? null, cpu: reader.cpuLimits(who.cg), visibleCpus: renderer.visibleFor(pid) };
  const rows: Row[] = [];
  const cache = new Map<string, [string, string]>();
  for (const [file, field, pick] of FIELDS) {
    let pair = cache.get(file);
    if (!pair) {
      const seen = renderer.render(file as never, pid, 0);
      const host = renderer.render(file as never, 0, 0);
      const text = (r: typeof seen) => (typeof r === "number" ? `error ${r}` : r.text);
      pair = [text(seen), text(host)];
      cache.set(file, pair);
    }
    rows.push({ file, field, container: pick(pair[0]), host: pick(pair[1]) });
  }
  const fallback = typeof who === "string" ? who : undefined;
  const loadNote = loads
    ? `load averages as the daemon sampled them (${loadsFile})`
    : `no daemon's load samples at ${loadsFile}: load averages show 0.00`;
  if (o.json) return `${JSON.stringify({ pid, fallback, cgroups, limits, rows, loads: loadNote }, null, 2)}\n`;

  const lines = [`pid ${pid}: ${fallback ? `served the host's files (${fallback})` : "served its container's view"}`];
  for (const [c, dir] of Object.entries(cgroups)) lines.push(`  ${c.padEnd(8)} ${dir}`);
  if (limits) {
    const mem = limits.memory === null ? "unlimited" : `${limits.memory} bytes`;
    const quota = limits.cpu.quota === null ? "none" : `${limits.cpu.quota} CPUs`;
    lines.push(
      `  limits   memory ${mem}; cpuset ${limits.cpu.cpuset?.join(",") ?? "all"}; CFS quota ${quota}; shown CPUs ${limits.visibleCpus?.join(",")}`,
    );
  }
  lines.push(`  ${loadNote}`, "");
  const header: Row = { file: "FILE", field: "FIELD", container: "SEEN BY PID", host: "HOST" };
  const all = [header, ...rows];
  const w = (k: keyof Row) => Math.max(...all.map((r) => r[k].length));
  for (const r of all)
    lines.push(
      `${r.file.padEnd(w("file"))}  ${r.field.padEnd(w("field"))}  ${r.container.padStart(w("container"))}  ${r.host.padStart(w("host"))}`,
    );
  return `${lines.join("\n")}\n`;
}
