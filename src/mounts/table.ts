// The mount table as the kernel shows it in /proc/PID/mountinfo (proc(5)).
import * as fs from "node:fs";

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

/** Parses /proc/<pid>/mountinfo; octal escapes like \040 are decoded. */
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

/** The mounts of a process's namespace, as seen from its root; [] if it is gone. */
export function mountsOf(pid: number | "self"): MountEntry[] {
  try {
    return parseMountinfo(fs.readFileSync(`/proc/${pid}/mountinfo`, "utf8"));
  } catch {
    return [];
  }
}
