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

/** Unmounts `dir`; lazily if it is busy, so a reader holding a file cannot block shutdown. */
export function unmount(dir: string): boolean {
  if (spawnSync("umount", [dir], { stdio: "ignore" }).status === 0) return true;
  return spawnSync("umount", ["-l", dir], { stdio: "ignore" }).status === 0;
}

export interface MountEntry {
  id: number;
  /** "major:minor" of the filesystem: tells one FUSE connection from another. */
  device: string;
  mountPoint: string;
  root: string;
  fsType: string;
  source: string;
  superOptions: string;
}

/** Parses /proc/<pid>/mountinfo (proc(5)); octal escapes like \040 are decoded. */
export function parseMountinfo(text: string): MountEntry[] {
  const decode = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
  const out: MountEntry[] = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    const [left, right] = line.split(" - ");
    if (right === undefined) continue;
    const f = left.split(" ");
    const r = right.split(" ");
    out.push({
      id: Number(f[0]),
      device: f[2],
      root: decode(f[3]),
      mountPoint: decode(f[4]),
      fsType: r[0],
      source: decode(r[1] ?? ""),
      superOptions: r[2] ?? "",
    });
  }
  return out;
}
