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
