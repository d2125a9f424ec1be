// The supervisor's serving thread (and a serving process's, where the native helper is not
// built: ./child): loads and warms the read path, says it is warm, waits for the go flag,
// then blocks in read(2) on /dev/fuse and answers every request. Told to park (handing back
// to a serving process, or to another daemon), it stops after the request it is answering
// and waits for the next go.
import { parentPort, workerData } from "node:worker_threads";
import { ServedLoads, type LoadMessage } from "./loads";
import { Serving } from "./serving";
import { GO_FLAG, GO_PARK, GO_PRIOR_FAILED, type FromWorker, type WorkerConfig } from "./serving-thread";

const cfg = workerData as WorkerConfig;
const serving = new Serving(cfg, new ServedLoads((dir) => cfg.loadPort.postMessage({ watch: dir } satisfies LoadMessage), cfg.loadPort));
parentPort?.postMessage({ warm: true } satisfies FromWorker);
const parkAsked = () => Atomics.load(cfg.go, GO_PARK) === 1;
main: for (;;) {
  // Warm: wait (this thread has nothing else to do) until told to serve; a go that came
  // while warming is already set, and this returns at once.
  Atomics.wait(cfg.go, GO_FLAG, 0);
  const c = serving.begin(Atomics.load(cfg.go, GO_PRIOR_FAILED) === 1);
  if (!c) break;
  do {
    if (!c.serveOne()) break main;
    serving.afterEach();
  } while (!parkAsked());
  serving.park();
  Atomics.store(cfg.go, GO_PARK, 0);
  Atomics.store(cfg.go, GO_FLAG, 0);
  parentPort?.postMessage({ parked: true } satisfies FromWorker);
  serving.reclaimNow();
}
serving.close();
