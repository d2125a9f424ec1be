// Reader + views on cgroup v2 fixture trees (file names and formats from cgroup-v2.rst);
// this kernel cannot enable v2 controllers, so these trees stand in for the real thing.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterEach, describe, it } from "node:test";
import type { LoadEntry } from "../../src/daemon/render";
import { type Fixture, fixtureSystem, GiB, MiB, READER_PID, StaticLoads, v2MemoryStat } from "../helpers/fixtures";

let fx: Fixture | undefined;
afterEach(() => fx?.cleanup());

function text(f: Fixture, view: Parameters<Fixture["renderer"]["render"]>[0]): string {
  const r = f.renderer.render(view, READER_PID, 0);
  if (typeof r === "number") throw new Error(`errno ${r}`);
  assert.equal(r.fallback, undefined, `${view} fell back to the host's file`);
  return r.text;
}
function field(t: string, key: string): number {
  return Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(t)?.[1]);
}

const pod = "/kubepods.slice/pod1.slice/cri-abc.scope";
function memTree(o: { podMax: string; ctrMax: string; swapMax?: string; podSwapMax?: string; current: number; swapCurrent?: number }) {
  return {
    "kubepods.slice/pod1.slice/memory.max": `${o.podMax}\n`,
    "kubepods.slice/pod1.slice/memory.swap.max": `${o.podSwapMax ?? "max"}\n`,
    "kubepods.slice/pod1.slice/cri-abc.scope/memory.max": `${o.ctrMax}\n`,
    "kubepods.slice/pod1.slice/cri-abc.scope/memory.swap.max": `${o.swapMax ?? "max"}\n`,
    "kubepods.slice/pod1.slice/cri-abc.scope/memory.current": `${o.current}\n`,
    "kubepods.slice/pod1.slice/cri-abc.scope/memory.swap.current": `${o.swapCurrent ?? 0}\n`,
    "kubepods.slice/pod1.slice/cri-abc.scope/memory.stat": v2MemoryStat({
      anon: 60 * MiB,
      file: 30 * MiB,
      activeFile: 10 * MiB,
      inactiveFile: 15 * MiB,
      slabReclaimable: 2 * MiB,
      shmem: 5 * MiB,
    }),
  };
}

describe("cgroup v2 meminfo", () => {
  it("memory.max on the pod, max on the container: MemTotal is the pod's 512 MiB", () => {
    fx = fixtureSystem({ version: 2, readerPath: pod, cgroups: memTree({ podMax: String(512 * MiB), ctrMax: "max", current: 100 * MiB }) });
    const t = text(fx, "proc/meminfo");
    assert.equal(field(t, "MemTotal"), 524288);
    assert.equal(field(t, "MemFree"), 412 * 1024);
    assert.equal(field(t, "MemAvailable"), (412 + 10 + 15 + 2) * 1024);
    assert.equal(field(t, "Shmem"), 5 * 1024);
    assert.equal(field(t, "SReclaimable"), 2 * 1024);
    assert.equal(field(t, "KernelStack"), 128);
    assert.equal(field(t, "PageTables"), 256);
  });

  it("max everywhere: the host's MemTotal", () => {
    fx = fixtureSystem({
      version: 2,
      readerPath: pod,
      hostMemKb: 4 * 1024 * 1024,
      cgroups: memTree({ podMax: "max", ctrMax: "max", current: MiB }),
    });
    assert.equal(field(text(fx, "proc/meminfo"), "MemTotal"), 4 * 1024 * 1024);
  });

  it("memory.swap.max 0: no swap, and /proc/swaps lists no device", () => {
    fx = fixtureSystem({
      version: 2,
      readerPath: pod,
      hostSwapKb: 1024 * 1024,
      cgroups: memTree({ podMax: String(GiB), ctrMax: String(256 * MiB), swapMax: "0", current: MiB }),
    });
    assert.equal(field(text(fx, "proc/meminfo"), "SwapTotal"), 0);
    assert.equal(text(fx, "proc/swaps").trim().split("\n").length, 1);
  });

  it("swap limited to 64 MiB on the pod: SwapTotal 65536 kB, SwapFree from swap.current", () => {
    fx = fixtureSystem({
      version: 2,
      readerPath: pod,
      hostSwapKb: 1024 * 1024,
      cgroups: memTree({
        podMax: String(GiB),
        ctrMax: String(256 * MiB),
        podSwapMax: String(64 * MiB),
        current: MiB,
        swapCurrent: 16 * MiB,
      }),
    });
    const t = text(fx, "proc/meminfo");
    assert.equal(field(t, "SwapTotal"), 65536);
    assert.equal(field(t, "SwapFree"), 48 * 1024);
    assert.match(text(fx, "proc/swaps"), /^none\s+virtual\s+65536\s+16384\s+-1$/m);
  });
});

