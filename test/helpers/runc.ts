// Real containers for end-to-end tests: runc with a rootfs made of read-only binds of
// the host's /usr and /etc (no image needed), and real cgroup limits.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

/** A file or directory of procview's (or LXCFS's) tree bound over the container's own. */
export interface BindTarget {
  source: string;
  dest: string;
  directory: boolean;
}

/** The binds the README gives for runc, podman and docker: the same paths as LXCFS. */
export const BINDS: readonly BindTarget[] = [
  ...["meminfo", "cpuinfo", "stat", "uptime", "loadavg", "diskstats", "swaps"].map((f) => ({
    source: `proc/${f}`,
    dest: `/proc/${f}`,
    directory: false,
  })),
  { source: "sys/devices/system/cpu", dest: "/sys/devices/system/cpu", directory: true },
];

export interface ContainerOptions {
  memoryBytes?: number;
  /** Memory plus swap (runc's "swap", cgroup v1 memsw): -1 for no limit; by default no swap at all. */
  memoryAndSwapBytes?: number;
  /** CFS quota in CPUs (0.5 = 50000/100000). */
  cpuQuota?: number;
  cpus?: string;
  /** Directory whose proc/... and sys/... files are bound over the container's (procview or LXCFS). */
  source?: string;
  targets?: readonly BindTarget[];
  /**
   * Also mount the source directory with slave propagation at /run/procview, as the webhook
   * and docker-args do, so a restarted daemon can re-bind the container's files.
   */
  remountable?: boolean;
  /** OCI hooks for config.json (e.g. createRuntime). */
  hooks?: Record<string, { path: string; args?: string[]; timeout?: number }[]>;
  /**
   * The image: by default the host's /usr (read-only) with the merged-usr links. "distroless"
   * has only the host's libraries and /app/{sleep,cat}: no shell, no mount, nothing else.
   */
  image?: "usr" | "distroless";
  /** Changes the rootfs before the container starts (hostile images: fake binaries, symlinks). */
  prepareRootfs?: (rootfs: string) => void;
  /** More OCI mounts. */
  mounts?: OciSpec["mounts"];
  /** The container's id (default: procview-e2e-PID-N). */
  name?: string;
  /** Last changes to the OCI spec (a pod's settings: privileged, hostPID, propagation). */
  customize?: (spec: OciSpec) => void;
}

// The parts of an OCI runtime spec the helpers change.
export interface OciSpec {
  process: { args: string[]; env: string[]; noNewPrivileges: boolean; capabilities?: Record<string, string[]> };
  mounts: { destination: string; type: string; source: string; options?: string[] }[];
  linux: {
    rootfsPropagation?: string;
    /** Where the container's cgroup goes (relative to each hierarchy's root); runc's default: its id. */
    cgroupsPath?: string;
    resources: Record<string, unknown>;
    namespaces: { type: string }[];
    maskedPaths: string[];
    readonlyPaths: string[];
  };
}

let counter = 0;
const BASE = "/tmp/procview-e2e";

function run(args: string[], input?: string) {
  return spawnSync("runc", args, {
    encoding: "utf8",
    input,
    timeout: 60_000,
    stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
  });
}

export class Container {
  readonly id: string;
  private readonly bundle: string;

  constructor(readonly o: ContainerOptions) {
    this.id = o.name ?? `procview-e2e-${process.pid}-${++counter}`;
    this.bundle = path.join(BASE, this.id);
    const rootfs = path.join(this.bundle, "rootfs");
    for (const d of ["usr", "etc", "proc", "sys", "dev", "tmp", "root", "var/lib", "run"])
      fs.mkdirSync(path.join(rootfs, d), { recursive: true });
    if (o.image === "distroless") {
      for (const l of ["lib", "lib64"]) fs.symlinkSync(`usr/${l}`, path.join(rootfs, l));
      fs.mkdirSync(path.join(rootfs, "app"));
      for (const b of ["sleep", "cat"]) fs.copyFileSync(`/usr/bin/${b}`, path.join(rootfs, "app", b));
      for (const b of ["sleep", "cat"]) fs.chmodSync(path.join(rootfs, "app", b), 0o755);
    } else {
      for (const l of ["bin", "lib", "lib64", "sbin"]) fs.symlinkSync(`usr/${l}`, path.join(rootfs, l));
    }
    o.prepareRootfs?.(rootfs);
    fs.writeFileSync(path.join(this.bundle, "config.json"), JSON.stringify(this.spec()));
    // Detached, the container's process inherits runc's stdio: give it a file, not a pipe
    // that spawnSync would wait on for as long as the container lives.
    const logPath = path.join(this.bundle, "runc.log");
    const log = fs.openSync(logPath, "w");
    const r = spawnSync("runc", ["run", "-d", "--bundle", this.bundle, this.id], { stdio: ["ignore", log, log], timeout: 60_000 });
    fs.closeSync(log);
    if (r.status !== 0) {
      // A container runc refused leaves nothing behind either: no caller gets one to destroy.
      const why = fs.readFileSync(logPath, "utf8").trim();
      this.destroy();
      throw new Error(`runc run ${this.id}: ${why}`);
    }
  }

