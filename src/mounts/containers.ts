// Containers' procview mounts, seen from the host: find them (every mount namespace's
// mountinfo), re-bind the stale ones to the live filesystem, detach them, or hand them
// over to the next daemon. Changes happen inside each container's own mount namespace
// with the host's binaries (./inside), so nothing leaks into the host's mount table and
// nothing of the container's runs. Containers are handled in parallel, each with its own
// deadline, so one slow container cannot hold up the rest.
import * as fs from "node:fs";
import * as path from "node:path";
import { statFields } from "../cgroup/process";
import { FS_TYPE, fuseAt, type Layout, TOP_DIRS, writeStateRecord } from "./layout";
import { bindInside, detachInside } from "./inside";
import { type MountEntry, mountsOf } from "./table";

export interface Bind {
  /** Where the file is mounted in the container, e.g. /proc/meminfo. */
  mountPoint: string;
  /** Which file of procview's tree, e.g. /proc/meminfo. */
  root: string;
  device: string;
}

export interface ContainerMounts {
  pid: number;
  mountNs: string;
  startTicks: number;
  /** This daemon's files bound in the container (its anchor's mount source). */
  binds: Bind[];
  /** A live copy of the filesystem inside the container (through its slave copy of the anchor). */
  liveCopy?: string;
}

/** A container's mount namespace ("mnt:[4026532...]"); undefined selects them all. */
export type Selector = string;

export class SelectError extends Error {}

export interface Report {
  containers: number;
  rebound: number;
  detached: number;
  failed: { pid: number; error: string }[];
}

const emptyReport = (): Report => ({ containers: 0, rebound: 0, detached: 0, failed: [] });

function readlink(p: string): string | undefined {
  try {
    return fs.readlinkSync(p);
  } catch {
    return undefined;
  }
}

function startTicks(pid: number): number {
  try {
    return Number(statFields(fs.readFileSync(`/proc/${pid}/stat`, "utf8"))[19]);
  } catch {
    return -1;
  }
}

const numericPids = () =>
  fs
    .readdirSync("/proc")
    .filter((e) => /^\d+$/.test(e))
    .map(Number)
    .sort((a, b) => a - b);

/** The mount namespace of the container `pid` runs in; refuses the host's own. */
export function selectPid(pid: number): Selector {
  let ns: string;
  try {
    ns = fs.readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new SelectError(code === "ENOENT" ? `no process ${pid}` : `cannot read process ${pid}'s mount namespace: ${code}`);
  }
  if (ns === readlink("/proc/self/ns/mnt"))
    throw new SelectError(`process ${pid} is not in a container: it shares this host's mount namespace`);
  return ns;
}

/**
 * The container id a cgroup path names, as the runtime names it: the last component, less
 * the systemd driver's prefix and suffix (cri-containerd-ID.scope, docker-ID.scope,
 * crio-ID.scope, libpod-ID.scope); cgroupfs and runc use the bare id.
 */
export function containerIdOfCgroup(cgroupPath: string): string | undefined {
  const last = cgroupPath.split("/").filter(Boolean).pop();
  if (!last) return undefined;
  const m = /^(?:cri-containerd-|docker-|crio-|libpod-)?([A-Za-z0-9][A-Za-z0-9_.-]*?)(?:\.scope)?$/.exec(last);
  return m?.[1];
}

export const MIN_ID_PREFIX = 12;

/**
 * A container by its full id, or by a prefix of at least 12 characters that names exactly
 * one container. Ids come from the containers' cgroup paths (any runtime, any driver).
 */
