// Which kernels let the watchdog kill a hung serving process: those that resend a dead
// process's unanswered reads to its successor (FUSE_NOTIFY_RESEND, Linux 6.9).
import assert from "node:assert/strict";
import { it } from "node:test";
import { kernelResends } from "../../src/daemon/supervisor";

it("Debian 12's 6.1 and Ubuntu 22.04's 5.15 do not; 6.9, bookworm-security's 6.12 and this 6.18 do", () => {
  const table = [
    "6.1.0-28-amd64",
    "5.15.0-91-generic",
    "5.14.0-362.el9.x86_64",
    "6.8.0-31-generic",
    "6.9.0",
    "6.12.12+deb12-amd64",
    "6.18.44-fc-v595",
    "7.0.1",
  ];
  assert.deepEqual(
    table.map((r) => kernelResends(r)),
    [false, false, false, false, true, true, true, true],
  );
});
