// The two caches on the read path: kept descriptors (a file's current content on every read,
// however large, within a bounded number of descriptors) and limits kept for a second.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, it } from "node:test";
import { KeptFiles } from "../../src/cgroup/files";
import { TtlCache } from "../../src/cgroup/ttl";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pv-caches-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("kept descriptors", () => {
  it("every read gives the file's current content, also after it changes in place", () => {
    const f = path.join(dir, "memory.current");
    fs.writeFileSync(f, "1000\n");
    const files = new KeptFiles();
    assert.equal(files.read(f), "1000\n");
    assert.equal(files.size, 1);
    fs.writeFileSync(f, "2000000\n");
    assert.equal(files.read(f), "2000000\n");
    assert.equal(files.size, 1, "the same descriptor");
    files.close();
    assert.equal(files.size, 0);
  });

  it("a file larger than the buffer is read whole; a missing one is undefined", () => {
    const big = path.join(dir, "big");
    const text = "x".repeat(40_000) + "\nend\n";
    fs.writeFileSync(big, text);
    const files = new KeptFiles();
    assert.equal(files.read(big), text);
    assert.equal(files.read(big), text);
    assert.equal(files.read(path.join(dir, "nope")), undefined);
    assert.equal(files.size, 1);
    files.close();
  });

  it("holds at most `max` descriptors, dropping the least recently read; forget drops by prefix", () => {
    const names = ["a", "b", "c"].map((n) => {
      const p = path.join(dir, `lru-${n}`);
      fs.writeFileSync(p, n);
      return p;
    });
    const files = new KeptFiles(2);
    files.read(names[0]);
    files.read(names[1]);
    files.read(names[0]); // a is now the most recent
    files.read(names[2]); // b goes
    assert.equal(files.size, 2);
    fs.writeFileSync(names[1], "b2");
    assert.equal(files.read(names[1]), "b2");
    assert.equal(files.size, 2);
    files.forget(path.join(dir, "lru-"));
    assert.equal(files.size, 0);
    files.close();
  });

  it("a sweep closes the descriptors of a removed cgroup, once unread for 30 s", () => {
    const cg = path.join("/sys/fs/cgroup/pids", `pv-caches-${process.pid}`);
    fs.mkdirSync(cg);
    let t = 1_000_000;
    const files = new KeptFiles(4096, () => t);
    try {
      assert.equal(files.read(path.join(cg, "pids.max")), "max\n");
      assert.ok(files.read("/proc/self/stat"));
      fs.rmdirSync(cg);
      t += 10_000;
      files.sweep();
      assert.equal(files.size, 2, "unread for less than 30 s: not looked at");
      t += 25_000;
      files.read("/proc/self/stat"); // read lately: not looked at either
      files.sweep();
      assert.equal(files.size, 1, "the removed cgroup's descriptor is closed");
      t += 31_000;
      files.sweep();
      assert.equal(files.size, 1, "a live file unread for long is kept");
    } finally {
      files.close();
      if (fs.existsSync(cg)) fs.rmdirSync(cg);
    }
  });
});

describe("limits kept for a while", () => {
  it("computed once within the time to live, again after it; at most `max` keys, the oldest dropped", () => {
    let now = 1000;
    let computed = 0;
    const cache = new TtlCache<string, number>(1000, 2, () => now);
    const get = (k: string) => cache.get(k, () => ++computed);
    assert.equal(get("a"), 1);
    now += 999;
    assert.equal(get("a"), 1, "still fresh at 999 ms");
    now += 1;
    assert.equal(get("a"), 2, "expired at 1000 ms");
    get("b");
    get("c"); // "a" is the oldest entry: dropped
    assert.equal(computed, 4);
    assert.equal(get("c"), 4);
    assert.equal(get("a"), 5, "recomputed: it had been dropped");
    assert.equal(get("b"), 6, "b was the oldest when a came back");
  });
});