export function selectContainerId(id: string): Selector {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(id)) throw new SelectError(`"${id}" is not a container id`);
  const ownNs = readlink("/proc/self/ns/mnt");
  // id -> the mount namespaces its processes are in
  const byId = new Map<string, Set<string>>();
  for (const pid of numericPids()) {
    const ns = readlink(`/proc/${pid}/ns/mnt`);
    if (!ns || ns === ownNs) continue;
    let text: string;
    try {
      text = fs.readFileSync(`/proc/${pid}/cgroup`, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      const cid = containerIdOfCgroup(line.split(":").slice(2).join(":"));
      if (!cid) continue;
      const set = byId.get(cid) ?? new Set<string>();
      set.add(ns);
      byId.set(cid, set);
    }
  }
  const exact = byId.get(id);
  const matches = exact ? [id] : id.length >= MIN_ID_PREFIX ? [...byId.keys()].filter((k) => k.startsWith(id)) : [];
  if (matches.length === 0) {
    if (id.length < MIN_ID_PREFIX && [...byId.keys()].some((k) => k.startsWith(id)))
      throw new SelectError(`"${id}" is too short: give the full id or at least ${MIN_ID_PREFIX} characters of it`);
    throw new SelectError(`no running container ${id}`);
  }
  if (matches.length > 1)
    throw new SelectError(`"${id}" names ${matches.length} containers (${matches.slice(0, 4).join(", ")}): give more of the id`);
  const namespaces = [...(byId.get(matches[0]) as Set<string>)];
  if (namespaces.length > 1)
    throw new SelectError(`container ${matches[0]} has processes in ${namespaces.length} mount namespaces: use --pid`);
  return namespaces[0];
}

/**
 * The anchor's own mounts in a copy of it: the filesystem at <copy>/.fs and its top
 * directories bound beside it. Propagation brings and takes them with the host's; they
 * are not the container's files.
 */
function anchorParts(ours: readonly MountEntry[]): Set<MountEntry> {
  const copies = new Set(ours.filter((m) => m.root === "/").map((m) => path.dirname(m.mountPoint)));
  return new Set(
    ours.filter(
      (m) =>
        m.root === "/" ||
        TOP_DIRS.some((n) => m.root === `/${n}` && path.basename(m.mountPoint) === n && copies.has(path.dirname(m.mountPoint))),
    ),
  );
}

/** Every other mount namespace that holds one of this daemon's mounts, one entry per namespace. */
export function scanContainers(l: Layout, liveDevice: string | undefined, only?: Selector): ContainerMounts[] {
  const ownNs = readlink("/proc/self/ns/mnt");
  const seen = new Set<string>();
  const out: ContainerMounts[] = [];
  for (const pid of numericPids()) {
    const ns = readlink(`/proc/${pid}/ns/mnt`);
    if (!ns || ns === ownNs || seen.has(ns) || (only && only !== ns)) continue;
    seen.add(ns);
    // Only this anchor's filesystem: another instance's mounts are its own business.
    const ours = mountsOf(pid).filter((m) => m.fsType === FS_TYPE && m.source === l.source);
    if (ours.length === 0) continue;
    const c: ContainerMounts = { pid, mountNs: ns, startTicks: startTicks(pid), binds: [] };
    const parts = anchorParts(ours);
    for (const m of ours) {
      if (m.root === "/") {
        if (m.device === liveDevice && (!c.liveCopy || m.mountPoint.length < c.liveCopy.length)) c.liveCopy = m.mountPoint;
      } else if (!parts.has(m)) {
        c.binds.push({ mountPoint: m.mountPoint, root: m.root, device: m.device });
      }
    }
    out.push(c);
  }
  return out;
}

export function liveDevice(l: Layout): string | undefined {
  return fuseAt(l.fsDir)?.device;
}

