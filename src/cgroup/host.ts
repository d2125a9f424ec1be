// Where this process finds the host's cgroup trees. On the host that is its own mount table.
// Inside a container (the DaemonSet pod, hostPID) its own /sys/fs/cgroup is the container's:
// on cgroup v1 runc binds each hierarchy to the container's own cgroup, on v2 a private
// cgroup namespace mounts only its sub-tree. The pod therefore also gets the host's
// /sys/fs/cgroup (a hostPath volume). Reaching them through /proc/1/root instead needs
// ptrace access to the host's init, which a sandbox can deny even to privileged root
// (measured here: EACCES, the init holding a capability we lack).
import * as fs from "node:fs";
import * as path from "node:path";
import { parseMountinfo } from "../mounts/table";
import { type CgroupLayout, type Hierarchy, layoutFromMounts } from "./layout";
import { CgroupReader, parseProcCgroup, under } from "./reader";
import { KeptFiles } from "./files";

/** Directories exactly `depth` levels below `dir` (at most `cap` of them). */
function dirsAt(dir: string, depth: number, cap = 20_000): string[] {
  let level = [dir];
  for (let i = 0; i < depth && level.length > 0; i++) {
    const next: string[] = [];
    for (const d of level) {
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(d, { withFileTypes: true });
      } catch {
        continue;
      }
      for (const e of entries) if (e.isDirectory() && next.length < cap) next.push(path.join(d, e.name));
    }
    level = next;
  }
  return level;
}

/**
 * For each mounted tree that reaches above our cgroup namespace (its root shown as
 * "/../.."), finds where the namespace's root is, from where our own process sits: the
 * directory at the right depth whose cgroup.procs lists `pid`. Readers' paths are shown
 * relative to that root, so this is what places them. Changes `layout`; returns the
 * hierarchies it could not resolve.
 */
export function resolveNamespaceRoots(layout: CgroupLayout, ownProcCgroup: string, pid: number): string[] {
  const own = parseProcCgroup(ownProcCgroup);
  const unresolved: string[] = [];
  const trees: [string, Hierarchy | undefined][] = [...layout.v1.entries(), ["", layout.unified]];
  for (const [key, h] of trees) {
    if (!h || !h.root.split("/").includes("..")) continue;
    const mine = own.get(key);
    const up = h.root.split("/").filter((s) => s === "..").length;
    if (mine === undefined || mine.split("/").includes("..") || h.root !== `/${Array(up).fill("..").join("/")}`) {
      unresolved.push(key || "unified");
      continue;
    }
    const below = mine.split("/").filter(Boolean);
    const found = dirsAt(h.dir, up + below.length).find((d) => {
      try {
        return fs.readFileSync(path.join(d, "cgroup.procs"), "utf8").split("\n").includes(String(pid));
      } catch {
        return false;
      }
    });
    if (!found) {
      unresolved.push(key || "unified");
      continue;
    }
    // found = <mount>/<namespace root>/<our path below it>
    const rel = path.relative(h.dir, found).split("/");
    h.nsRoot = `/${rel.slice(0, up).join("/")}`;
  }
  return unresolved;
}

/**
 * The cgroup trees as this process can read them. In a container that is given the host's
 * /sys/fs/cgroup (the DaemonSet's hostPath volume) beside its own, the highest mount of each
 * hierarchy wins (./layout), and a cgroup namespace is seen through (above).
 */
export function hostCgroupLayout(): CgroupLayout {
  const layout = layoutFromMounts(parseMountinfo(fs.readFileSync("/proc/self/mountinfo", "utf8")));
  let own = "";
  try {
    own = fs.readFileSync("/proc/self/cgroup", "utf8");
  } catch {
    // no /proc: nothing to resolve
  }
  // A tree left unresolved keeps its "/.." readers unplaced: logged and counted as such.
  resolveNamespaceRoots(layout, own, process.pid);
  return layout;
}

/**
 * Why this process cannot see the host's cgroup trees, or undefined when it can: the host's
 * init (pid 1 in the host's pid namespace) must sit at the root of every hierarchy we use.
 */
export function hostCgroupProblem(layout: CgroupLayout, files: KeptFiles): string | undefined {
  const reader = new CgroupReader(layout, files);
  const text = files.read("/proc/1/cgroup");
  if (text === undefined) return "/proc/1/cgroup cannot be read";
  const cg = reader.fromProcCgroup(text);
  if (cg.unplaced) return `pid 1's cgroup ${cg.unplaced} is outside the cgroup trees mounted here`;
  if (Object.keys(cg.byController).length === 0) return "no cgroup hierarchy with the memory, cpu or cpuset controller is mounted";
  // The host's init sits at the root of every tree (on v2 with systemd, in /init.scope); a
  // container's init does not. Seen from inside a cgroup namespace its path is relative
  // ("/.."): where it really is comes from the namespace's root found at start.
  for (const [controllers, p] of parseProcCgroup(text)) {
    const h = controllers === "" ? layout.unified : layout.v1.get(controllers);
    const real = under(h?.nsRoot ?? "/", p) ?? p;
    if (real !== "/" && real !== "/init.scope")
      return `pid 1 is in cgroup ${controllers || "(v2)"}:${p}, so it is not the host's init (hostPID)`;
  }
  return undefined;
}

export const HOST_CGROUP_FIX =
  "run the daemon in the host's pid namespace with the host's /sys/fs/cgroup mounted (hostPID: true and a hostPath volume of /sys/fs/cgroup, as deploy/base/daemonset.yaml does)";

/** The problem with this process's view of the host's cgroups, from a fresh look; undefined if none. */
export function cgroupBlindness(): string | undefined {
  const files = new KeptFiles();
  try {
    return hostCgroupProblem(hostCgroupLayout(), files);
  } finally {
    files.close();
  }
}
