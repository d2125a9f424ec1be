// The mutation: read-only mounts of procview's files over each container's own, as RFC
// 6902 operations against the raw pod, so fields this code does not know survive. The files
// come from hostPath volumes (one per file), or, where Pod Security forbids hostPath, from
// one inline CSI volume of procview's node plugin, each file mounted with subPath.
import * as path from "node:path";
import { CSI_DRIVER } from "../targets";

export type JsonPatchOp = { op: "add" | "replace"; path: string; value: unknown };

/** Where the files come from: hostPath volumes, or procview's inline CSI volume. */
export type VolumeKind = "hostPath" | "csi";

/** The --volumes flag's value; throws, saying what is accepted, on anything else. */
export function volumeKind(text: string): VolumeKind {
  if (text === "hostPath" || text === "csi") return text;
  throw new Error(`"${text.slice(0, 64)}" is not hostPath or csi`);
}

/** A file to bind: where it goes in the container, and the volume it comes from. */
export interface MountTarget {
  mountPath: string;
  volumeName: string;
  /** The volume's source, as the pod spec writes it. */
  volume: { hostPath: { path: string; type: "File" | "Directory" } } | { csi: { driver: string; readOnly: true } };
  /** The file inside the volume (CSI: the one volume holds the whole tree). */
  subPath?: string;
  propagation?: "HostToContainer";
}

/** The one CSI volume every file comes from. */
export const CSI_VOLUME = "procview";

/** Where pods get a slave copy of the node's mountpoint, so a restarted daemon can re-bind their files. */
export const LIVE_MOUNT_PATH = "/run/procview";

export const DEFAULT_WEBHOOK_FILES = [
  "/proc/meminfo",
  "/proc/cpuinfo",
  "/proc/stat",
  "/proc/uptime",
  "/proc/loadavg",
  "/proc/diskstats",
  "/proc/swaps",
  "/sys/devices/system/cpu/online",
];

// What runc lets a container mount over (its /proc allowlist), and the sysfs cpu tree.
const ALLOWED = /^(\/proc\/(cpuinfo|diskstats|meminfo|stat|swaps|uptime|loadavg|slabinfo)|\/sys\/devices\/system\/cpu(\/[a-z0-9_]+)?)$/;

/** A pod opts in ("true") or out ("false") with this label (or, as before, annotation). */
export const LABEL_INJECT = "procview.io/inject";
export const ANNOTATION_INJECTED = "procview.io/injected";

/**
 * Turns container paths into mount targets under the node's mountpoint; throws on a path
 * runc would refuse. With `remountable`, one more: the mountpoint itself, HostToContainer.
 */
export function mountTargets(
  files: readonly string[],
  mountpoint: string,
  remountable = true,
  kind: VolumeKind = "hostPath",
): MountTarget[] {
  const csi = { csi: { driver: CSI_DRIVER, readOnly: true as const } };
  const live: MountTarget[] = remountable
    ? [
        kind !== "hostPath"
          ? { mountPath: LIVE_MOUNT_PATH, volumeName: CSI_VOLUME, volume: csi, propagation: "HostToContainer" }
          : {
              mountPath: LIVE_MOUNT_PATH,
              volumeName: "procview-live",
              volume: { hostPath: { path: mountpoint, type: "Directory" } },
              propagation: "HostToContainer",
            },
      ]
    : [];
  return [
    ...files.map((f): MountTarget => {
      if (!ALLOWED.test(f))
        throw new Error(
          `cannot inject ${f}: only /proc/{cpuinfo,diskstats,meminfo,stat,swaps,uptime,loadavg,slabinfo} and /sys/devices/system/cpu[/FILE]`,
        );
      if (kind !== "hostPath") return { mountPath: f, volumeName: CSI_VOLUME, volume: csi, subPath: f.slice(1) };
      return {
        mountPath: f,
        volumeName: `procview${f.replace(/\//g, "-")}`.slice(0, 63),
        volume: { hostPath: { path: path.posix.join(mountpoint, f), type: f === "/sys/devices/system/cpu" ? "Directory" : "File" } },
      };
    }),
    ...live,
  ];
}

interface RawVolume {
  name?: unknown;
  hostPath?: { path?: unknown };
  csi?: { driver?: unknown };
}

