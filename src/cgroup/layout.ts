// Which hierarchy serves each controller: v1 mounts first, then the unified (v2) tree
// for the controllers it has enabled. Covers pure v1, hybrid and pure v2 alike.
import * as fs from "node:fs";
import * as path from "node:path";
import type { Controller } from "./types";

export interface Hierarchy {
  version: 1 | 2;
  dir: string;
  /**
   * The cgroup path mounted at dir, relative to our cgroup namespace's root as mountinfo
   * shows it: "/" for a whole tree seen from the host's namespace, "/kubepods/x" for a
   * container's own sub-tree (cgroup v1), "/../../.." for the host's tree seen from inside
   * a cgroup namespace three levels down (cgroup v2).
   */
  root: string;
  /**
   * Where our cgroup namespace's root really is in this tree (a path from the tree's
   * root), when the mounted tree reaches above it; "/" when we are in the host's namespace.
   */
  nsRoot?: string;
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

/**
 * How high in the real tree a mount's root is: the number of "..", negated, or the depth
 * of a sub-tree. A container sees its own sub-tree at /sys/fs/cgroup; given the host's
 * trees as well (a hostPath volume), the highest mount of each hierarchy is the one to read.
 */
export function rootHeight(root: string): number {
  const segs = root.split("/").filter(Boolean);
  const up = segs.filter((s) => s === "..").length;
  return up > 0 ? -up : segs.length;
}

export function layoutFromMounts(mounts: readonly CgroupMount[], readFile = (p: string) => fs.readFileSync(p, "utf8")): CgroupLayout {
  const layout: CgroupLayout = { v1: new Map(), v2Controllers: new Set() };
  const higher = (m: CgroupMount, h: Hierarchy | undefined) => !h || rootHeight(m.root) < rootHeight(h.root);
  for (const m of mounts) {
    if (m.fsType === "cgroup") {
      for (const opt of m.superOptions.split(",")) {
        if (KNOWN_V1.includes(opt) && higher(m, layout.v1.get(opt))) layout.v1.set(opt, { version: 1, dir: m.mountPoint, root: m.root });
      }
    } else if (m.fsType === "cgroup2" && higher(m, layout.unified)) {
      layout.unified = { version: 2, dir: m.mountPoint, root: m.root };
      layout.v2Controllers.clear();
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
