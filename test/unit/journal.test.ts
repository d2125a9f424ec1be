// The crash journal (kernels before 6.9): what a successor finds of its predecessor's request,
// over the same memory file the supervisor hands every serving process.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { describe, it } from "node:test";
import { Journal, openJournalFile, sharedMapHelper } from "../../src/fuse/journal";

const SIZE = 4096;
const HEADER = 40; // fuse_in_header

describe("the one-request journal", () => {
  it("is a shared memory mapping where the helper is built (npm ci builds it)", () => {
    assert.ok(sharedMapHelper(), "build/Release/shared_map.node");
  });

  it("hands a request read but never answered to each successor; only crashes and hangs count against it", () => {
    const fd = openJournalFile(8 + SIZE);
    try {
      const first = new Journal(fd, SIZE);
      assert.equal(first.pending(HEADER, false), undefined, "nothing yet");
      // A request lands in the mapping as read(2) puts it there: its header gives its length.
      first.request.writeUInt32LE(48, 0);
      first.request.writeUInt32LE(15, 4); // READ
      // A successor after a kill from outside (the OOM killer, an operator): first attempt.
      assert.deepEqual(
        [new Journal(fd, SIZE).pending(HEADER, false)?.attempts, new Journal(fd, SIZE).pending(HEADER, false)?.attempts],
        [1, 1],
        "killed from outside while replaying: not counted against the request",
      );
      // Successors that crashed on it: the count grows; the serving loop refuses it past 2.
      assert.equal(new Journal(fd, SIZE).pending(HEADER, true)?.attempts, 2);
      const third = new Journal(fd, SIZE);
      const left = third.pending(HEADER, true);
      assert.deepEqual([left?.attempts, left?.request.length, left?.request.readUInt32LE(4)], [3, 48, 15]);
      third.answered();
      assert.equal(new Journal(fd, SIZE).pending(HEADER, true), undefined, "answered: nothing left");
    } finally {
      fs.closeSync(fd);
    }
  });
});
