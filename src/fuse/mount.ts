// Mounting and unmounting as root, with no libfuse and no fusermount: open /dev/fuse,
// hand the descriptor to mount(8) as its fd 3, and the kernel starts sending requests.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";

export interface MountOptions {
  source: string;
  /** The filesystem subtype: mounts appear as fuse.<subtype> in mountinfo. */
  subtype: string;
}

export class MountError extends Error {}

/** Opens /dev/fuse and mounts it on `dir`; returns the descriptor the server reads. */
export function mountFuse(dir: string, opts: MountOptions): number {
  const fd = fs.openSync("/dev/fuse", fs.constants.O_RDWR);
  // default_permissions: the kernel checks the mode bits we report, as it would on /proc.
  const options = "fd=3,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions";
  const r = spawnSync("mount", ["-i", "-t", `fuse.${opts.subtype}`, "-o", options, opts.source, dir], {
    stdio: ["ignore", "pipe", "pipe", fd],
    encoding: "utf8",
  });
  if (r.status !== 0) {
    fs.closeSync(fd);
    throw new MountError(`mount ${dir}: ${(r.stderr || r.error?.message || "failed").trim()}`);
  }
  return fd;
}

/** Where the kernel's FUSE control filesystem lists each connection (by device number). */
export const FUSECTL = "/sys/fs/fuse/connections";

/**
 * Mounts the FUSE control filesystem in our own mount namespace when it is not there (systemd
 * mounts it on most hosts; a container's fresh /sys has none). Its per-connection `waiting`
 * count is what `procview check` reads. Called with our own connection mounted, so an empty
 * directory is an unmounted one. True when we mounted it.
 */
export function mountFusectl(): boolean {
  if (!fs.existsSync(FUSECTL) || fs.readdirSync(FUSECTL).length > 0) return false;
  // Only in a mount namespace of our own (the DaemonSet's container): the host's is the
  // host's business, and a daemon killed outright would leave the mount there.
  try {
    if (fs.readlinkSync("/proc/self/ns/mnt") === fs.readlinkSync("/proc/1/ns/mnt")) return false;
  } catch {
    return false;
  }
  return spawnSync("mount", ["-t", "fusectl", "fusectl", FUSECTL], { stdio: "ignore" }).status === 0;
}

/** The control directory of the FUSE connection mounted at `dir`, if it can be found. */
export function connectionOf(dir: string): string | undefined {
  // Userspace's dev_t encoding; FUSE mounts are anonymous (major 0), named by their minor.
  const dev = fs.statSync(dir).dev;
  const major = Math.floor(dev / 256) & 0xfff;
  const minor = (dev & 0xff) | (Math.floor(dev / 4096) & 0xfff00);
  const conn = `${FUSECTL}/${minor}`;
  return major === 0 && fs.existsSync(`${conn}/waiting`) ? conn : undefined;
}

/** Undoes mountFusectl (lazily: another daemon may be reading it). */
export function unmountFusectl(): void {
  spawnSync("umount", ["-l", FUSECTL], { stdio: "ignore" });
}
