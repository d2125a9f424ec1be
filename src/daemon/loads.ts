// The load-average sampler: every 5 seconds, for each cgroup a reader has asked about,
// count running and uninterruptible tasks and decay the averages as the kernel does.
// It lives in the supervisor, so a crash of the serving process loses no history; the
// serving side receives the table from its process's messages, or through a MessagePort.
import { type MessagePort, receiveMessageOnPort } from "node:worker_threads";
import { sampleTasks } from "../cgroup/tasks";
import { decayLoad, LOAD_FREQ_MS } from "../views/loadavg";
import type { LoadEntry, LoadSource } from "./render";

export type LoadTable = [string, LoadEntry][];
export type LoadMessage = { watch: string } | { loads: LoadTable };

/** Supervisor side: owns the averages and hands the whole table to `publish`. */
export class LoadSampler {
  private readonly entries = new Map<string, LoadEntry>();
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly publish: (table: LoadTable) => void,
    private readonly procRoot = "/proc",
  ) {}

  /** A reader asked about a cgroup we do not sample yet: sample it now and from now on. */
  watch(dir: string): void {
    if (this.entries.has(dir)) return;
    this.step(dir, undefined);
    this.publish(this.table());
  }

  /** Carries on from another sampler's table (a predecessor daemon's). */
  seed(table: LoadTable): void {
    for (const [dir, e] of table) if (!this.entries.has(dir)) this.entries.set(dir, e);
  }

  table(): LoadTable {
    return [...this.entries];
  }

  start(): void {
    this.timer = setInterval(() => {
      for (const [dir, e] of this.entries) this.step(dir, e);
      this.publish(this.table());
    }, LOAD_FREQ_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
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
}

/**
 * Serving side: the latest table, never waited for. Tables come from `port` (a serving
 * thread's), read at each request, or are handed to `take` (a serving process's main thread,
 * from the supervisor's messages); `ask` passes a watch request on to the sampler.
 */
export class ServedLoads implements LoadSource {
  private table = new Map<string, LoadEntry>();
  private readonly asked = new Set<string>();
  /** Asked-for cgroups a table has listed: one that a later table lacks went away. */
  private readonly listed = new Set<string>();

  constructor(
    private readonly ask: (dir: string) => void,
    private readonly port?: MessagePort,
  ) {}

  /**
   * Takes every table that arrived on the port and keeps the last. Called on every request
   * too (the watchdog reads every second), so tables never pile up in the port while no one
   * reads stat or loadavg: each is the whole table, every 5 s.
   */
  drain(): void {
    if (!this.port) return;
    let latest: LoadTable | undefined;
    for (let m = receiveMessageOnPort(this.port); m; m = receiveMessageOnPort(this.port)) {
      const msg = m.message as LoadMessage;
      if ("loads" in msg) latest = msg.loads;
    }
    if (latest) this.take(latest);
  }

  /** The sampler's latest table. */
  take(latest: LoadTable): void {
    this.table = new Map(latest);
    // The sampler drops a cgroup that went away; one re-created at the same path is asked for anew.
    for (const dir of this.asked) {
      if (this.table.has(dir)) this.listed.add(dir);
      else if (this.listed.delete(dir)) this.asked.delete(dir);
    }
  }

  get(dir: string): LoadEntry | undefined {
    this.drain();
    return this.table.get(dir);
  }

  watch(dir: string): void {
    if (this.asked.has(dir)) return;
    this.asked.add(dir);
    this.ask(dir);
  }
}
