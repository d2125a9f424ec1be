// Facts about the reading process that do not come from cgroup files: its pid
// namespace, that namespace's init (the container's first process) and start times.
import * as fs from "node:fs";
import type { KeptFiles } from "./files";

/** Linux's USER_HZ: the unit of /proc/PID/stat times and /proc/stat. */
export const CLOCK_TICKS = 100;

export interface NamespaceInit {
  /** Host pid of the namespace's init. */
  pid: number;
  /** Its start, in clock ticks after boot. */
  startTicks: number;
  /** True when the namespace is the daemon's own (a host process). */
  host: boolean;
}

/** Fields of /proc/PID/stat after the parenthesised command name (which may hold spaces). */
export function statFields(text: string): string[] {
  return text.slice(text.lastIndexOf(")") + 2).split(" ");
}

export class Processes {
  private readonly ownNs: string | undefined;
  private readonly inits = new Map<string, NamespaceInit>();

  constructor(
    private readonly files: KeptFiles,
    private readonly procRoot = "/proc",
  ) {
    this.ownNs = this.pidNs("self");
  }

  pidNs(pid: number | "self"): string | undefined {
    try {
      return fs.readlinkSync(`${this.procRoot}/${pid}/ns/pid`);
    } catch {
      return undefined;
    }
  }

  /** Start time of a process in clock ticks after boot (field 22 of /proc/PID/stat). */
  startTicks(pid: number): number | undefined {
    const text = this.files.read(`${this.procRoot}/${pid}/stat`);
    if (text === undefined) return undefined;
    const v = Number(statFields(text)[19]);
    return Number.isFinite(v) ? v : undefined;
  }

  private status(pid: number): { ppid: number; nspid: number[] } | undefined {
    const text = this.files.read(`${this.procRoot}/${pid}/status`);
    if (text === undefined) return undefined;
    const ppid = Number(/^PPid:\s+(\d+)/m.exec(text)?.[1] ?? 0);
    const nspid = (/^NSpid:\s+(.*)$/m.exec(text)?.[1] ?? "").trim().split(/\s+/).map(Number);
    return { ppid, nspid };
  }

  /** The init of the pid namespace that `pid` belongs to, or undefined if it vanished. */
  namespaceInit(pid: number): NamespaceInit | undefined {
    const ns = this.pidNs(pid);
    if (ns === undefined) return undefined;
    if (ns === this.ownNs) return { pid: 1, startTicks: 0, host: true };
    const cached = this.inits.get(ns);
    if (cached && this.startTicks(cached.pid) === cached.startTicks && this.pidNs(cached.pid) === ns) return cached;
    const initPid = this.findInit(pid, ns);
    const startTicks = initPid === undefined ? undefined : this.startTicks(initPid);
    if (initPid === undefined || startTicks === undefined) return undefined;
    const init = { pid: initPid, startTicks, host: false };
    this.inits.set(ns, init);
    return init;
  }

  private isInit(pid: number): boolean {
    const nspid = this.status(pid)?.nspid;
    return nspid !== undefined && nspid[nspid.length - 1] === 1;
  }

  private findInit(pid: number, ns: string): number | undefined {
    // Up the parents while they share the namespace: the usual case, one or two hops.
    for (let cur = pid, hops = 0; hops < 1024; hops++) {
      if (this.isInit(cur)) return cur;
      const ppid = this.status(cur)?.ppid ?? 0;
      if (ppid === 0 || this.pidNs(ppid) !== ns) break;
      cur = ppid;
    }
    // Processes entered from outside (runc exec, kubectl exec) hang off a host process:
    // look through /proc once for this namespace; the answer is cached.
    let entries: string[];
    try {
      entries = fs.readdirSync(this.procRoot);
    } catch {
      return undefined;
    }
    for (const e of entries) {
      const p = Number(e);
      if (Number.isInteger(p) && p > 0 && this.pidNs(p) === ns && this.isInit(p)) return p;
    }
    return undefined;
  }

  /** Seconds since boot, from /proc/uptime. */
  hostUptime(): { uptime: number; idle: number } {
    const [u, i] = (this.files.read(`${this.procRoot}/uptime`) ?? "0 0").trim().split(/\s+/).map(Number);
    return { uptime: u, idle: i };
  }
}
