// procview under real runc containers with real cgroup limits, read by the real tools
// (procps free/top/uptime/vmstat, python3, node, getconf), then LXCFS on the same setup.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { type Seen, seenIn } from "../helpers/checks";
import { type Daemon, isMounted, startLxcfs, startProcview } from "../helpers/daemons";
import { Container } from "../helpers/runc";

const MiB = 1024 * 1024;
const LIMITED = { memoryBytes: 256 * MiB, cpuQuota: 0.5, cpus: "0-1" };

describe("procview in runc containers", () => {
  let pv: Daemon;
  let a: Container;
  let b: Container;
  let startedA: number;
  let createdA: number;
  let seenA: Seen;

  before(async () => {
    pv = await startProcview();
    startedA = Date.now();
    a = new Container({ ...LIMITED, source: pv.dir });
    createdA = Date.now();
    b = new Container({ memoryBytes: 512 * MiB, cpus: "0-1", source: pv.dir });
    seenA = seenIn(a);
  });
  after(async () => {
    a?.destroy();
    b?.destroy();
    const code = await pv?.stop();
    assert.equal(code, 0, pv?.output());
    assert.equal(isMounted(pv.dir), false, "the mount is gone after SIGTERM");
  });

  it("free -b inside a 256 MiB container reports 268435456 bytes total", () => {
    assert.equal(seenA.freeTotal, 268435456);
    assert.equal(seenA.topMemTotalMiB, 256);
  });

  it("node os.totalmem() is 268435456", () => {
    assert.equal(seenA.nodeTotalmem, 268435456);
  });

  it("under a 0.5-CPU quota on a 2-CPU cpuset every runtime counts 1 CPU", () => {
    assert.deepEqual(
      [seenA.cpuinfoProcessors, seenA.pythonCpuCount, seenA.nodeCpus, seenA.getconfOnln, seenA.getconfConf],
      [1, 1, 1, 1, 1],
    );
    assert.equal(seenA.cpuDirCpus, "cpu0,");
  });

  it("/proc/stat has exactly the cpu and cpu0 lines", () => {
    assert.equal(seenA.statCpuLines, "cpu,cpu0,");
  });

  it("uptime counts seconds since the container started, not the host's; idle is most of half a CPU", () => {
    const [up, idle] = a.sh("cat /proc/uptime").trim().split(" ").map(Number);
    // The container started after startedA and before createdA.
    const [low, high] = [(Date.now() - createdA) / 1000, (Date.now() - startedA) / 1000];
    assert.ok(
      up >= low - 0.05 && up <= high + 0.05,
      `container uptime ${up} s, between ${low.toFixed(2)} and ${high.toFixed(2)} s expected`,
    );
    assert.ok(idle <= up * 0.5 + 0.01, `idle ${idle} s of at most ${(up * 0.5).toFixed(2)}`);
    // Over one quiet second, uptime grows by 1 s and idle by half a CPU's second.
    const [[up1, idle1], [up2, idle2]] = a
      .sh("cat /proc/uptime; sleep 1; cat /proc/uptime")
      .trim()
      .split("\n")
      .map((l) => l.split(" ").map(Number));
    assert.ok(Math.abs(up2 - up1 - 1) < 0.1, `uptime went ${up1} -> ${up2}`);
    assert.ok(Math.abs(idle2 - idle1 - 0.5) < 0.06, `idle went ${idle1} -> ${idle2} over ${(up2 - up1).toFixed(2)} s`);
    assert.match(a.sh("uptime"), /up 0 min/);
  });

  it("top, uptime and vmstat run and show the container's memory and load", () => {
    const top = a.sh("top -bn1");
    assert.match(top, /^MiB Mem :\s+256\.0 total/m);
    assert.match(top, /^%Cpu\(s\):/m);
    const vm = a.sh("vmstat 1 2").trim().split("\n");
    const free = Number(vm[vm.length - 1].trim().split(/\s+/)[3]);
    assert.ok(free > 0 && free <= 262144, `vmstat free ${free} KiB`);
  });

  it("loadavg: the container's own tasks and newest pid, as the kernel prints them", () => {
    // sh, then cat in its place: at the read the container has sleep (pid 1), this sh and
    // nothing else, and the newest pid is the shell's own.
    const [pid, loadavg] = a.sh("echo $$; exec cat /proc/loadavg").trim().split("\n");
    const m = /^(\d+\.\d\d) (\d+\.\d\d) (\d+\.\d\d) (\d+)\/(\d+) (\d+)$/.exec(loadavg);
    assert.ok(m, loadavg);
    assert.equal(m[6], pid, `newest pid ${m[6]}, the reader is ${pid}`);
    assert.equal(m[5], "2", `tasks ${m[5]}: sleep and the reader`);
    assert.ok(Number(m[1]) < 1, `load ${m[1]} of a container that has been nearly idle`);
  });

  it("diskstats after direct I/O with no blkio throttle rule: every host disk listed, no host counter", () => {
    // Direct reads from the host's disk (the rootfs /usr is a bind of the host's).
    a.sh("dd if=/usr/bin/python3 of=/dev/null bs=64k count=16 iflag=direct 2>/dev/null");
    const inside = a.sh("cat /proc/diskstats").trim().split("\n");
    const host = fs.readFileSync("/proc/diskstats", "utf8").trim().split("\n");
    const names = (lines: string[]) => lines.map((l) => l.trim().split(/\s+/).slice(0, 3).join(" "));
    assert.deepEqual(names(inside), names(host));
    for (const l of inside) assert.match(l, /^\s*\d+\s+\d+ \S+( 0)+$/, l);
    // vmstat -d reads it and prints a line per disk.
    assert.ok(a.sh("vmstat -d").trim().split("\n").length >= 3);
    assert.equal(a.sh("cat /proc/partitions"), fs.readFileSync("/proc/partitions", "utf8"));
  });

  it("a host process that entered the container (nsenter -p -m, still in the host's cgroup) reads the container's figures in every file", () => {
    const r = spawnSync(
      "nsenter",
      [
        "-t",
        String(a.pid),
        "-p",
        "-m",
        "--",
        "sh",
        "-c",
        "awk '/^MemTotal/{print $2}' /proc/meminfo; grep ^cpu /proc/stat | cut -d' ' -f1 | tr '\\n' ,; echo; cat /proc/uptime; head -1 /proc/stat",
      ],
      { encoding: "utf8", timeout: 20_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    const [total, cpus, uptime, cpuLine] = r.stdout.trim().split("\n");
    assert.equal(Number(total), 262144);
    assert.equal(cpus, "cpu,cpu0,");
    const up = Number(uptime.split(" ")[0]);
    assert.ok(up < (Date.now() - startedA) / 1000 + 1, `uptime ${up} s: the container's, not the host's`);
    // The same view in /proc/stat: idle is the container's, not 0 (which top would show as 100% busy).
    assert.ok(Number(cpuLine.split(/\s+/)[4]) > 0, cpuLine);
  });

  it("psutil, as monitoring agents call it: the container's memory, CPUs and disks; boot time and load averages stay the host's", () => {
    a.sh("dd if=/usr/bin/python3 of=/dev/null bs=64k count=16 iflag=direct 2>/dev/null");
    const out = a.sh(
      `python3 -c 'import json, os, psutil; d = psutil.disk_io_counters(); print(json.dumps([psutil.virtual_memory().total, psutil.cpu_count(), d is not None, psutil.boot_time(), psutil.getloadavg()[0], os.getloadavg()[0]]))'`,
    );
    const [total, cpus, disks, boot, psutilLoad, osLoad] = JSON.parse(out) as [number, number, boolean, number, number, number];
    const hostBtime = Number(/^btime (\d+)/m.exec(fs.readFileSync("/proc/stat", "utf8"))?.[1]);
    const fileLoad = Number(a.sh("cut -d' ' -f1 /proc/loadavg"));
    console.log(
      `# psutil: total ${total}, cpu_count ${cpus}, disk_io_counters ${disks ? "present" : "None"}, boot_time ${boot} (host btime ${hostBtime}), getloadavg ${psutilLoad} = os.getloadavg ${osLoad}; the file says ${fileLoad}`,
    );
    assert.deepEqual([total, cpus, disks, boot], [256 * MiB, 1, true, hostBtime]);
    // glibc's getloadavg asks sysinfo(2), which no file changes: the README says so.
    assert.equal(psutilLoad, osLoad);
  });

  it("Go's runtime.NumCPU follows the cpuset (sched_getaffinity), not the quota the files show", () => {
    const dir = fs.mkdtempSync("/tmp/pv-go-");
    try {
      fs.writeFileSync(
        path.join(dir, "main.go"),
        'package main\n\nimport (\n\t"fmt"\n\t"runtime"\n)\n\nfunc main() { fmt.Println(runtime.NumCPU(), runtime.GOMAXPROCS(0)) }\n',
      );
      const built = spawnSync("go", ["build", "-o", path.join(dir, "numcpu"), path.join(dir, "main.go")], {
        encoding: "utf8",
        env: { ...process.env, GOCACHE: path.join(dir, "cache"), GO111MODULE: "off" },
      });
      assert.equal(built.status, 0, built.stderr);
      // Into the container's own /tmp (its rootfs has the host's /usr, read-only).
      a.sh("base64 -d > /tmp/numcpu && chmod +x /tmp/numcpu", fs.readFileSync(path.join(dir, "numcpu")).toString("base64"));
      const [numCpu, maxProcs] = a.sh("/tmp/numcpu").trim().split(" ").map(Number);
      console.log(
        `# Go ${spawnSync("go", ["version"], { encoding: "utf8" }).stdout.trim()}: NumCPU ${numCpu}, GOMAXPROCS ${maxProcs} in a 0.5-CPU container on cpuset 0-1 (the files say 1)`,
      );
      assert.deepEqual([numCpu, maxProcs], [2, 2]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a second container with other limits sees its own figures at the same time", () => {
    for (let i = 0; i < 3; i++) {
      const seenB = seenIn(b);
      assert.equal(seenB.freeTotal, 536870912);
      assert.equal(seenB.pythonCpuCount, 2);
      assert.equal(seenB.statCpuLines, "cpu,cpu0,cpu1,");
      assert.equal(Number(a.sh("free -b | awk '/^Mem:/{print $2}'")), 268435456);
    }
  });

  it("a busy container shows its own utilisation in /proc/stat", async () => {
    const ticks = () => a.sh("head -1 /proc/stat").trim().split(/\s+/).slice(1, 5).map(Number);
    const before = ticks();
    a.sh("timeout 2 sh -c 'while :; do :; done' || true");
    const afterT = ticks();
    const busy = afterT[0] + afterT[2] - (before[0] + before[2]);
    const idle = afterT[3] - before[3];
    const util = busy / (busy + idle);
    // 2 s of spinning under a 0.5-CPU quota: the container's one CPU is nearly all busy.
    assert.ok(util > 0.6, `utilisation ${util.toFixed(2)} (busy ${busy}, idle ${idle})`);
  });

  it("readers with 1-byte, 1024-byte and stdio reads get a consistent file", () => {
    const script = [
      "import os, sys",
      "def chunks(n):",
      "    fd = os.open(sys.argv[1], os.O_RDONLY); out = b''",
      "    while True:",
      "        b = os.read(fd, n)",
      "        if not b: break",
      "        out += b",
      "    os.close(fd); return out.decode()",
      "for t in (chunks(1), chunks(1024), open(sys.argv[1]).read()):",
      "    keys = [l.split(':')[0] for l in t.splitlines()]",
      "    total = [l for l in t.splitlines() if l.startswith('MemTotal:')][0]",
      "    print(len(keys), ','.join(keys)[:60], total.split()[1])",
    ].join("\n");
    a.sh(`cat > /tmp/r.py <<'EOF'\n${script}\nEOF`);
    const lines = a.sh("python3 /tmp/r.py /proc/meminfo").trim().split("\n");
    assert.equal(lines.length, 3);
    assert.equal(new Set(lines).size, 1, lines.join("\n"));
    assert.match(lines[0], / 262144$/);
    const stat1 = a.sh("dd if=/proc/stat bs=1 2>/dev/null | grep ^cpu | cut -d' ' -f1");
    assert.equal(stat1.trim().split("\n").join(","), "cpu,cpu0");
  });

  it("a host process reading the mount sees the host's files", () => {
    const both = (f: string) => [fs.readFileSync(path.join(pv.dir, f), "utf8"), fs.readFileSync(`/${f}`, "utf8")];
    const keys = (t: string) => t.split("\n").map((l) => l.split(":")[0]);
    const [meminfo, hostMeminfo] = both("proc/meminfo");
    assert.deepEqual(keys(meminfo), keys(hostMeminfo));
    for (const k of ["MemTotal", "SwapTotal", "CommitLimit", "Hugepagesize"])
      assert.equal(new RegExp(`^${k}:.*$`, "m").exec(meminfo)?.[0], new RegExp(`^${k}:.*$`, "m").exec(hostMeminfo)?.[0], k);
    // cpuinfo is static but for the clock speed.
    const noMhz = (t: string) => t.replace(/^cpu MHz.*$/gm, "");
    const [cpuinfo, hostCpuinfo] = both("proc/cpuinfo");
    assert.equal(noMhz(cpuinfo), noMhz(hostCpuinfo));
    const [online, hostOnline] = both("sys/devices/system/cpu/online");
    assert.equal(online, hostOnline);
    const [stat, hostStat] = both("proc/stat");
    const cpuNames = (t: string) =>
      t
        .split("\n")
        .filter((l) => l.startsWith("cpu"))
        .map((l) => l.split(" ")[0]);
    assert.deepEqual(cpuNames(stat), cpuNames(hostStat));
    assert.equal(/^btime .*$/m.exec(stat)?.[0], /^btime .*$/m.exec(hostStat)?.[0]);
    const [uptime, hostUptime] = both("proc/uptime").map((t) => Number(t.split(" ")[0]));
    assert.ok(Math.abs(uptime - hostUptime) < 1, `uptime ${uptime} through the mount, ${hostUptime} on the host`);
  });

  it("writes are refused with a permission error and df works on the mount", () => {
    assert.throws(() => fs.openSync(path.join(pv.dir, "proc/meminfo"), "r+"), { code: "EACCES" });
    assert.throws(() => fs.writeFileSync(path.join(pv.dir, "proc/new"), "x"), { code: "EACCES" });
    assert.equal(spawnSync("df", [pv.dir]).status, 0);
  });
});

describe("LXCFS 5.0.3 on the same container, for comparison", () => {
  let lx: Daemon;
  let c: Container;
  let seen: Seen;
  before(async () => {
    lx = await startLxcfs();
    c = new Container({ ...LIMITED, source: lx.dir, remountable: false });
    seen = seenIn(c);
  });
  after(async () => {
    c?.destroy();
    await lx?.stop();
    assert.ok(!fs.readFileSync("/proc/self/mountinfo", "utf8").includes(` ${lx.dir} `), "LXCFS unmounted");
  });

  it("agrees with procview on memory and on the CPU count runtimes use", (t) => {
    t.diagnostic(JSON.stringify(seen));
    assert.equal(seen.freeTotal, 268435456);
    assert.equal(seen.nodeTotalmem, 268435456);
    assert.equal(seen.cpuinfoProcessors, 1);
    assert.equal(seen.pythonCpuCount, 1);
    assert.equal(seen.getconfOnln, 1);
    assert.equal(seen.statCpuLines, "cpu,cpu0,");
  });

  it("differs where procview deliberately does better (documented in the README)", () => {
    // LXCFS passes the host's cpuN directories through: glibc's _NPROCESSORS_CONF says 2.
    assert.equal(seen.getconfConf, 2);
    // With no per-device figures (v1, no throttle rule) both list every host disk with zeros.
    assert.equal(seen.diskstatsLines, fs.readFileSync("/proc/diskstats", "utf8").trim().split("\n").length);
    // LXCFS reports the host pid of the newest task; procview the container's own.
    assert.ok(seen.loadavgLastPid > c.pid - 1);
  });
});
