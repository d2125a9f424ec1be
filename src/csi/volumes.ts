// Inline ephemeral CSI volumes: each is a read-only copy of the mountpoint (the anchor with
// the filesystem and its proc and sys), mounted where the kubelet asks, so that a pod in a
// namespace whose Pod Security level forbids hostPath still gets procview's files (with
// subPath) and, at /run/procview, the copy a later daemon re-binds them from.
//
// Each volume must be a *slave* of the anchor: it receives every later daemon's
// filesystem, and nothing done to it reaches the anchor. A plain bind of the anchor would
// join the anchor's peer group; the kubelet's pods directory is shared with the host, so
// that peer would be copied there, and unmounting a volume would then unmount the
// filesystem under the anchor for every container on the node. So the daemon first keeps
// one slave copy (the source) under a private mount of its state directory, where nothing
// propagates, and binds volumes from it: a bind of a slave is a slave of the same master.
import * as fs from "node:fs";
import * as path from "node:path";
import { type Layout, mountedAt } from "../mounts/layout";
import { runForFailure } from "../mounts/run";
import { EscapeError, resolveInRoot } from "../mounts/securejoin";

export class VolumeError extends Error {
  constructor(
    message: string,
    /** The request was wrong (INVALID_ARGUMENT), not our state (INTERNAL). */
    readonly invalid = false,
  ) {
    super(message);
  }
}

const DEADLINE_MS = 10_000;

async function run(argv: string[]): Promise<void> {
  const why = await runForFailure(argv, DEADLINE_MS);
  if (why) throw new VolumeError(`${argv.join(" ")}: ${why}`);
}

/** The slave copy volumes are bound from: <state>/csi/source, in a private mount of <state>/csi. */
export function sourceOf(l: Layout): { privateDir: string; source: string } {
  const privateDir = path.join(l.stateDir, "csi");
  return { privateDir, source: path.join(privateDir, "source") };
}

/** Makes the source afresh (a daemon that died leaves the old one behind). */
export async function prepareSource(l: Layout): Promise<void> {
  const { privateDir, source } = sourceOf(l);
  await releaseSource(l);
  fs.mkdirSync(privateDir, { recursive: true, mode: 0o700 });
  await run(["mount", "--bind", privateDir, privateDir]);
  await run(["mount", "--make-private", privateDir]);
  fs.mkdirSync(source, { recursive: true });
  await run(["mount", "--rbind", l.anchor, source]);
  await run(["mount", "--make-rslave", source]);
}

export async function releaseSource(l: Layout): Promise<void> {
  const { privateDir } = sourceOf(l);
  while (mountedAt(privateDir)) await run(["umount", "-l", privateDir]);
}

/**
 * A target path the kubelet gave: absolute, plain (no "." or ".." or doubled "/"), strictly
 * inside the kubelet's pods directory, and reached there without a symbolic link.
 */
export function checkTarget(podsDir: string, target: string): void {
  if (!target) throw new VolumeError("target_path is required", true);
  if (!path.isAbsolute(target) || path.normalize(target) !== target || target.endsWith("/"))
    throw new VolumeError(`target_path ${JSON.stringify(target.slice(0, 256))} is not a plain absolute path`, true);
  const rel = path.relative(podsDir, target);
  if (!rel || rel.startsWith("..") || path.isAbsolute(rel))
    throw new VolumeError(`target_path ${target} is not inside the kubelet's pods directory ${podsDir}`, true);
  let resolved: string;
  try {
    resolved = resolveInRoot(podsDir, `/${rel}`);
  } catch (e) {
    if (e instanceof EscapeError) throw new VolumeError(`target_path ${target}: ${e.message}`, true);
    throw e;
  }
  if (resolved !== `/${rel}`) throw new VolumeError(`target_path ${target} goes through a symbolic link`, true);
}

/** Mounts a volume at `target` (idempotent: a target already mounted is left as it is). */
export async function publish(l: Layout, target: string): Promise<void> {
  if (mountedAt(target)) return;
  fs.mkdirSync(target, { recursive: true, mode: 0o755 });
  try {
    await run(["mount", "--rbind", "-o", "ro", sourceOf(l).source, target]);
  } catch (e) {
    await unpublish(target).catch(() => undefined);
    throw e;
  }
}

/** Unmounts the volume at `target` with everything under it, and removes the directory (idempotent). */
export async function unpublish(target: string): Promise<void> {
  while (mountedAt(target)) await run(["umount", "-l", target]);
  try {
    fs.rmdirSync(target);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "ENOENT") throw new VolumeError(`removing ${target}: ${code}`);
  }
}
