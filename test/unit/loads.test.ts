// The serving worker's side of the load averages: what it asks the supervisor's sampler for,
// over a real MessageChannel.
import assert from "node:assert/strict";
import { MessageChannel, receiveMessageOnPort } from "node:worker_threads";
import { describe, it } from "node:test";
import { ServedLoads } from "../../src/daemon/loads";

const entry = { load: [0, 0, 0] as [number, number, number], running: 1, uninterruptible: 0, total: 3, lastPid: 9 };

describe("the worker's load table", () => {
  it("asks once for a cgroup, and again once the sampler's table lacks it (a cgroup re-created at the same path)", () => {
    const { port1: sampler, port2 } = new MessageChannel();
    const loads = new ServedLoads((dir) => port2.postMessage({ watch: dir }), port2);
    const asks = () => {
      const got: unknown[] = [];
      for (let m = receiveMessageOnPort(sampler); m; m = receiveMessageOnPort(sampler)) got.push(m.message);
      return got;
    };
    loads.watch("/cg/a");
    loads.watch("/cg/a");
    assert.deepEqual(asks(), [{ watch: "/cg/a" }]);
    sampler.postMessage({ loads: [["/cg/a", entry]] });
    assert.deepEqual(loads.get("/cg/a"), entry);
    loads.watch("/cg/a");
    assert.deepEqual(asks(), [], "sampled: not asked again");
    // The cgroup went away: the sampler dropped it. Re-created, it is asked for again.
    sampler.postMessage({ loads: [] });
    assert.equal(loads.get("/cg/a"), undefined);
    loads.watch("/cg/a");
    assert.deepEqual(asks(), [{ watch: "/cg/a" }]);
    sampler.close();
  });

  it("keeps only the last of the tables that arrived", () => {
    const { port1: sampler, port2 } = new MessageChannel();
    const loads = new ServedLoads((dir) => port2.postMessage({ watch: dir }), port2);
    for (let i = 1; i <= 100; i++) sampler.postMessage({ loads: [["/cg/b", { ...entry, total: i }]] });
    loads.drain();
    assert.equal(receiveMessageOnPort(port2), undefined, "nothing left queued");
    assert.equal(loads.get("/cg/b")?.total, 100);
    sampler.close();
  });
});
