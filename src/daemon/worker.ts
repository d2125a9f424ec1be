// The serving thread: loads and warms the read path, says it is warm, waits for the go
// flag, then blocks in read(2) on /dev/fuse and answers every request. Told to park (the
// supervisor's own serving thread, handing back to a serving process), it stops after the
// request it is answering and waits for the next go.
import { parentPort, workerData } from "node:worker_threads";
import { requestResend, serveLoop } from "../fuse/server";
import { clockStore } from "./clocks";
import { systemRenderer } from "./context";
import { ReadCounters } from "./counters";
import { PortLoads } from "./loads";
import type { CpuClock } from "../views/stat";
import { ProcviewTree } from "./tree";
import { Reclaimer } from "./reclaim";
import { GO_FLAG, GO_PARK, GO_PRIOR_FAILED, type FromWorker, type WorkerConfig } from "./worker-config";

const cfg = workerData as WorkerConfig;
const reclaim = new Reclaimer();
// A reader we cannot place is served the host's files: say so once per cgroup, with its pid
// and what the kernel showed us, so that an operator can tell a layout problem from a bug.
const told = new Set<string>();
const onUnplaced = (pid: number, procCgroup: string) => {
  if (told.has(procCgroup) || told.size >= 1024) return;
  told.add(procCgroup);
  const msg = "a reader's cgroup is outside the cgroup trees this daemon can see; it gets the host's files";
  process.stderr.write(`${JSON.stringify({ level: 40, time: Date.now(), component: "serve", pid, cgroup: procCgroup.trim(), msg })}\n`);
};
const loads = new PortLoads(cfg.loadPort);
// The CPU clocks are shared with the serving process while this one is a standby: its
// warm-up renders read them but write nothing there until it serves.
const shared = clockStore(cfg.clocksFd, cfg.hostCpus);
let standby = true;
const clocks = {
  get: (k: string) => shared.get(k),
  set: (k: string, c: CpuClock) => {
    if (!standby) shared.set(k, c);
  },
};
const { renderer, files } = systemRenderer(loads, cfg.cpuQuota, onUnplaced, clocks);
const counters = new ReadCounters(cfg.metrics);
const tree = new ProcviewTree(renderer, undefined, (view, r, us, container) => counters.record(view, r, us, container), cfg.generation);
// Warm the read path (cgroup files, host files, views) before the first real request.
for (const v of ["proc/meminfo", "proc/cpuinfo", "proc/stat", "proc/uptime", "proc/loadavg", "proc/diskstats", "proc/swaps"] as const)
  renderer.render(v, process.pid, 0);
// What warming up left behind goes before we wait, perhaps for a long time.
reclaim.reclaimNow();
parentPort?.postMessage({ warm: true } satisfies FromWorker);
const parkAsked = () => Atomics.load(cfg.go, GO_PARK) === 1;
for (;;) {
  // Warm: wait (this thread has nothing else to do) until told to serve; a go that came
  // while warming is already set, and this returns at once.
  Atomics.wait(cfg.go, GO_FLAG, 0);
  standby = false;
  // Whatever a predecessor read but never answered comes back to us: resent by the kernel
  // (FUSE 7.40+), or from the journal it kept (older kernels).
  requestResend(cfg.fd);
  const priorFailed = Atomics.load(cfg.go, GO_PRIOR_FAILED) === 1;
  const unmounted = serveLoop(
    cfg.fd,
    tree,
    { fd: cfg.journalFd, priorFailed },
    () => {
      loads.drain();
      reclaim.maybe(files.sweep() > 0);
    },
    parkAsked,
  );
  if (unmounted) break;
  // Parked: whoever serves next gets the handles this thread issued, and their releases;
  // kept descriptors would hold removed cgroups' kernel objects for as long as it stays parked.
  standby = true;
  tree.forgetHandles();
  files.close();
  Atomics.store(cfg.go, GO_PARK, 0);
  Atomics.store(cfg.go, GO_FLAG, 0);
  parentPort?.postMessage({ parked: true } satisfies FromWorker);
  reclaim.reclaimNow();
}
