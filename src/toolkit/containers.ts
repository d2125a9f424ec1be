// Containers' procview mounts, seen from the host: find them (every mount namespace's
// mountinfo), re-bind the stale ones to the live filesystem, detach them, or hand them
// over to the next daemon. Changes happen inside each container's own mount namespace
// (nsenter), so nothing leaks into the host's mount table.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { parseMountinfo } from "../fuse/mount";
import { statFields } from "../cgroup/process";
import { FS_TYPE, fuseAt, type Layout } from "../daemon/layout";

export interface Bind {
  /** Where the file is mounted in the container, e.g. /proc/meminfo. */
  mountPoint: string;
  /** Which file of procview's tree, e.g. /proc/meminfo. */
  root: string;
  device: string;
}

/**
 * A bind whose daemon is gone answers ENOTCONN; probed through the container's own root.
 * With open, not stat: the kernel answers stat from its attribute cache, but sends every open.
 */
function isStale(pid: number, b: Bind): boolean {
  try {
    fs.closeSync(fs.openSync(`/proc/${pid}/root${b.mountPoint}`, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK));
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ENOTCONN";
  }
}

export interface ContainerMounts {
  pid: number;
  mountNs: string;
  startTicks: number;
  binds: Bind[];
  /** A live copy of the filesystem inside the container (through its slave copy of the anchor). */
  liveCopy?: string;
}

/** A container's mount namespace ("mnt:[4026532...]"); undefined selects them all. */
export type Selector = string;

export class SelectError extends Error {}

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

/** A container by id: runc's state if runc knows it, else the first process whose cgroup path names it. */
export function selectContainerId(id: string): Selector {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{2,}$/.test(id)) throw new SelectError(`"${id}" is not a container id`);
  const r = spawnSync("runc", ["state", id], { encoding: "utf8" });
  if (r.status === 0) return selectPid((JSON.parse(r.stdout) as { pid: number }).pid);
  for (const e of fs.readdirSync("/proc").filter((x) => /^\d+$/.test(x))) {
    let cg: string;
    try {
      cg = fs.readFileSync(`/proc/${e}/cgroup`, "utf8");
    } catch {
      continue;
    }
    if (cg.includes(id)) {
      try {
        return selectPid(Number(e));
      } catch {
        continue;
      }
    }
  }
  throw new SelectError(`no running container ${id}`);
}

export interface Report {
  containers: number;
  rebound: number;
  detached: number;
  failed: { pid: number; error: string }[];
}

function startTicks(pid: number): number {
  try {
    return Number(statFields(fs.readFileSync(`/proc/${pid}/stat`, "utf8"))[19]);
  } catch {
    return -1;
  }
}

function readlink(p: string): string | undefined {
  try {
    return fs.readlinkSync(p);
  } catch {
    return undefined;
  }
}

/** Every other mount namespace that holds a procview mount, one entry per namespace. */
export function scanContainers(liveDevice: string | undefined, only?: Selector): ContainerMounts[] {
  const ownNs = readlink("/proc/self/ns/mnt");
  const seen = new Set<string>();
  const out: ContainerMounts[] = [];
  const pids = fs
    .readdirSync("/proc")
    .filter((e) => /^\d+$/.test(e))
    .map(Number)
    .sort((a, b) => a - b);
  for (const pid of pids) {
    const ns = readlink(`/proc/${pid}/ns/mnt`);
    if (!ns || ns === ownNs || seen.has(ns) || (only && only !== ns)) continue;
    seen.add(ns);
    let text: string;
    try {
      text = fs.readFileSync(`/proc/${pid}/mountinfo`, "utf8");
    } catch {
      continue;
    }
    const ours = parseMountinfo(text).filter((m) => m.fsType === FS_TYPE);
    if (ours.length === 0) continue;
    const c: ContainerMounts = { pid, mountNs: ns, startTicks: startTicks(pid), binds: [] };
    for (const m of ours) {
      if (m.root === "/") {
        if (m.device === liveDevice && (!c.liveCopy || m.mountPoint.length < c.liveCopy.length)) c.liveCopy = m.mountPoint;
      } else {
        c.binds.push({ mountPoint: m.mountPoint, root: m.root, device: m.device });
      }
    }
    out.push(c);
  }
  return out;
}

/** Single-quotes a path for sh. */
export const shellQuote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
const q = shellQuote;

/** Runs a shell script inside the container: its mount and pid namespaces, its root. */
function inContainer(pid: number, script: string): string | undefined {
  const r = spawnSync("nsenter", ["-t", String(pid), "-m", "-p", "-r", "-w", "--", "/bin/sh", "-c", script], {
    encoding: "utf8",
    timeout: 10_000,
  });
  if (r.status === 0) return undefined;
  const why = (r.stderr || r.error?.message || `exit ${r.status}`).trim().split("\n").pop() ?? "";
  return /No such file|not found/.test(why) && /sh/.test(why) ? `no /bin/sh in the container: ${why}` : why;
}

