// Which hierarchy serves each controller: v1 mounts first, then the unified (v2) tree
// for the controllers it has enabled. Covers pure v1, hybrid and pure v2 alike.
import * as fs from "node:fs";
import * as path from "node:path";
import type { Controller } from "./types";

export interface Hierarchy {
  version: 1 | 2;
  dir: string;
  /** The cgroup path mounted at dir (not "/" inside a cgroup namespace). */
  root: string;
}

export interface CgroupLayout {
  v1: Map<string, Hierarchy>;
  unified?: Hierarchy;
  /** Controllers enabled on the unified tree (from its cgroup.controllers). */
  v2Controllers: Set<string>;
}

export interface CgroupMount {
  mountPoint: string;
  root: string;
  fsType: string;
  superOptions: string;
}

const KNOWN_V1 = ["memory", "cpu", "cpuacct", "cpuset", "blkio", "pids"];

export function layoutFromMounts(mounts: readonly CgroupMount[], readFile = (p: string) => fs.readFileSync(p, "utf8")): CgroupLayout {
  const layout: CgroupLayout = { v1: new Map(), v2Controllers: new Set() };
  for (const m of mounts) {
    if (m.fsType === "cgroup") {
      for (const opt of m.superOptions.split(",")) {
        if (KNOWN_V1.includes(opt) && !layout.v1.has(opt)) layout.v1.set(opt, { version: 1, dir: m.mountPoint, root: m.root });
      }
    } else if (m.fsType === "cgroup2" && !layout.unified) {
      layout.unified = { version: 2, dir: m.mountPoint, root: m.root };
      try {
        for (const c of readFile(path.join(m.mountPoint, "cgroup.controllers")).split(/\s+/)) if (c) layout.v2Controllers.add(c);
      } catch {
        // no controllers readable: the unified tree serves only pressure and cpu.stat
      }
    }
  }
  return layout;
}

// v2 names of the v1 controllers we read.
const V2_NAME: Record<Controller, string> = { memory: "memory", cpu: "cpu", cpuacct: "cpu", cpuset: "cpuset", blkio: "io", pids: "pids" };

/** The hierarchy that serves `c`, or undefined when no mounted tree has it. */
export function hierarchyFor(layout: CgroupLayout, c: Controller): Hierarchy | undefined {
  const v1 = layout.v1.get(c);
  if (v1) return v1;
  if (layout.unified && layout.v2Controllers.has(V2_NAME[c])) return layout.unified;
  // cpu.stat exists in every v2 cgroup even without the cpu controller enabled.
  if (c === "cpuacct" && layout.unified && layout.v1.size === 0) return layout.unified;
  return undefined;
}
