// What a container's readers see while procview's serving processes are being killed: a
// python reader of meminfo and cpuinfo in a loop, and a killer on a fixed tick. Shared by
// the lifecycle tests and `npm run bench:crash`.
import type { Container } from "./runc";

/** What one reader counted: right figures, wrong ones, failed reads, reads slower than 1 s, the slowest. */
export interface ReaderCounts {
  ok: number;
  fail: number;
  wrong: number;
  slow: number;
  worst: number;
}

/** Runs a Python script inside `c` and parses the JSON it prints last. */
async function pythonIn<T>(c: Container, lines: string[]): Promise<T> {
  return JSON.parse(await c.shAsync(`python3 -c "$(cat <<'EOF'\n${lines.join("\n")}\nEOF\n)"`)) as T;
}

/** Reads for `seconds` inside `c`; a read is right when MemTotal is `kb` and cpuinfo lists 2 CPUs. */
export async function readInLoop(c: Container, kb: number, seconds: number): Promise<ReaderCounts> {
  const script = [
    "import json, time",
    `end = time.monotonic() + ${seconds}; ok = fail = wrong = slow = 0; worst = 0.0`,
    "while time.monotonic() < end:",
    "    t = time.monotonic()",
    "    try:",
    "        text = open('/proc/meminfo').read(); cpus = open('/proc/cpuinfo').read().count('processor')",
    "        total = int(text.split('MemTotal:')[1].split()[0])",
    `        if total == ${kb} and cpus == 2: ok += 1`,
    "        else: wrong += 1",
    "    except Exception as e:",
    "        fail += 1",
    "    dt = time.monotonic() - t; worst = max(worst, dt); slow += dt > 1",
    "print(json.dumps(dict(ok=ok, fail=fail, wrong=wrong, slow=slow, worst=worst)))",
  ];
  return pythonIn<ReaderCounts>(c, script);
}

/** Many readers' counts as one: each count summed, the slowest read the slowest of all. */
export function totals(rs: ReaderCounts[]): ReaderCounts {
  const sum = (k: "ok" | "fail" | "wrong" | "slow") => rs.reduce((a, r) => a + r[k], 0);
  return { ok: sum("ok"), fail: sum("fail"), wrong: sum("wrong"), slow: sum("slow"), worst: Math.max(...rs.map((r) => r.worst)) };
}

/** "reads ok N, failed N, wrong N, slowest S s": the tests' and the README's way of saying it. */
export const readsLine = (t: ReaderCounts): string =>
  `reads ok ${t.ok}, failed ${t.fail}, wrong ${t.wrong}, slowest ${t.worst.toFixed(3)} s`;

/** The newcomer's own line about a handover, then what the readers and the sampler saw across it. */
export const handoverLine = (newcomerOutput: string, t: ReaderCounts, w: CounterWatch): string =>
  `${newcomerOutput.match(/took the connection over.*/)?.[0]}; ${readsLine(t)}; ${w.samples} counter samples, ${w.backward} backward`;

/** SIGKILLs every pid `victims()` names, every `everyMs`, until stopped; counts the kills that landed. */
export function killEvery(everyMs: number, victims: () => number[]): { kills: () => number; stop: () => void } {
  let kills = 0;
  const timer = setInterval(() => {
    for (const pid of victims()) {
      try {
        process.kill(pid, "SIGKILL");
        kills++;
      } catch {
        // already gone
      }
    }
  }, everyMs);
  return { kills: () => kills, stop: () => clearInterval(timer) };
}

/** What a monitoring agent saw sampling /proc/stat and /proc/uptime: samples, failed reads, counters that went down. */
export interface CounterWatch {
  samples: number;
  fail: number;
  backward: number;
  /** The first few backward steps, as "label field: before -> after". */
  steps: string[];
}

/** Samples /proc/stat's cpu lines and /proc/uptime's idle every 10 ms for `seconds` inside `c`. */
export async function watchCounters(c: Container, seconds: number): Promise<CounterWatch> {
  const script = [
    "import json, time",
    `end = time.monotonic() + ${seconds}; samples = fail = backward = 0; steps = []; last = {}`,
    "while time.monotonic() < end:",
    "    try:",
    "        now = {l.split()[0]: [int(v) for v in l.split()[1:]] for l in open('/proc/stat') if l.startswith('cpu')}",
    "        now['uptime'] = [float(v) for v in open('/proc/uptime').read().split()]",
    "        samples += 1",
    "        for k, vs in now.items():",
    "            for i, (a, b) in enumerate(zip(last.get(k, []), vs)):",
    "                if b < a:",
    "                    backward += 1",
    "                    if len(steps) < 5: steps.append(f'{k} field {i + 1}: {a} -> {b}')",
    "        last = now",
    "    except Exception:",
    "        fail += 1",
    "    time.sleep(0.01)",
    "print(json.dumps(dict(samples=samples, fail=fail, backward=backward, steps=steps)))",
  ];
  return pythonIn<CounterWatch>(c, script);
}
