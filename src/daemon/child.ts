// A serving process. It inherits the /dev/fuse descriptor from the supervisor (fd 4), loads
// and exercises the read path at once, and tells the supervisor once warm, which hands it
// the connection (until then the supervisor's own serving thread answers: see ./supervisor).
// On "go" it asks the kernel to resend what a crashed predecessor left unanswered, and
// serves: on its main thread, called by Node's event loop whenever /dev/fuse holds a request
// (the native helper's watchReadable), so the same thread takes the supervisor's messages
// (load tables, park) between requests and the process needs no second V8 isolate (7.5 MiB).
// Without the native helper it serves from a worker thread instead (./worker).
import { sharedMapHelper } from "../fuse/journal";
import { METRICS_SLOTS, snapshot } from "./counters";
import { type LoadTable, ServedLoads } from "./loads";
import { Serving, type ServingConfig } from "./serving";
import { type FromWorker, ServingThread } from "./serving-thread";

export const CHILD_FD = 4;
/** The one-request journal (kernels without FUSE_NOTIFY_RESEND only): fd 5 when passed. */
export const JOURNAL_FD = 5;
/** The shared CPU clocks (./clocks): fd 6 when passed. */
export const CLOCKS_FD = 6;

export interface ChildConfig {
  cpuQuota: boolean;
  /** The supervisor passed the one-request journal as JOURNAL_FD. */
  journal: boolean;
  /** The supervisor passed the shared CPU clocks as CLOCKS_FD. */
  clocks: boolean;
  /** The host's possible CPUs: the clock file's layout. */
  hostCpus: number;
  generation: number;
}

/** Messages between the supervisor and a serving process. */
/**
 * `go`: serve now; `priorFailed`: the last serving process crashed or hung (rather than being
 * killed from outside). `park`: stop after the request in hand (a handover to another daemon).
 */
export type ToChild = { go: true; priorFailed: boolean } | { loads: LoadTable } | { park: true };
export type FromChild = { ready: true } | { parked: true } | { values: number[] } | { watch: string };

/** How a serving process serves: told to go, to park, and given load tables. */
interface Engine {
  go(priorFailed: boolean): void;
  park(): void;
  loads(table: LoadTable): void;
}

interface Helper {
  /** Calls `callback` from the event loop whenever `fd` is readable; returns stop(). */
  watchReadable(fd: number, callback: () => void): () => void;
  /** Whether `fd` is readable now. */
  readable(fd: number): boolean;
}
/** Requests answered in one turn of the event loop, at most. */
const BATCH = 32;

const cfg = JSON.parse(process.env.PROCVIEW_CHILD ?? "{}") as ChildConfig;
const metrics = new SharedArrayBuffer(METRICS_SLOTS * 8);
const config: ServingConfig = {
  fd: CHILD_FD,
  journalFd: cfg.journal ? JOURNAL_FD : undefined,
  clocksFd: cfg.clocks ? CLOCKS_FD : undefined,
  hostCpus: cfg.hostCpus,
  cpuQuota: cfg.cpuQuota,
  generation: cfg.generation,
  metrics,
};
const tell = (m: FromChild) => process.send?.(m);
let serving = false;

/** The filesystem is gone (unmounted): the last counts, and out. */
function unmounted(code = 0): never {
  if (serving) tell(snapshot(metrics));
  process.exit(code);
}

function onThisThread({ watchReadable, readable }: Helper): Engine {
  const loads = new ServedLoads((dir) => tell({ watch: dir }));
  const s = new Serving(config, loads);
  tell({ ready: true });
  let stop: (() => void) | undefined;
  return {
    go(priorFailed) {
      const c = s.begin(priorFailed);
      if (!c) unmounted();
      stop = watchReadable(CHILD_FD, () => {
        // The descriptor stays blocking (it is shared): a request that its reader withdrew
        // between the wake-up and the read leaves this read waiting for the next request.
        // The watchdog sends one every half second (unless --no-watchdog), and a park sends
        // its own until it is taken; a load table waits that long.
        // Under load the next request is often there already: answer it without a turn of
        // the event loop, up to BATCH of them, so that messages are still taken in between.
        for (let n = 0; n === 0 || (n < BATCH && readable(CHILD_FD)); n++) {
          if (!c.serveOne()) {
            s.close();
            unmounted();
          }
          s.afterEach();
        }
      });
    },
    // A message is taken between requests: none is in hand.
    park() {
      stop?.();
      stop = undefined;
      s.park();
      tell({ parked: true });
      s.reclaimNow();
    },
    loads: (table) => loads.take(table),
  };
}

function onWorkerThread(): Engine {
  // Renders allocate short-lived strings only: a small young generation keeps RSS low.
  const thread = new ServingThread(config, { maxYoungGenerationSizeMb: 4 }, (dir) => tell({ watch: dir }));
  thread.worker.on("message", (m: FromWorker) => tell("warm" in m ? { ready: true } : { parked: true }));
  // The worker leaves its loop when the filesystem is unmounted; anything else is a crash.
  thread.worker.on("exit", (code) => unmounted(code));
  thread.worker.on("error", (e) => {
    process.stderr.write(`${JSON.stringify({ level: 50, msg: "serving thread failed", err: e.message })}\n`);
    process.exit(1);
  });
  return {
    go: (priorFailed) => thread.go(priorFailed),
    park: () => thread.park(),
    loads: (table) => thread.loads(table),
  };
}

process.title = "procview-standby";
const helper = sharedMapHelper() as Partial<Helper> | undefined;
const engine = helper?.watchReadable && helper.readable ? onThisThread(helper as Helper) : onWorkerThread();
process.on("message", (m: ToChild) => {
  if ("loads" in m) return engine.loads(m.loads);
  if ("park" in m) return engine.park();
  if (serving) return;
  serving = true;
  process.title = "procview-serving";
  engine.go(m.priorFailed);
  const report = setInterval(() => tell(snapshot(metrics)), 1000);
  report.unref();
});
// A bug that escapes the request handlers' own catch: one line the logs can parse, and out
// (the supervisor's thread serves, and the successor knows its predecessor crashed).
process.on("uncaughtException", (e) => {
  process.stderr.write(`${JSON.stringify({ level: 50, msg: "serving process failed", err: e.message })}\n`);
  process.exit(1);
});
// The supervisor going away must not leave an orphan serving a connection nobody manages.
process.on("disconnect", () => process.exit(0));