describe("cgroup v2 CPUs, I/O and pressure", () => {
  const cpuTree = (max: string, cpus = "0-3,8,10-11") => ({
    "kubepods.slice/pod1.slice/cri-abc.scope/cpu.max": `${max}\n`,
    "kubepods.slice/pod1.slice/cri-abc.scope/cpuset.cpus.effective": `${cpus}\n`,
    "kubepods.slice/pod1.slice/cri-abc.scope/cpu.stat":
      "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
    "kubepods.slice/pod1.slice/cri-abc.scope/cpu.pressure":
      "some avg10=1.50 avg60=0.50 avg300=0.10 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    "kubepods.slice/pod1.slice/cri-abc.scope/io.stat": "8:0 rbytes=8192 wbytes=4096 rios=2 wios=1 dbytes=0 dios=0\n",
  });

  it('cpu.max "50000 100000" shows one CPU', () => {
    fx = fixtureSystem({ version: 2, readerPath: pod, cgroups: cpuTree("50000 100000") });
    assert.equal(text(fx, "sys/devices/system/cpu/online"), "0\n");
    assert.equal([...text(fx, "proc/cpuinfo").matchAll(/^processor/gm)].length, 1);
  });

  it('cpu.max "max" with cpuset 0-3,8,10-11 shows 7 CPUs, usage spread evenly', () => {
    fx = fixtureSystem({ version: 2, readerPath: pod, cgroups: cpuTree("max 100000") });
    assert.equal(text(fx, "sys/devices/system/cpu/online"), "0-6\n");
    const lines = text(fx, "proc/stat")
      .split("\n")
      .filter((l) => l.startsWith("cpu"));
    assert.equal(lines.length, 8);
    // 2 s of user time over 7 CPUs: 28 whole ticks each (28.57), and all 200 in the cpu line.
    assert.equal(Number(lines[0].split(/\s+/)[1]), 200);
    assert.equal(Number(lines[1].split(/\s+/)[1]), 28);
  });

  it("pressure comes from the cgroup's own cpu.pressure", () => {
    fx = fixtureSystem({ version: 2, readerPath: pod, cgroups: cpuTree("max 100000") });
    assert.match(text(fx, "proc/pressure/cpu"), /^some avg10=1.50 /);
  });

  it("io.stat feeds diskstats", () => {
    fx = fixtureSystem({ version: 2, readerPath: pod, cgroups: cpuTree("max 100000") });
    const f = text(fx, "proc/diskstats").trim().split(/\s+/);
    assert.deepEqual([f[2], f[3], f[5], f[7], f[9]], ["sda", "2", "16", "1", "8"]);
  });

  it("loadavg shows the sampled load of the container's cgroup and asks for sampling of new ones", () => {
    const dir = "cgroup/kubepods.slice/pod1.slice/cri-abc.scope";
    const entry: LoadEntry = { load: [2048 * 2, 2048, 1024], running: 2, uninterruptible: 0, total: 17, lastPid: 42 };
    const loads = new StaticLoads();
    fx = fixtureSystem({ version: 2, readerPath: pod, cgroups: cpuTree("max 100000") }, loads);
    const r = fx.renderer.render("proc/loadavg", READER_PID, 0);
    assert.ok(typeof r !== "number");
    assert.ok(loads.watched.some((d) => d.endsWith(dir)));
    fx.cleanup();
    const withEntry = new StaticLoads(new Map());
    fx = fixtureSystem(
      { version: 2, readerPath: pod, cgroups: cpuTree("max 100000") },
      {
        get: (d) => (d.endsWith(dir) ? entry : withEntry.get(d)),
        watch: () => {},
      },
    );
    assert.equal(text(fx, "proc/loadavg"), "2.00 1.00 0.50 2/17 42\n");
  });
});

describe("one view per reader", () => {
  // The reader entered the container's pid namespace from the host's root cgroup (nsenter,
  // kubectl debug): its pid namespace's init (pid 4200) is in the container's cgroup.
  const initCgroup = (f: Fixture, p: string) => fs.writeFileSync(path.join(f.root, "proc", "4200", "cgroup"), `0::${p}\n`);

  it("a reader in the host's cgroup but a container's pid namespace gets the container's figures in every file", () => {
    const cpuStat = { [`${pod.slice(1)}/cpu.stat`]: "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\n" };
    fx = fixtureSystem({
      version: 2,
      readerPath: "/",
      cgroups: { ...memTree({ podMax: "max", ctrMax: String(256 * MiB), current: 100 * MiB }), ...cpuStat },
    });
    const before = fx.renderer.render("proc/meminfo", READER_PID, 0);
    assert.equal(typeof before === "number" ? before : before.fallback, "host-cgroup", "without its init's cgroup: the host's");
    initCgroup(fx, pod);
    assert.equal(field(text(fx, "proc/meminfo"), "MemTotal"), 262144);
    // uptime is the container's (from the same init), not the host's 100000 s.
    assert.ok(Number(text(fx, "proc/uptime").split(" ")[0]) < 100000);
  });

  it("a systemd container: a service beside init.scope keeps its own cgroup's figures", () => {
    const tree = memTree({ podMax: "max", ctrMax: String(512 * MiB), current: 100 * MiB });
    const svc = `${pod.slice(1)}/system.slice/app.service`;
    fx = fixtureSystem({
      version: 2,
      readerPath: `${pod}/system.slice/app.service`,
      cgroups: {
        ...tree,
        [`${pod.slice(1)}/init.scope/memory.current`]: `${MiB}\n`,
        [`${svc}/memory.max`]: `${64 * MiB}\n`,
        [`${svc}/memory.current`]: `${MiB}\n`,
        [`${svc}/memory.stat`]: (tree as Record<string, string>)[`${pod.slice(1)}/memory.stat`],
      },
    });
    initCgroup(fx, `${pod}/init.scope`);
    assert.equal(field(text(fx, "proc/meminfo"), "MemTotal"), 65536);
  });

  it("a reader in a child cgroup of its init's keeps its own, tighter figures", () => {
    const tree = memTree({ podMax: "max", ctrMax: String(512 * MiB), current: 100 * MiB });
    const child = `${pod.slice(1)}/worker`;
    fx = fixtureSystem({
      version: 2,
      readerPath: `${pod}/worker`,
      cgroups: {
        ...tree,
        [`${child}/memory.max`]: `${128 * MiB}\n`,
        [`${child}/memory.current`]: `${10 * MiB}\n`,
        [`${child}/memory.stat`]: (tree as Record<string, string>)[`${pod.slice(1)}/memory.stat`],
      },
    });
    initCgroup(fx, pod);
    assert.equal(field(text(fx, "proc/meminfo"), "MemTotal"), 131072);
  });
});