  private spec(): OciSpec {
    const bind = (source: string, destination: string, dir: boolean) => ({
      destination,
      type: "bind",
      source,
      options: dir ? ["rbind", "ro"] : ["bind", "ro"],
    });
    const mounts: OciSpec["mounts"] = [
      { destination: "/proc", type: "proc", source: "proc" },
      { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
      {
        destination: "/dev/pts",
        type: "devpts",
        source: "devpts",
        options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
      },
      { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
      { destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=1777"] },
      ...(this.o.image === "distroless"
        ? [bind("/usr/lib", "/usr/lib", true), bind("/usr/lib64", "/usr/lib64", true)]
        : [bind("/usr", "/usr", true), bind("/etc", "/etc", true)]),
      ...(this.o.mounts ?? []),
    ];
    if (this.o.source) for (const t of this.o.targets ?? BINDS) mounts.push(bind(path.join(this.o.source, t.source), t.dest, t.directory));
    if (this.o.source && this.o.remountable !== false)
      mounts.push({ destination: "/run/procview", type: "bind", source: this.o.source, options: ["rbind", "rslave", "ro"] });
    const resources: Record<string, unknown> = { devices: [{ allow: false, access: "rwm" }] };
    if (this.o.memoryBytes) resources.memory = { limit: this.o.memoryBytes, swap: this.o.memoryAndSwapBytes ?? this.o.memoryBytes };
    const cpu: Record<string, unknown> = {};
    if (this.o.cpuQuota) Object.assign(cpu, { quota: Math.round(this.o.cpuQuota * 100000), period: 100000 });
    if (this.o.cpus) Object.assign(cpu, { cpus: this.o.cpus, mems: "0" });
    if (Object.keys(cpu).length) resources.cpu = cpu;
    const spec = {
      ociVersion: "1.0.2",
      process: {
        terminal: false,
        user: { uid: 0, gid: 0 },
        args: this.o.image === "distroless" ? ["/app/sleep", "infinity"] : ["sleep", "infinity"],
        env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"],
        cwd: "/",
        noNewPrivileges: true,
      },
      root: { path: "rootfs", readonly: true },
      ...(this.o.hooks ? { hooks: this.o.hooks } : {}),
      hostname: this.id.slice(0, 60),
      mounts,
      linux: {
        resources,
        namespaces: [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }],
        maskedPaths: ["/proc/kcore", "/proc/keys", "/sys/firmware"],
        readonlyPaths: ["/proc/sys", "/proc/sysrq-trigger"],
      },
    };
    this.o.customize?.(spec);
    return spec;
  }

  /** Starts a shell command inside without waiting; resolves with its stdout when it ends. */
  shAsync(command: string): Promise<string> {
    const p = spawn("runc", ["exec", this.id, "sh", "-c", command], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (err += d));
    // 'close', not 'exit': only then has all of stdout been read.
    return new Promise((resolve, reject) =>
      p.once("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`in ${this.id}: exit ${code}: ${err.trim()}`)))),
    );
  }

  /** Runs a program inside with no shell, optionally as another user; returns stdout, throws on failure. */
  exec(argv: string[], user?: string): string {
    const r = run(["exec", ...(user ? ["--user", user] : []), this.id, ...argv]);
    if (r.status !== 0) throw new Error(`in ${this.id}: ${argv.join(" ")}: exit ${r.status}: ${r.stderr.trim()}`);
    return r.stdout;
  }

  /** Runs a shell command inside; returns stdout, throws with stderr on failure. */
  sh(command: string, input?: string): string {
    const r = run(["exec", this.id, "sh", "-c", command], input);
    if (r.status !== 0) throw new Error(`in ${this.id}: ${command}: exit ${r.status}: ${r.stderr.trim()}`);
    return r.stdout;
  }

  /** The container's init, as a host pid. */
  get pid(): number {
    return JSON.parse(run(["state", this.id]).stdout).pid;
  }

  /** What the container's process wrote to stdout and stderr so far. */
  output(): string {
    try {
      return fs.readFileSync(path.join(this.bundle, "runc.log"), "utf8");
    } catch {
      return "";
    }
  }

  /** Sends a signal to the container's first process; resolves with true once it has exited (false after `ms`). */
  async stop(signal: string, ms: number): Promise<boolean> {
    run(["kill", this.id, signal]);
    for (const until = Date.now() + ms; Date.now() < until; await new Promise((r) => setTimeout(r, 50))) {
      const state = run(["state", this.id]);
      if (state.status !== 0 || JSON.parse(state.stdout).status === "stopped") return true;
    }
    return false;
  }

  destroy(): void {
    run(["delete", "-f", this.id]);
    fs.rmSync(this.bundle, { recursive: true, force: true });
  }
}

export function haveRunc(): boolean {
  return spawnSync("runc", ["--version"]).status === 0;
}
