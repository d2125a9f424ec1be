// What the cgroup reader learns about a container; the views take these as input.

export type Controller = "memory" | "cpu" | "cpuacct" | "cpuset" | "blkio" | "pids";

/** Where one controller's cgroup for a process lives on disk. */
export interface Placement {
  version: 1 | 2;
  /** The cgroup's directory. */
  dir: string;
  /** The hierarchy's mount directory: ancestors are walked up to here. */
  top: string;
}

export interface ReaderCgroups {
  byController: Partial<Record<Controller, Placement>>;
  /** The unified (v2) cgroup, also present in hybrid mode; carries the *.pressure files. */
  unified?: Placement;
  /**
   * Set when a cgroup path of the reader lies outside the trees this process can see (a
   * "/.." path from another cgroup namespace, a path outside the mounted sub-tree, or a
   * directory that is not there): its figures cannot be read, and saying so beats guessing.
   */
  unplaced?: string;
}

/** Memory figures in bytes; `null` means unlimited. */
export interface MemoryInfo {
  version: 1 | 2;
  limit: number | null;
  usage: number;
  /** v1: the effective memory+swap limit (memory.memsw.*). */
  memswLimit?: number | null;
  /** v2: the effective swap limit (memory.swap.max). */
  swapMax?: number | null;
  swapUsage: number;
  stat: MemoryStat;
}

export interface MemoryStat {
  cache: number;
  anon: number;
  shmem: number;
  mapped: number;
  dirty: number;
  writeback: number;
  swapCached: number;
  activeAnon: number;
  inactiveAnon: number;
  activeFile: number;
  inactiveFile: number;
  unevictable: number;
  anonHuge: number;
  slabReclaimable: number;
  slabUnreclaimable: number;
  kernelStack?: number;
  pageTables?: number;
}

export interface CpuLimits {
  /** Host CPU numbers the cgroup may run on; null when no cpuset applies. */
  cpuset: number[] | null;
  /** The tightest CFS quota over the cgroup and its ancestors, in CPUs; null when none. */
  quota: number | null;
}

export interface CpuUsage {
  userNs: number;
  systemNs: number;
  /** Per host CPU (index = CPU number), when the kernel reports it (cgroup v1 cpuacct). */
  perCpu: { userNs: number; systemNs: number }[] | null;
}

export interface IoDevice {
  /** "major:minor" */
  device: string;
  rbytes: number;
  wbytes: number;
  rios: number;
  wios: number;
  dbytes: number;
  dios: number;
}

/** Tasks of a cgroup sampled for the load average. */
export interface TaskSample {
  running: number;
  uninterruptible: number;
  total: number;
  lastPid: number;
}
