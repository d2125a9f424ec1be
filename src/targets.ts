// The files procview serves that containers bind over their own, shared by the docs,
// the toolkit and the webhook, and the names the daemon's CSI plugin and the webhook must
// agree on. Every /proc entry here is in runc's allowlist of /proc files that may be
// mounted over (cpuinfo, diskstats, meminfo, stat, swaps, uptime, loadavg, slabinfo).

export interface BindTarget {
  /** Path inside procview's tree (and LXCFS's, which has the same layout). */
  source: string;
  /** Where it goes in the container. */
  dest: string;
  directory: boolean;
}

export const DEFAULT_TARGETS: readonly BindTarget[] = [
  { source: "proc/meminfo", dest: "/proc/meminfo", directory: false },
  { source: "proc/cpuinfo", dest: "/proc/cpuinfo", directory: false },
  { source: "proc/stat", dest: "/proc/stat", directory: false },
  { source: "proc/uptime", dest: "/proc/uptime", directory: false },
  { source: "proc/loadavg", dest: "/proc/loadavg", directory: false },
  { source: "proc/diskstats", dest: "/proc/diskstats", directory: false },
  { source: "proc/swaps", dest: "/proc/swaps", directory: false },
  { source: "sys/devices/system/cpu", dest: "/sys/devices/system/cpu", directory: true },
];

/** The CSI driver name: the CSIDriver object's, and the one the webhook puts in csi: volumes. */
export const CSI_DRIVER = "csi.procview.io";

/** The kubelet's pods directory, where it asks CSI volumes to be mounted. */
export const DEFAULT_PODS_DIR = "/var/lib/kubelet/pods";
