// The mountpoint's layout. The directory itself (the anchor) is a shared mount; the FUSE
// filesystem sits below it at .fs, and its proc and sys directories are bound onto the
// anchor's own proc and sys directories, so that <mountpoint>/proc is a real directory of
// real files as under LXCFS (`ls -l`, `find` and LXCFS's own tests see them; a symlink
// they would not follow). A container that holds a slave
// copy of the anchor sees the filesystem of every later daemon appear inside it: that is
// what lets a restarted daemon re-bind the container's files (a bind from another mount
// namespace is refused by the kernel). Nothing else lives in the anchor: every container
// can read it. The daemon's own records go to the state directory beside it, root-only.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { runBounded, runForFailure } from "./run";
import { type MountEntry, mountsOf } from "./table";

export const FS_TYPE = "fuse.procview";

/** The filesystem's top directories, each bound at <anchor>/<name> from <anchor>/.fs/<name>. */
export const TOP_DIRS = ["proc", "sys"] as const;

export interface Layout {
  anchor: string;
  fsDir: string;
  /**
   * The mount source of this anchor's filesystem. Bind mounts keep it, so it tells this
   * daemon's files in a container from another instance's.
   */
  source: string;
  /** Root-only (0700), outside the anchor: no container sees what is recorded here. */
  stateDir: string;
  /** Where a stopping daemon records the container mounts it detached, for the next one. */
  handoverFile: string;
  /** Where a running daemon listens for its successor, to hand it the connection (see daemon/handover). */
  handoverSocket: string;
  /** The pid of the process serving now, for `procview check`. */
  servingFile: string;
  /** The containers' CPU clocks, saved by a stopping daemon for the next one. */
  clocksFile: string;
  /** The load averages the daemon samples, for `procview inspect` (rewritten every 5 s). */
  loadsFile: string;
}

/** The state directory defaults to a sibling of the mountpoint: /var/lib/procview.state. */
export function layoutOf(mountpoint: string, stateDir?: string): Layout {
  const anchor = path.resolve(mountpoint);
  const state = path.resolve(stateDir ?? `${anchor}.state`);
  return {
    anchor,
    fsDir: path.join(anchor, ".fs"),
    source: `procview:${anchor}`,
    stateDir: state,
    handoverFile: path.join(state, "handover.json"),
    handoverSocket: path.join(state, "handover.sock"),
    servingFile: path.join(state, "serving.pid"),
    clocksFile: path.join(state, "cpu-clocks"),
    loadsFile: path.join(state, "loads.json"),
  };
}

/** Replaces a record in the state directory whole and root-only: a reader never sees half of one. */
export function writeStateRecord(file: string, data: string | Buffer): void {
  const tmp = `${file}.${process.pid}`;
  fs.writeFileSync(tmp, data, { mode: 0o600 });
  fs.renameSync(tmp, file);
}

export function ownMounts(): MountEntry[] {
  return mountsOf("self");
}

/** Whether anything is mounted at `dir` in our namespace. */
export const mountedAt = (dir: string): boolean => ownMounts().some((m) => m.mountPoint === dir);

/** The procview mount at `dir` in our namespace, if any (the topmost). */
export function fuseAt(dir: string): MountEntry | undefined {
  return ownMounts()
    .filter((m) => m.mountPoint === dir && m.fsType === FS_TYPE)
    .pop();
}

export class LayoutError extends Error {}

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.status !== 0) throw new LayoutError(`${cmd} ${args.join(" ")}: ${(r.stderr || r.error?.message || "failed").trim()}`);
}

export type Probe = { ok: true; text: string } | { ok: false; why: "timeout" | "ENOTCONN" | "error"; message: string };

/**
 * Reads a file through the mount in a child process, killed at the deadline: a read stuck
 * in a hung daemon would otherwise pin one of our threads and block our own exit.
 */
