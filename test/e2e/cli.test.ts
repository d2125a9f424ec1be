// The command line as an operator meets it: one clear line and a non-zero exit for every
// mistake, a clean unmount on SIGTERM/SIGINT, and inspect on a real container.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, describe, it } from "node:test";
import { BIN, cleanMountpoint, isMounted, startProcview, tempDir } from "../helpers/daemons";
import { Container } from "../helpers/runc";

function procview(args: string[], opts: { asUser?: number } = {}) {
  const cmd =
    opts.asUser === undefined
      ? [process.execPath, BIN, ...args]
      : ["setpriv", `--reuid=${opts.asUser}`, `--regid=${opts.asUser}`, "--clear-groups", process.execPath, BIN, ...args];
  const r = spawnSync(cmd[0], cmd.slice(1), { encoding: "utf8", timeout: 20000 });
  return { status: r.status, stderr: r.stderr, stdout: r.stdout };
}

/** Bad input: one line on stderr and exit 2, as the README's command table says. */
function assertOneLineError(r: ReturnType<typeof procview>, pattern: RegExp): void {
  assert.equal(r.status, 2, r.stderr);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], pattern);
}

const scratch: string[] = [];
const scratchDir = () => {
  const d = tempDir("pv-");
  scratch.push(d);
  return d;
};
after(() => {
  for (const d of scratch) fs.rmSync(d, { recursive: true, force: true });
});

describe("procview serve refuses what it cannot do", () => {
  it("not root", () => {
    assertOneLineError(procview(["serve", "--mountpoint", scratchDir()], { asUser: 65534 }), /must run as root/);
  });
  it("mountpoint missing", () => {
    assertOneLineError(procview(["serve", "--mountpoint", "/nonexistent/procview"]), /does not exist/);
  });
  it("mountpoint is a file", () => {
    const f = path.join(scratchDir(), "file");
    fs.writeFileSync(f, "");
    assertOneLineError(procview(["serve", "--mountpoint", f]), /not a directory/);
  });
  it("unknown flag", () => {
    assertOneLineError(procview(["serve", "--no-such-flag"]), /unknown option/);
  });
  it("already serving, and SIGINT unmounts and exits 0", async () => {
    const d = await startProcview();
    try {
      // Without --take-over a second daemon leaves the running one alone.
      assertOneLineError(procview(["serve", "--mountpoint", d.dir]), /already mounted and serving.*--take-over/);
    } finally {
      d.proc.kill("SIGINT");
      const code = await new Promise((r) => d.proc.once("exit", r));
      assert.equal(code, 0);
      assert.equal(isMounted(d.dir), false);
      cleanMountpoint(d.dir);
    }
  });
});

describe("procview inspect", () => {
  it("shows a container's view next to the host's", () => {
    const c = new Container({ memoryBytes: 256 * 1024 * 1024, cpuQuota: 0.5, cpus: "0-1" });
    try {
      const r = procview(["inspect", String(c.pid)]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /served its container's view/);
      assert.match(r.stdout, /^proc\/meminfo\s+MemTotal\s+262144 kB\s+\d+ kB$/m);
      assert.match(r.stdout, /^proc\/cpuinfo\s+processors\s+1\s+\d+$/m);
      const json = JSON.parse(procview(["inspect", "--json", String(c.pid)]).stdout);
      assert.equal(json.limits.memory, 268435456);
      assert.equal(json.limits.cpu.quota, 0.5);
    } finally {
      c.destroy();
    }
  });
  it("shows the load average the container's own /proc/loadavg shows (the daemon's samples)", async () => {
    const pv = await startProcview();
    const c = new Container({ memoryBytes: 256 * 1024 * 1024, cpus: "0-1", source: pv.dir });
    const busy = c.shAsync("timeout 20 sh -c 'while :; do :; done'; true");
    try {
      const fileLoad = () => Number(c.sh("cut -d' ' -f1 /proc/loadavg"));
      // The first 5-second sample of a busy task makes the 1-minute load 0.08.
      for (const end = Date.now() + 15_000; fileLoad() === 0; await new Promise((r) => setTimeout(r, 250)))
        if (Date.now() > end) throw new Error("the container's load stayed 0.00");
      let seen = "";
      let shown = "";
      // A sample may land between the two reads: the next pair agrees.
      for (let i = 0; i < 3 && (seen === "" || seen !== shown); i++) {
        seen = c.sh("cut -d' ' -f1 /proc/loadavg").trim();
        const r = procview(["inspect", "--mountpoint", pv.dir, String(c.pid)]);
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /load averages as the daemon sampled them/);
        shown = /^proc\/loadavg\s+1-minute load\s+(\S+)\s/m.exec(r.stdout)?.[1] ?? "";
      }
      console.log(`# 1-minute load: inspect ${shown}, the container's file ${seen}`);
      assert.equal(shown, seen);
      assert.ok(Number(shown) > 0, shown);
    } finally {
      c.destroy();
      await busy.catch(() => undefined);
      await pv.stop();
    }
  });
  it("rejects a pid that is not a number or not running", () => {
    assertOneLineError(procview(["inspect", "abc"]), /not a process id/);
    assertOneLineError(procview(["inspect", "99999999"]), /no process/);
  });
});
