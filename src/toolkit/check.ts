// `procview check`: does the mount answer a read within a deadline? Used by the DaemonSet's
// probes and by people. Exit 0 when it does, no earlier read is stuck for good (a serving
// process died with it, on a kernel that cannot resend) and this process can see the host's
// cgroup trees; else one line saying which failure it is.
import * as fs from "node:fs";
import * as path from "node:path";
import { cgroupBlindness, HOST_CGROUP_FIX } from "../cgroup/host";
import { statFields } from "../cgroup/process";
import { connectionOf, FUSECTL } from "../fuse/mount";
import { fuseAt, layoutOf, probe } from "../mounts/layout";

export interface CheckResult {
  ok: boolean;
  message: string;
}

export async function check(mountpoint: string, deadlineMs: number, stateDir?: string): Promise<CheckResult> {
  const dir = layoutOf(mountpoint, stateDir).fsDir;
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
  const stuck = await stuckRequests(dir, layoutOf(mountpoint, stateDir).servingFile, Math.min(1000, deadlineMs));
  if (typeof stuck === "number" && stuck > 0)
    return {
      ok: false,
      message: `requests stuck: ${stuck} read(s) on ${dir} wait for a reply no serving process will send (read by one that died); their readers stay blocked until the daemon restarts`,
    };
  // Answering is not enough: a daemon that cannot see the host's cgroups serves every container the host's figures.
  const blind = cgroupBlindness();
  if (blind) return { ok: false, message: `blind to the host's cgroups: ${blind}; ${HOST_CGROUP_FIX}` };
  return {
    ok: true,
    message: `ok: ${dir} answered in ${ms} ms${typeof stuck === "string" ? ` (stuck requests not checked: ${stuck})` : ""}`,
  };
}

const IDLE_SAMPLES_NEEDED = 5;

/**
 * Whether the serving process `pid` is idle at this moment: a thread of it waits in read(2)
 * on /dev/fuse (a serving thread), or its main thread waits in epoll_wait(2) with no thread
 * running (a serving process that serves from its event loop, woken whenever /dev/fuse has a
 * request). Throws when the process is gone.
 */
function servingIdle(pid: number): boolean {
  const tasks = fs.readdirSync(`/proc/${pid}/task`);
  // A thread that ended meanwhile waits on nothing and runs nothing (the process itself
  // being gone shows in the readdir above).
  const read = (t: string, file: string) => {
    try {
      return fs.readFileSync(`/proc/${pid}/task/${t}/${file}`, "utf8");
    } catch {
      return "";
    }
  };
  const waits = new Map(tasks.map((t) => [t, read(t, "wchan")]));
  if ([...waits.values()].includes("fuse_dev_do_read")) return true;
  if (!EPOLL_WAITS.has(waits.get(String(pid)) ?? "")) return false;
  return tasks.every((t) => {
    const stat = read(t, "stat");
    return stat === "" || statFields(stat)[0] !== "R";
  });
}
const EPOLL_WAITS = new Set(["do_epoll_wait", "ep_poll"]);

/**
 * Requests the kernel counts as waiting for a reply while the serving process sits idle
 * (servingIdle): nobody will ever answer them. Sampled every 20 ms for `windowMs`; the
 * fewest waiting at an idle moment is the count (a request that arrives between the two
 * reads of a sample is gone by the next). A string says why it cannot be told.
 */
export async function stuckRequests(fsDir: string, servingFile: string, windowMs: number): Promise<number | string> {
  const conn = connectionOf(fsDir);
  if (!conn) return `no FUSE control filesystem at ${FUSECTL} (mount -t fusectl fusectl ${FUSECTL})`;
  let pid: number;
  try {
    pid = Number(fs.readFileSync(servingFile, "utf8"));
  } catch {
    return `no ${servingFile}`;
  }
  const idleCounts: number[] = [];
  for (const end = Date.now() + windowMs; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) {
    let idle: boolean;
    try {
      idle = servingIdle(pid);
    } catch {
      return `the serving process ${pid} is gone`;
    }
    if (idle) idleCounts.push(Number(fs.readFileSync(`${conn}/waiting`, "utf8")));
  }
  return idleCounts.length < IDLE_SAMPLES_NEEDED ? "the serving process was never idle" : Math.min(...idleCounts);
}