/** Runs `f` over `items`, at most `limit` at a time. */
async function eachLimited<T>(items: readonly T[], limit: number, f: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await f(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}
const PARALLEL = 8;

/** Binds each file from the container's live copy; the first failure stops the rest. */
async function bindAll(pid: number, liveCopy: string, binds: readonly { mountPoint: string; root: string }[]) {
  for (const b of binds) {
    const err = await bindInside(pid, `${liveCopy}${b.root}`, b.mountPoint);
    if (err) return err;
  }
  return undefined;
}

/**
 * Re-binds every stale mount of this daemon (an earlier connection's) to the live
 * filesystem, through the container's slave copy of the anchor. A container without such a
 * copy cannot be re-bound: its stale mounts are detached, so it reads the host's files
 * instead of getting errors.
 */
export async function remountStale(l: Layout, only?: Selector): Promise<Report> {
  const live = liveDevice(l);
  const report = emptyReport();
  const work = scanContainers(l, live, only)
    .map((c) => ({ c, stale: c.binds.filter((b) => b.device !== live) }))
    .filter((w) => w.stale.length > 0);
  report.containers = work.length;
  await eachLimited(work, PARALLEL, async ({ c, stale }) => {
    const points = stale.map((b) => b.mountPoint);
    if (live && c.liveCopy) {
      const err = (await detachInside(c.pid, points)) ?? (await bindAll(c.pid, c.liveCopy, stale));
      if (!err) {
        report.rebound += stale.length;
        return;
      }
      report.failed.push({ pid: c.pid, error: err });
    } else {
      report.failed.push({
        pid: c.pid,
        error: `no copy of ${l.anchor} inside (mount it with slave propagation to allow re-binding): detached instead`,
      });
    }
    if (!(await detachInside(c.pid, points))) report.detached += stale.length;
  });
  return report;
}

interface Handover {
  pid: number;
  startTicks: number;
  mountNs: string;
  binds: { mountPoint: string; root: string }[];
}

/** Writes the handover record root-only, in the state directory (never in the anchor). */
function writeHandover(l: Layout, handed: Handover[]): void {
  fs.mkdirSync(l.stateDir, { recursive: true, mode: 0o700 });
  writeStateRecord(l.handoverFile, JSON.stringify(handed));
}

/** Removes this daemon's mounts from containers (they read the host's files again); records them for the next daemon if asked. */
export async function detachAll(l: Layout, o: { record: boolean; only?: Selector }): Promise<Report> {
  const report = emptyReport();
  const handed: Handover[] = [];
  const work = scanContainers(l, liveDevice(l), o.only).filter((c) => c.binds.length > 0);
  report.containers = work.length;
  await eachLimited(work, PARALLEL, async (c) => {
    const err = await detachInside(
      c.pid,
      c.binds.map((b) => b.mountPoint),
    );
    if (err) {
      report.failed.push({ pid: c.pid, error: err });
      return;
    }
    report.detached += c.binds.length;
    handed.push({
      pid: c.pid,
      startTicks: c.startTicks,
      mountNs: c.mountNs,
      binds: c.binds.map(({ mountPoint, root }) => ({ mountPoint, root })),
    });
  });
  if (o.record && handed.length) writeHandover(l, handed);
  else if (!o.record) fs.rmSync(l.handoverFile, { force: true });
  return report;
}

/** What a new daemon does at start: re-bind stale mounts, and the ones the last daemon handed over. */
export async function remountAll(l: Layout, only?: Selector): Promise<Report> {
  const report = await remountStale(l, only);
  let handed: Handover[];
  try {
    handed = JSON.parse(fs.readFileSync(l.handoverFile, "utf8")) as Handover[];
  } catch {
    return report;
  }
  const live = liveDevice(l);
  const byNs = new Map(scanContainers(l, live, only).map((c) => [c.mountNs, c]));
  // The same container: same process, same start time, same mount namespace.
  const work = handed.filter(
    (h) => (!only || h.mountNs === only) && startTicks(h.pid) === h.startTicks && readlink(`/proc/${h.pid}/ns/mnt`) === h.mountNs,
  );
  report.containers += work.length;
  await eachLimited(work, PARALLEL, async (h) => {
    const c = byNs.get(h.mountNs);
    if (!c?.liveCopy) {
      report.failed.push({ pid: h.pid, error: `no copy of ${l.anchor} inside: left on the host's files` });
      return;
    }
    const missing = h.binds.filter((b) => !c.binds.some((x) => x.mountPoint === b.mountPoint && x.device === live));
    const err = missing.length ? await bindAll(h.pid, c.liveCopy, missing) : undefined;
    if (err) report.failed.push({ pid: h.pid, error: err });
    else report.rebound += missing.length;
  });
  if (!only) fs.rmSync(l.handoverFile, { force: true });
  return report;
}
