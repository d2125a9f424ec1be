// Pure views and protocol encoders, checked against the kernel's own arithmetic and layouts.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DT_REG, decodeInHeader, ENTRY_OUT_SIZE, encodeDirents, encodeEntryOut, S_IFREG } from "../../src/fuse/protocol";
import { renderCpuinfo } from "../../src/views/cpuinfo";
import { renderCpuRange, visibleCpus } from "../../src/views/cpus";
import { decayLoad, type LoadTriple, renderLoadavg } from "../../src/views/loadavg";
import { renderMeminfo } from "../../src/views/meminfo";
import { renderUptime } from "../../src/views/uptime";
import { hostCpuinfo, hostMeminfo, MiB } from "../helpers/fixtures";

describe("load average", () => {
  it("one running task for a minute gives the kernel's 0.63 (1 - 1/e), and 1.00 after ten", () => {
    let load: LoadTriple = [0, 0, 0];
    for (let i = 0; i < 12; i++) load = decayLoad(load, 1);
    assert.equal(renderLoadavg(load, 1, 1, 1).split(" ")[0], "0.63");
    for (let i = 0; i < 108; i++) load = decayLoad(load, 1);
    assert.equal(renderLoadavg(load, 1, 1, 1).split(" ")[0], "1.00");
  });

  it("decays back toward 0 when the tasks stop", () => {
    let load: LoadTriple = [4 * 2048, 4 * 2048, 4 * 2048];
    for (let i = 0; i < 12; i++) load = decayLoad(load, 0);
    const [one, five, fifteen] = renderLoadavg(load, 0, 1, 1).split(" ").map(Number);
    assert.ok(one < 1.6 && one > 1.4, `1-min ${one}`);
    assert.ok(five > one && fifteen > five);
  });
});

describe("CPU selection", () => {
  const online = [0, 1, 2, 3, 4, 5, 6, 7];
  it("never shows zero CPUs, even for a tiny quota", () => {
    assert.deepEqual(visibleCpus(online, { cpuset: [3], quota: 0.01 }, true), [3]);
  });
  it("a quota of exactly 2 CPUs is 2, not 3", () => {
    assert.equal(visibleCpus(online, { cpuset: null, quota: 2 }, true).length, 2);
  });
  it("a cpuset naming offline CPUs keeps only the online ones", () => {
    assert.deepEqual(visibleCpus([0, 1], { cpuset: [1, 5], quota: null }, true), [1]);
  });
  it("online ranges", () => {
    assert.equal(renderCpuRange(1), "0\n");
    assert.equal(renderCpuRange(4), "0-3\n");
  });
});

describe("layouts", () => {
  it("meminfo keeps every host line, in order, with the kernel's column layout", () => {
    const host = hostMeminfo(16 * 1024 * 1024, 0);
    const out = renderMeminfo(host, {
      version: 2,
      limit: 256 * MiB,
      usage: 10 * MiB,
      swapMax: null,
      swapUsage: 0,
      stat: {
        cache: 0,
        anon: 0,
        shmem: 0,
        mapped: 0,
        dirty: 0,
        writeback: 0,
        swapCached: 0,
        activeAnon: 0,
        inactiveAnon: 0,
        activeFile: 0,
        inactiveFile: 0,
        unevictable: 0,
        anonHuge: 0,
        slabReclaimable: 0,
        slabUnreclaimable: 0,
      },
    });
    const keys = (t: string) => t.split("\n").map((l) => l.split(":")[0]);
    assert.deepEqual(keys(out), keys(host));
    for (const line of out.split("\n").filter((l) => l.endsWith(" kB"))) assert.match(line, /^.{16}[ \d]{8,} kB$/, line);
    assert.match(out, /^Mlocked: +0 kB$/m, "host-wide usage with no cgroup source is not shown as the host's");
  });

  it("cpuinfo for one CPU out of eight is one package with one core", () => {
    const out = renderCpuinfo(hostCpuinfo(8), [5]);
    assert.equal((out.match(/^processor\t: 0$/gm) ?? []).length, 1);
    assert.match(out, /^cpu cores\t: 1$/m);
    assert.match(out, /^apicid\t\t: 0$/m);
    assert.ok(out.endsWith("\n\n"));
  });

  it("uptime has two decimals, as the kernel prints it", () => {
    assert.equal(renderUptime(12.345, 3), "12.35 3.00\n");
  });
});

describe("FUSE encoding", () => {
  it("directory entries are 8-byte aligned and carry the next offset", () => {
    const buf = Buffer.alloc(4096);
    const n = encodeDirents(
      buf,
      [
        { ino: 5, name: "a", type: DT_REG },
        { ino: 6, name: "meminfo", type: DT_REG },
      ],
      0,
      4096,
    );
    assert.equal(n, 32 + 32);
    assert.equal(buf.readBigUInt64LE(8), 1n);
    assert.equal(buf.readUInt32LE(32 + 16), 7);
    assert.equal(buf.toString("utf8", 32 + 24, 32 + 31), "meminfo");
    // A buffer too small for the second entry gets only the first.
    assert.equal(
      encodeDirents(
        buf,
        [
          { ino: 5, name: "a", type: DT_REG },
          { ino: 6, name: "b", type: DT_REG },
        ],
        0,
        40,
      ),
      32,
    );
  });

  it("entry_out puts nodeid first and the attr's mode at byte 100", () => {
    const buf = Buffer.alloc(256);
    assert.equal(encodeEntryOut(buf, 9, { ino: 9, size: 0, mode: S_IFREG | 0o444, nlink: 1, mtimeSec: 0 }, 1.5, 0), ENTRY_OUT_SIZE);
    assert.equal(buf.readBigUInt64LE(0), 9n);
    assert.equal(buf.readBigUInt64LE(16), 1n);
    assert.equal(buf.readUInt32LE(32), 500_000_000);
    assert.equal(buf.readUInt32LE(40 + 60), S_IFREG | 0o444);
  });

  it("the request header decodes pid and opcode", () => {
    const h = Buffer.alloc(40);
    h.writeUInt32LE(40, 0);
    h.writeUInt32LE(15, 4);
    h.writeBigUInt64LE(77n, 8);
    h.writeUInt32LE(1234, 32);
    assert.deepEqual({ ...decodeInHeader(h) }, { len: 40, opcode: 15, unique: 77n, nodeid: 0, uid: 0, gid: 0, pid: 1234 });
  });
});
