// Running a host program with a deadline, for everything that may touch a hung filesystem.
import { spawn } from "node:child_process";

export interface RunResult {
  /** Exit code; null when it timed out or could not start. */
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** Why it could not start (ENOENT, EACCES...). */
  error?: string;
}

/**
 * Runs `argv`, killed at the deadline. Resolves at the deadline even if the child cannot
 * die (a process stuck in a hung FUSE request may not), else on 'close', once all of its
 * output has been read ('exit' can come first).
 */
export function runBounded(argv: readonly string[], deadlineMs: number, env?: NodeJS.ProcessEnv): Promise<RunResult> {
  return new Promise((resolve) => {
    const p = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"], env });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    let done = false;
    const finish = (r: Omit<RunResult, "stdout" | "stderr">) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ ...r, stdout, stderr });
    };
    const timer = setTimeout(() => {
      p.kill("SIGKILL");
      finish({ code: null, timedOut: true });
    }, deadlineMs);
    p.once("error", (e) => finish({ code: null, timedOut: false, error: e.message }));
    p.once("close", (code) => finish({ code, timedOut: false }));
  });
}

/**
 * Runs `argv` with runBounded; resolves with undefined on success, else why it failed in one
 * line (its last line of complaint, its deadline, or why it could not start).
 */
export async function runForFailure(argv: readonly string[], deadlineMs: number, env?: NodeJS.ProcessEnv): Promise<string | undefined> {
  const r = await runBounded(argv, deadlineMs, env);
  if (r.code === 0) return undefined;
  if (r.timedOut) return `${argv[0]} took longer than ${deadlineMs} ms`;
  if (r.error) return `${argv[0]}: ${r.error}`;
  return r.stderr.trim().split("\n").pop() || `${argv[0]} exited ${r.code}`;
}
