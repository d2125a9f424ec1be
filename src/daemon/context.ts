// Builds the renderer from the running system: the host's cgroup trees (./cgroup/host).
import { KeptFiles } from "../cgroup/files";
import { hostCgroupLayout } from "../cgroup/host";
import { Processes } from "../cgroup/process";
import { CgroupReader } from "../cgroup/reader";
import type { ClockStore } from "./clocks";
import { type LoadSource, Renderer } from "./render";

export function systemRenderer(
  loads: LoadSource,
  cpuQuota: boolean,
  onUnplaced?: (pid: number, procCgroup: string) => void,
  clocks?: ClockStore,
): { renderer: Renderer; files: KeptFiles; reader: CgroupReader } {
  const files = new KeptFiles();
  const reader = new CgroupReader(hostCgroupLayout(), files);
  const processes = new Processes(files);
  return { renderer: new Renderer({ files, reader, processes, loads, cpuQuota, onUnplaced, clocks }), files, reader };
}
