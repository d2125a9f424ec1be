// The load-average sampler: every 5 seconds, for each cgroup a reader has asked about,
// count running and uninterruptible tasks and decay the averages as the kernel does.
// It runs on the main thread; the serving worker receives the table over a MessagePort.
import { type MessagePort, receiveMessageOnPort } from "node:worker_threads";
import { sampleTasks } from "../cgroup/tasks";
import { decayLoad, LOAD_FREQ_MS } from "../views/loadavg";
import type { LoadEntry, LoadSource } from "./render";

type Message = { watch: string } | { loads: [string, LoadEntry][] };

/** Main-thread side: owns the averages. */
export class LoadSampler {
  private readonly entries = new Map<string, LoadEntry>();
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly port: MessagePort,
    private readonly procRoot = "/proc",
  ) {
    port.on("message", (m: Message) => {
      if ("watch" in m && !this.entries.has(m.watch)) {
        this.step(m.watch, undefined);
        this.publish();
      }
    });
  }

  start(): void {
    this.timer = setInterval(() => {
      for (const [dir, e] of this.entries) this.step(dir, e);
      this.publish();
    }, LOAD_FREQ_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.port.close();
  }

  private step(dir: string, prev: LoadEntry | undefined): void {
    const t = sampleTasks(dir, this.procRoot);
    if (!t) {
      this.entries.delete(dir); // the cgroup is gone
      return;
    }
    const load = decayLoad(prev?.load ?? [0, 0, 0], t.running + t.uninterruptible);
    this.entries.set(dir, { ...t, load });
  }

  private publish(): void {
    this.port.postMessage({ loads: [...this.entries] } satisfies Message);
  }
}

/** Worker side: reads the latest table without ever waiting for it. */
export class PortLoads implements LoadSource {
  private table = new Map<string, LoadEntry>();
  private readonly asked = new Set<string>();

  constructor(private readonly port: MessagePort) {}

  get(dir: string): LoadEntry | undefined {
    for (let m = receiveMessageOnPort(this.port); m; m = receiveMessageOnPort(this.port)) {
      const msg = m.message as Message;
      if ("loads" in msg) this.table = new Map(msg.loads);
    }
    return this.table.get(dir);
  }

  watch(dir: string): void {
    if (this.asked.has(dir)) return;
    this.asked.add(dir);
    this.port.postMessage({ watch: dir } satisfies Message);
  }
}
