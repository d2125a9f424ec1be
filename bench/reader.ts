// A reader process for the benchmark: open + read to EOF + close, as a tool would.
//   latency DIR ITER file...   -> JSON {file: [median us, p99 us]}
//   throughput DIR MS file...  -> JSON {reads}
import * as fs from "node:fs";
import * as path from "node:path";

const buf = Buffer.allocUnsafe(256 * 1024);
function readOnce(p: string): number {
  const fd = fs.openSync(p, "r");
  let total = 0;
  for (;;) {
    const n = fs.readSync(fd, buf, 0, buf.length, null);
    if (n === 0) break;
    total += n;
  }
  fs.closeSync(fd);
  return total;
}

const [mode, dir, arg, ...files] = process.argv.slice(2);
if (mode === "latency") {
  const iterations = Number(arg);
  const out: Record<string, [number, number]> = {};
  for (const f of files) {
    const p = path.join(dir, f);
    for (let i = 0; i < 200; i++) readOnce(p);
    const t: number[] = [];
    for (let i = 0; i < iterations; i++) {
      const s = process.hrtime.bigint();
      readOnce(p);
      t.push(Number(process.hrtime.bigint() - s) / 1000);
    }
    t.sort((a, b) => a - b);
    out[f] = [t[Math.floor(t.length / 2)], t[Math.floor(t.length * 0.99)]];
  }
  process.stdout.write(JSON.stringify(out));
} else {
  const until = Date.now() + Number(arg);
  let reads = 0;
  const errors: Record<string, number> = {};
  const paths = files.map((f) => path.join(dir, f));
  while (Date.now() < until) {
    for (const p of paths) {
      try {
        readOnce(p);
        reads++;
      } catch (e) {
        // Counted, not fatal: a filesystem that fails under load shows it in the table.
        const code = (e as NodeJS.ErrnoException).code ?? "error";
        errors[code] = (errors[code] ?? 0) + 1;
      }
    }
  }
  process.stdout.write(JSON.stringify({ reads, errors }));
}
