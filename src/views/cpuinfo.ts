// x86 topology fields that must agree with the number of CPUs shown.
const TOPOLOGY = new Set(["physical id", "siblings", "core id", "cpu cores", "apicid", "initial apicid"]);

/**
 * /proc/cpuinfo showing only the host CPUs in `visible`, renumbered from 0, as one
 * package of `visible.length` cores with one thread each so that lscpu-style tools agree.
 */
export function renderCpuinfo(hostText: string, visible: readonly number[]): string {
  const blocks = hostText.split(/\n\n+/).filter((b) => b.trim() !== "");
  const byCpu = new Map<number, string>();
  for (const b of blocks) {
    const m = /^processor\s*:\s*(\d+)/m.exec(b);
    if (m) byCpu.set(Number(m[1]), b);
  }
  // An architecture whose cpuinfo has no per-processor blocks: nothing we can cut safely.
  if (byCpu.size === 0) return hostText;
  const n = visible.length;
  const out: string[] = [];
  visible.forEach((hostCpu, i) => {
    const block = byCpu.get(hostCpu);
    if (block === undefined) return;
    const lines = block.split("\n").map((line) => {
      const colon = line.indexOf(":");
      if (colon < 0) return line;
      const key = line.slice(0, colon).trim();
      const prefix = line.slice(0, colon + 1);
      if (key === "processor") return `${prefix} ${i}`;
      if (!TOPOLOGY.has(key)) return line;
      const value = key === "physical id" ? 0 : key === "siblings" || key === "cpu cores" ? n : i;
      return `${prefix} ${value}`;
    });
    out.push(lines.join("\n"));
  });
  return `${out.join("\n\n")}\n\n`;
}
