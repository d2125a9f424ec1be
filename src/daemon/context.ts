// Builds the renderer from the running system: cgroup mounts from our mountinfo.
import * as fs from "node:fs";
import { KeptFiles } from "../cgroup/files";
import { layoutFromMounts } from "../cgroup/layout";
import { Processes } from "../cgroup/process";
import { CgroupReader } from "../cgroup/reader";
import { parseMountinfo } from "../mounts/table";
import { type LoadSource, Renderer } from "./render";

export function systemRenderer(loads: LoadSource, cpuQuota: boolean): { renderer: Renderer; files: KeptFiles; reader: CgroupReader } {
  const files = new KeptFiles();
  const layout = layoutFromMounts(parseMountinfo(fs.readFileSync("/proc/self/mountinfo", "utf8")));
  const reader = new CgroupReader(layout, files);
  const processes = new Processes(files);
  return { renderer: new Renderer({ files, reader, processes, loads, cpuQuota }), files, reader };
}