function bindScript(liveCopy: string, binds: readonly { mountPoint: string; root: string }[], unmountFirst: boolean): string {
  return binds
    .map((b) => {
      const src = q(`${liveCopy}${b.root}`);
      const dst = q(b.mountPoint);
      return `${unmountFirst ? `umount -l ${dst}; ` : ""}mount --bind ${src} ${dst} && mount -o remount,bind,ro ${dst}`;
    })
    .join(" && ");
}

export function liveDevice(l: Layout): string | undefined {
  return fuseAt(l.fsDir)?.device;
}

/**
 * Re-binds every stale procview mount (its daemon gone) to the live filesystem, through the
 * container's slave copy of the anchor. A container without such a copy cannot be re-bound:
 * its stale mounts are detached, so it reads the host's files instead of getting errors.
 */
export function remountStale(l: Layout, only?: Selector): Report {
  const live = liveDevice(l);
  const report: Report = { containers: 0, rebound: 0, detached: 0, failed: [] };
  for (const c of scanContainers(live, only)) {
    const stale = c.binds.filter((b) => isStale(c.pid, b));
    if (stale.length === 0) continue;
    report.containers++;
    if (live && c.liveCopy) {
      const err = inContainer(c.pid, bindScript(c.liveCopy, stale, true));
      if (!err) {
        report.rebound += stale.length;
        continue;
      }
      report.failed.push({ pid: c.pid, error: err });
    } else {
      report.failed.push({
        pid: c.pid,
        error: `no copy of ${l.anchor} inside (mount it with slave propagation to allow re-binding): detached instead`,
      });
    }
    if (!inContainer(c.pid, stale.map((b) => `umount -l ${q(b.mountPoint)}`).join("; "))) report.detached += stale.length;
  }
  return report;
}

interface Handover {
  pid: number;
  startTicks: number;
  mountNs: string;
  binds: { mountPoint: string; root: string }[];
}

/** Removes procview's mounts from containers (they read the host's files again); records them for the next daemon if asked. */
export function detachAll(l: Layout, o: { record: boolean; only?: Selector }): Report {
  const report: Report = { containers: 0, rebound: 0, detached: 0, failed: [] };
  const handed: Handover[] = [];
  const live = liveDevice(l);
  for (const c of scanContainers(live, o.only)) {
    // Ours: served by this daemon's connection, or left stale by an earlier one.
    const binds = c.binds.filter((b) => b.device === live || isStale(c.pid, b));
    if (binds.length === 0) continue;
    report.containers++;
    const err = inContainer(c.pid, binds.map((b) => `umount -l ${q(b.mountPoint)}`).join("; "));
    if (err) {
      report.failed.push({ pid: c.pid, error: err });
      continue;
    }
    report.detached += binds.length;
    handed.push({
      pid: c.pid,
      startTicks: c.startTicks,
      mountNs: c.mountNs,
      binds: binds.map(({ mountPoint, root }) => ({ mountPoint, root })),
    });
  }
  if (o.record && handed.length) fs.writeFileSync(l.handoverFile, JSON.stringify(handed));
  else if (!o.record) fs.rmSync(l.handoverFile, { force: true });
  return report;
}

/** What a new daemon does at start: re-bind stale mounts, and the ones the last daemon handed over. */
export function remountAll(l: Layout, only?: Selector): Report {
  const report = remountStale(l, only);
  let handed: Handover[];
  try {
    handed = JSON.parse(fs.readFileSync(l.handoverFile, "utf8")) as Handover[];
  } catch {
    return report;
  }
  const live = liveDevice(l);
  const byNs = new Map(scanContainers(live, only).map((c) => [c.mountNs, c]));
  for (const h of handed) {
    // The same container: same process, same start time, same mount namespace.
    if (startTicks(h.pid) !== h.startTicks || readlink(`/proc/${h.pid}/ns/mnt`) !== h.mountNs) continue;
    const c = byNs.get(h.mountNs);
    report.containers++;
    if (!c?.liveCopy) {
      report.failed.push({ pid: h.pid, error: `no copy of ${l.anchor} inside: left on the host's files` });
      continue;
    }
    const missing = h.binds.filter((b) => !c.binds.some((x) => x.mountPoint === b.mountPoint && x.device === live));
    const err = missing.length ? inContainer(h.pid, bindScript(c.liveCopy, missing, false)) : undefined;
    if (err) report.failed.push({ pid: h.pid, error: err });
    else report.rebound += missing.length;
  }
  if (!only) fs.rmSync(l.handoverFile, { force: true });
  return report;
}
