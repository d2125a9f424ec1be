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
  ].join("\n");
  return JSON.parse(await c.shAsync(`python3 -c "$(cat <<'EOF'\n${script}\nEOF\n)"`)) as ReaderCounts;
}

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
