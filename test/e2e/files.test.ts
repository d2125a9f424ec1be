// The files and flags the main container tests do not reach: swap against a real swap
// device, the pressure files, slabinfo, and `serve --no-cpu-quota`. Each figure is checked
// against what the kernel says about the container's own cgroup, read from the host.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { seenIn } from "../helpers/checks";
import { type Daemon, startProcview, tempDir } from "../helpers/daemons";
import { Container } from "../helpers/runc";

const MiB = 1024 * 1024;

/** The container's cgroup directory in the host's tree for one hierarchy ("" = unified). */
function cgroupDir(c: Container, controller: string): string {
  for (const line of fs.readFileSync(`/proc/${c.pid}/cgroup`, "utf8").trim().split("\n")) {
    const [, ctrls, p] = line.split(":");
    if (controller === "" ? ctrls === "" : ctrls.split(",").includes(controller))
      return path.join("/sys/fs/cgroup", controller === "" ? "unified" : ctrls, p);
  }
  throw new Error(`no ${controller || "unified"} cgroup for ${c.pid}`);
}

describe("swap, against a real swap device on the host", () => {
  let pv: Daemon;
  let dir: string;
  let swapfile: string;
  const containers: Container[] = [];
  let hostSwapKb = 0;

  before(async () => {
    dir = tempDir("pv-swap-");
    swapfile = path.join(dir, "swapfile");
    const mk = (cmd: string[]) => {
      const r = spawnSync(cmd[0], cmd.slice(1), { encoding: "utf8" });
      assert.equal(r.status, 0, `${cmd.join(" ")}: ${r.stderr}`);
    };
    mk(["dd", "if=/dev/zero", `of=${swapfile}`, "bs=1M", "count=64", "status=none"]);
    fs.chmodSync(swapfile, 0o600);
    mk(["mkswap", swapfile]);
    mk(["swapon", swapfile]);
    hostSwapKb = Number(/^SwapTotal:\s+(\d+)/m.exec(fs.readFileSync("/proc/meminfo", "utf8"))?.[1]);
    pv = await startProcview();
  });
  after(async () => {
    for (const c of containers) c.destroy();
    await pv?.stop();
    spawnSync("swapoff", [swapfile]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const freeSwap = (c: Container) => Number(c.sh("free -b | awk '/^Swap:/{print $2}'"));
  const swapLines = (c: Container) => c.sh("tail -n +2 /proc/swaps").trim().split("\n").filter(Boolean);

  it("memory + swap limited to 256 + 32 MiB: free shows 32 MiB of swap, /proc/swaps one device of 32768 kB", () => {
    const c = new Container({ memoryBytes: 256 * MiB, memoryAndSwapBytes: 288 * MiB, source: pv.dir });
    containers.push(c);
    assert.ok(hostSwapKb >= 64 * 1024 - 4, `the host has ${hostSwapKb} kB of swap`);
    assert.equal(freeSwap(c), 32 * MiB);
    const lines = swapLines(c);
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.deepEqual(lines[0].split(/\s+/).slice(2, 4), ["32768", "0"]);
  });

  it("no swap allowed (memory + swap = memory): free shows 0, /proc/swaps no device", () => {
    const c = new Container({ memoryBytes: 256 * MiB, source: pv.dir });
    containers.push(c);
    assert.equal(freeSwap(c), 0);
    assert.deepEqual(swapLines(c), []);
  });

  it("swap not limited: the host's swap, which is smaller than any limit", () => {
    const c = new Container({ memoryBytes: 256 * MiB, memoryAndSwapBytes: -1, source: pv.dir });
    containers.push(c);
    assert.equal(freeSwap(c), hostSwapKb * 1024);
    assert.equal(swapLines(c)[0].split(/\s+/)[2], String(hostSwapKb));
  });
});

describe("pressure and slabinfo, through /run/procview", () => {
  let pv: Daemon;
  let c: Container;
  before(async () => {
    pv = await startProcview();
    c = new Container({ memoryBytes: 256 * MiB, cpuQuota: 0.5, cpus: "0-1", source: pv.dir });
    c.sh("timeout 1 sh -c 'while :; do :; done' || true"); // some CPU pressure of its own
  });
  after(async () => {
    c?.destroy();
    await pv?.stop();
  });

  for (const kind of ["cpu", "memory", "io"]) {
    it(`pressure/${kind} is the container's cgroup's ${kind}.pressure, not the host's`, () => {
      const total = (text: string) => Number(/^some .* total=(\d+)$/m.exec(text)?.[1]);
      const own = path.join(cgroupDir(c, ""), `${kind}.pressure`);
      const before = total(fs.readFileSync(own, "utf8"));
      const seen = c.sh(`cat /run/procview/proc/pressure/${kind}`);
      const afterT = total(fs.readFileSync(own, "utf8"));
      assert.match(seen, /^some avg10=\d+\.\d\d avg60=\d+\.\d\d avg300=\d+\.\d\d total=\d+\nfull avg10=/);
      const shown = total(seen);
      assert.ok(shown >= before && shown <= afterT, `shown ${shown}, the cgroup's own went ${before} -> ${afterT}`);
      if (kind === "cpu") {
        const host = total(fs.readFileSync("/proc/pressure/cpu", "utf8"));
        assert.ok(shown > 0, "a quota-throttled busy loop leaves CPU pressure");
        assert.ok(shown < host, `shown ${shown}, host ${host}`);
      }
    });
  }

  it("slabinfo: root reads the kernel's format, another user is refused as on the host", () => {
    const text = c.sh("cat /run/procview/proc/slabinfo");
    assert.match(text, /^slabinfo - version: 2\.1\n# name +<active_objs>/);
    assert.ok(text.trim().split("\n").length > 2, "at least one cache");
    assert.throws(() => c.exec(["cat", "/run/procview/proc/slabinfo"], "1000"), /Permission denied/);
  });
});

describe("serve --no-cpu-quota", () => {
  let pv: Daemon;
  let c: Container;
  before(async () => {
    pv = await startProcview(["--no-cpu-quota"]);
    c = new Container({ memoryBytes: 256 * MiB, cpuQuota: 0.5, cpus: "0-1", source: pv.dir });
  });
  after(async () => {
    c?.destroy();
    await pv?.stop();
  });

  it("a 0.5-CPU quota on a 2-CPU cpuset shows both CPUs to every runtime; memory is still the container's", () => {
    const seen = seenIn(c);
    assert.deepEqual([seen.cpuinfoProcessors, seen.pythonCpuCount, seen.nodeCpus, seen.getconfOnln], [2, 2, 2, 2]);
    assert.equal(seen.statCpuLines, "cpu,cpu0,cpu1,");
    assert.equal(seen.cpuDirCpus, "cpu0,cpu1,");
    assert.equal(seen.freeTotal, 256 * MiB);
  });
});

describe("the CPU topology a container is shown", () => {
  let pv: Daemon;
  const cs: Container[] = [];
  before(async () => {
    pv = await startProcview();
  });
  after(async () => {
    for (const c of cs) c.destroy();
    await pv?.stop();
  });

  /** What lscpu -p prints on a machine with only `cpu`: every id 0, the host's empty columns empty. */
  const oneCpuMachine = (cpu: number) => {
    const line = spawnSync("lscpu", ["-p"], { encoding: "utf8" })
      .stdout.split("\n")
      .find((l) => l.startsWith(`${cpu},`));
    assert.ok(line, `the host's lscpu -p has no CPU ${cpu}`);
    return line.replace(/\d+/g, "0");
  };
  const parsable = (c: Container) => c.sh("lscpu -p | grep -v '^#'").trim();

  it('cpuset "1": lscpu -p and -e print what a 1-CPU machine prints; topology and caches name only cpu0', () => {
    const c = new Container({ memoryBytes: 256 * MiB, cpus: "1", source: pv.dir });
    cs.push(c);
    assert.equal(parsable(c), oneCpuMachine(1));
    assert.match(c.sh("lscpu -e").trim().split("\n")[1], /^\s*0\s+0\s+0\s+0\s+0:0:0:0\s+yes$/);
    const sys = "/sys/devices/system/cpu/cpu0";
    assert.equal(c.sh(`cat ${sys}/topology/core_cpus_list ${sys}/topology/package_cpus_list ${sys}/topology/thread_siblings`), "0\n0\n1\n");
    for (const index of fs.readdirSync("/sys/devices/system/cpu/cpu1/cache").filter((d) => d.startsWith("index")))
      assert.equal(c.sh(`cat ${sys}/cache/${index}/shared_cpu_list ${sys}/cache/${index}/id`), "0\n0\n", index);
  });

  it('a 0.5-CPU quota on cpuset "0-1": one CPU, and lscpu agrees', () => {
    const c = new Container({ memoryBytes: 256 * MiB, cpuQuota: 0.5, cpus: "0-1", source: pv.dir });
    cs.push(c);
    assert.equal(parsable(c), oneCpuMachine(0));
    assert.equal(c.sh("cat /sys/devices/system/cpu/cpu0/topology/package_cpus_list"), "0\n");
  });
});
