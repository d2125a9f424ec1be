// `procview check`: does the mount answer a read within a deadline? Used by the DaemonSet's
// probes and by people. Exit 0 when it does; else one line saying which failure it is.
import * as fs from "node:fs";
import * as path from "node:path";
import { FS_TYPE } from "../daemon/serve";
import { parseMountinfo } from "../fuse/mount";

export interface CheckResult {
  ok: boolean;
  message: string;
}

export async function check(mountpoint: string, deadlineMs: number): Promise<CheckResult> {
  const dir = path.resolve(mountpoint);
  const mounted = parseMountinfo(fs.readFileSync("/proc/self/mountinfo", "utf8")).some((m) => m.mountPoint === dir && m.fsType === FS_TYPE);
  if (!mounted) return { ok: false, message: `not mounted: no procview filesystem at ${dir}` };
  const started = Date.now();
  // The read runs on the thread pool: a hung daemon blocks it, not the deadline below.
  const read = fs.promises.readFile(path.join(dir, "proc/uptime"), "utf8").then(
    (text) => ({ text }),
    (e: NodeJS.ErrnoException) => ({ error: e }),
  );
  const timeout = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), deadlineMs).unref());
  const r = await Promise.race([read, timeout]);
  if (r === "timeout") return { ok: false, message: `daemon not answering: ${dir} did not answer a read within ${deadlineMs} ms` };
  if ("error" in r) {
    if (r.error.code === "ENOTCONN")
      return { ok: false, message: `stale mount: ${dir} answers "Transport endpoint is not connected" (its daemon is gone)` };
    return { ok: false, message: `read failed: ${dir}/proc/uptime: ${r.error.message}` };
  }
  if (!/^\d+\.\d\d \d+\.\d\d\n$/.test(r.text))
    return { ok: false, message: `bad answer: ${dir}/proc/uptime is ${JSON.stringify(r.text.slice(0, 40))}` };
  return { ok: true, message: `ok: ${dir} answered in ${Date.now() - started} ms` };
}