export async function probe(file: string, deadlineMs: number): Promise<Probe> {
  const r = await runBounded(["cat", file], deadlineMs);
  if (r.timedOut) return { ok: false, why: "timeout", message: `no answer within ${deadlineMs} ms` };
  if (r.code === 0) return { ok: true, text: r.stdout };
  if (/not connected/.test(r.stderr)) return { ok: false, why: "ENOTCONN", message: r.stderr.trim() };
  return { ok: false, why: "error", message: r.stderr.trim() || r.error || `cat exited ${r.code}` };
}

/** Whether a read through the mount reaches a daemon within two seconds. */
export async function answers(fsDir: string): Promise<boolean> {
  return (await probe(path.join(fsDir, "proc/uptime"), 2000)).ok;
}

/** Where the filesystem is mounted in the anchor: the top directories, then .fs. */
const layoutMounts = (l: Layout): string[] => [...TOP_DIRS.map((n) => path.join(l.anchor, n)), l.fsDir];

/**
 * Makes the anchor a shared mount, creates .fs and the top directories, and clears a stale
 * filesystem left at .fs by a daemon that died. Returns whether one was cleared.
 */
export async function prepareAnchor(l: Layout): Promise<{ replacedStale: boolean }> {
  if (!mountedAt(l.anchor)) run("mount", ["--bind", l.anchor, l.anchor]);
  run("mount", ["--make-shared", l.anchor]);
  // First the filesystem a dead daemon left: every access to .fs fails until it is gone.
  let replacedStale = false;
  while (layoutMounts(l).some(fuseAt)) {
    if (fuseAt(l.fsDir) && (await answers(l.fsDir)))
      throw new LayoutError(
        `${l.anchor} is already mounted and serving: is another procview running? (procview check --mountpoint ${l.anchor}; serve --take-over replaces it with no gap)`,
      );
    replacedStale = true;
    // Lazily, so that the detach reaches containers' slave copies however busy they are.
    if (!unmountFs(l)) throw new LayoutError(`cannot unmount the stale filesystem at ${l.fsDir}`);
  }
  fs.mkdirSync(l.fsDir, { recursive: true });
  fs.mkdirSync(l.stateDir, { recursive: true, mode: 0o700 });
  fs.chmodSync(l.stateDir, 0o700);
  for (const name of TOP_DIRS) {
    const dir = path.join(l.anchor, name);
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(dir);
    } catch {
      fs.mkdirSync(dir);
      continue;
    }
    // Earlier versions made these symlinks into .fs.
    if (st.isSymbolicLink() && fs.readlinkSync(dir) === `.fs/${name}`) {
      fs.unlinkSync(dir);
      fs.mkdirSync(dir);
    } else if (!st.isDirectory()) throw new LayoutError(`${dir} exists and is not a directory: move it away`);
  }
  return { replacedStale };
}

/**
 * Binds the serving filesystem's top directories onto the anchor's (the lookups need a
 * serving process, so this comes after the first answer). They propagate, as .fs does, to
 * every slave copy of the anchor.
 */
export async function bindTopDirs(l: Layout): Promise<void> {
  for (const name of TOP_DIRS) {
    // Bound already: the connection was handed over by a daemon that bound them.
    if (fuseAt(path.join(l.anchor, name))) continue;
    const argv = ["mount", "--bind", path.join(l.fsDir, name), path.join(l.anchor, name)];
    const why = await runForFailure(argv, 10_000);
    if (why) throw new LayoutError(`binding ${l.anchor}/${name}: ${why}`);
  }
}

/** Uninstall: the filesystem, the anchor and the state go; the empty top directories stay, harmless. */
export function removeAnchor(l: Layout): void {
  unmountFs(l);
  fs.rmSync(l.stateDir, { recursive: true, force: true });
  while (mountedAt(l.anchor)) if (spawnSync("umount", ["-l", l.anchor]).status !== 0) break;
}

/**
 * Unmounts the filesystem, its top directories first; the anchor and the empty directories
 * stay, for the next daemon. Returns false if a mount would not go.
 */
export function unmountFs(l: Layout): boolean {
  for (const dir of layoutMounts(l)) while (fuseAt(dir)) if (spawnSync("umount", ["-l", dir]).status !== 0) return false;
  return true;
}
