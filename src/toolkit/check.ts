// `procview check`: does the mount answer a read within a deadline? Used by the DaemonSet's
// probes and by people. Exit 0 when it does and this process can see the host's cgroup
// trees; else one line saying which failure it is.
import * as path from "node:path";
import { cgroupBlindness, HOST_CGROUP_FIX } from "../cgroup/host";
import { fuseAt, layoutOf, probe } from "../mounts/layout";

export interface CheckResult {
  ok: boolean;
  message: string;
}

export async function check(mountpoint: string, deadlineMs: number): Promise<CheckResult> {
  const dir = layoutOf(mountpoint).fsDir;
  if (!fuseAt(dir)) return { ok: false, message: `not mounted: no procview filesystem at ${dir}` };
  const started = Date.now();
  const r = await probe(path.join(dir, "proc/uptime"), deadlineMs);
  if (!r.ok) {
    if (r.why === "timeout") return { ok: false, message: `daemon not answering: ${dir} did not answer a read within ${deadlineMs} ms` };
    if (r.why === "ENOTCONN")
      return { ok: false, message: `stale mount: ${dir} answers "Transport endpoint is not connected" (its daemon is gone)` };
    return { ok: false, message: `read failed: ${dir}/proc/uptime: ${r.message}` };
  }
  if (!/^\d+\.\d\d \d+\.\d\d\n$/.test(r.text))
    return { ok: false, message: `bad answer: ${dir}/proc/uptime is ${JSON.stringify(r.text.slice(0, 40))}` };
  const ms = Date.now() - started;
  // Answering is not enough: a daemon that cannot see the host's cgroups serves every container the host's figures.
  const blind = cgroupBlindness();
  if (blind) return { ok: false, message: `blind to the host's cgroups: ${blind}; ${HOST_CGROUP_FIX}` };
  return { ok: true, message: `ok: ${dir} answered in ${ms} ms` };
}
