// `procview serve`: mount, start the serving worker, and unmount on SIGTERM/SIGINT.
import * as fs from "node:fs";
import * as path from "node:path";
import { MessageChannel, Worker } from "node:worker_threads";
import { mountFuse, parseMountinfo, unmount } from "../fuse/mount";
import { LoadSampler } from "./loads";
import type { WorkerConfig } from "./worker";

export const DEFAULT_MOUNTPOINT = "/var/lib/procview";
export const FS_TYPE = "fuse.procview";

export interface ServeOptions {
  mountpoint: string;
  cpuQuota: boolean;
}

/** A problem the operator must fix before serving; the message is the whole story. */
export class UsageError extends Error {}

export function isMounted(dir: string): boolean {
  const mounts = parseMountinfo(fs.readFileSync("/proc/self/mountinfo", "utf8"));
  return mounts.some((m) => m.mountPoint === dir);
}

function preflight(dir: string): string {
  if (process.getuid?.() !== 0) throw new UsageError("procview serve must run as root (it mounts a filesystem)");
  if (!fs.existsSync("/dev/fuse"))
    throw new UsageError("/dev/fuse does not exist: load the fuse module or pass the device to this container");
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new UsageError(`mountpoint ${dir} does not exist: create it first (mkdir -p ${dir})`);
  }
  if (!st.isDirectory()) throw new UsageError(`mountpoint ${dir} is not a directory`);
  const real = fs.realpathSync(dir);
  if (isMounted(real)) throw new UsageError(`${real} is already mounted: is another procview running? (umount ${real})`);
  return real;
}

/** Runs until a signal; resolves with the process exit code. */
export async function serve(opts: ServeOptions): Promise<number> {
  const dir = preflight(path.resolve(opts.mountpoint));
  const fd = mountFuse(dir, { source: "procview", subtype: "procview" });
  const channel = new MessageChannel();
  const sampler = new LoadSampler(channel.port1);
  sampler.start();
  const cfg: WorkerConfig = { fd, cpuQuota: opts.cpuQuota, loadPort: channel.port2 };
  const worker = new Worker(path.join(__dirname, "worker.js"), {
    workerData: cfg,
    transferList: [channel.port2],
    // Renders allocate short-lived strings only: a small young generation keeps RSS low.
    resourceLimits: { maxYoungGenerationSizeMb: 4 },
  });

  // A reader of our output that goes away must not take the filesystem down with it.
  process.stdout.on("error", () => {});
  process.stderr.on("error", () => {});
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (code: number) => {
      if (stopping) return;
      stopping = true;
      unmount(dir);
      sampler.stop();
      // The worker leaves its loop when the kernel reports the unmount (ENODEV).
      const force = setTimeout(() => void worker.terminate(), 2000);
      force.unref();
      worker.once("exit", () => {
        fs.closeSync(fd);
        resolve(code);
      });
    };
    process.once("SIGTERM", () => stop(0));
    process.once("SIGINT", () => stop(0));
    process.once("uncaughtException", (e) => {
      process.stderr.write(`procview: ${e.message}\n`);
      stop(1);
    });
    worker.on("error", (e) => {
      process.stderr.write(`procview: serving thread failed: ${e.message}\n`);
      stop(1);
    });
    // The first read goes through INIT and a full render: when it answers, we serve.
    fs.promises.readFile(path.join(dir, "proc/uptime")).then(
      () => process.stdout.write(`procview: serving ${dir} (pid ${process.pid})\n`),
      (e: Error) => {
        process.stderr.write(`procview: ${dir} does not answer: ${e.message}\n`);
        stop(1);
      },
    );
  });
}