/** Whether an existing volume of that name is the one we would add. */
function isOurs(v: RawVolume, t: MountTarget): boolean {
  return "hostPath" in t.volume ? v.hostPath?.path === t.volume.hostPath.path : v.csi?.driver === t.volume.csi.driver;
}
interface RawContainer {
  volumeMounts?: { mountPath?: unknown; name?: unknown }[];
}
interface RawPod {
  metadata?: { annotations?: Record<string, unknown> };
  spec?: { volumes?: RawVolume[]; containers?: RawContainer[]; initContainers?: RawContainer[] };
}

export interface InjectResult {
  ops: JsonPatchOp[];
  /** Mount paths added to at least one container, or already there from an earlier pass. */
  injected: string[];
  warnings: string[];
}

/** JSON Pointer escaping (RFC 6901): "~" -> "~0", "/" -> "~1". */
export function pointerEscape(s: string): string {
  return s.replace(/~/g, "~0").replace(/\//g, "~1");
}

/**
 * The patch that adds our volumes and mounts. A container that already mounts a path keeps
 * its own; a volume name taken by something else makes us skip that file; a second pass
 * over a pod we already patched yields no operations.
 */
export function injectMounts(pod: RawPod, targets: readonly MountTarget[]): InjectResult {
  const ops: JsonPatchOp[] = [];
  const warnings: string[] = [];
  const spec = pod.spec ?? {};
  const volumes = Array.isArray(spec.volumes) ? spec.volumes : undefined;
  const byName = new Map((volumes ?? []).map((v) => [v.name, v]));

  const usable = targets.filter((t) => {
    const v = byName.get(t.volumeName);
    if (v && !isOurs(v, t)) {
      warnings.push(`volume ${t.volumeName} already exists and is not procview's: ${t.mountPath} not injected`);
      return false;
    }
    return true;
  });

  const neededVolumes = new Set<string>();
  const done = new Set<string>();
  for (const [field, list] of [
    ["containers", spec.containers],
    ["initContainers", spec.initContainers],
  ] as const) {
    if (!Array.isArray(list)) continue;
    list.forEach((c, i) => {
      const mounts = Array.isArray(c.volumeMounts) ? c.volumeMounts : undefined;
      const taken = new Set((mounts ?? []).map((m) => m.mountPath));
      const add = usable.filter((t) => !taken.has(t.mountPath));
      for (const t of usable)
        if (taken.has(t.mountPath) && (mounts ?? []).some((m) => m.mountPath === t.mountPath && m.name === t.volumeName))
          done.add(t.mountPath);
      if (add.length === 0) return;
      const entries = add.map((t) => ({
        name: t.volumeName,
        mountPath: t.mountPath,
        readOnly: true,
        ...(t.subPath ? { subPath: t.subPath } : {}),
        ...(t.propagation ? { mountPropagation: t.propagation } : {}),
      }));
      const base = `/spec/${field}/${i}/volumeMounts`;
      if (mounts) for (const e of entries) ops.push({ op: "add", path: `${base}/-`, value: e });
      else ops.push({ op: "add", path: base, value: entries });
      for (const t of add) {
        neededVolumes.add(t.volumeName);
        done.add(t.mountPath);
      }
    });
  }

  // One volume per name (every CSI target shares one).
  const newVolumes = [
    ...new Map(
      usable
        .filter((t) => neededVolumes.has(t.volumeName) && !byName.has(t.volumeName))
        .map((t) => [t.volumeName, { name: t.volumeName, ...t.volume }]),
    ).values(),
  ];
  if (newVolumes.length) {
    // Volumes first, so that every mount added after refers to a volume that exists.
    const volumeOps: JsonPatchOp[] = volumes
      ? newVolumes.map((v) => ({ op: "add", path: "/spec/volumes/-", value: v }))
      : [{ op: "add", path: "/spec/volumes", value: newVolumes }];
    ops.unshift(...volumeOps);
  }

  const injected = targets.filter((t) => done.has(t.mountPath)).map((t) => t.mountPath);
  const record = injected.join(",");
  const annotations = pod.metadata?.annotations;
  if (ops.length > 0 && annotations?.[ANNOTATION_INJECTED] !== record) {
    if (!pod.metadata) ops.push({ op: "add", path: "/metadata", value: { annotations: { [ANNOTATION_INJECTED]: record } } });
    else if (!annotations) ops.push({ op: "add", path: "/metadata/annotations", value: { [ANNOTATION_INJECTED]: record } });
    else ops.push({ op: "add", path: `/metadata/annotations/${pointerEscape(ANNOTATION_INJECTED)}`, value: record });
  }
  return { ops, injected, warnings };
}
