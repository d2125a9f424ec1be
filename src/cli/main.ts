// procview's command line. Every failure is one line on stderr and a non-zero exit.
import { Command, CommanderError } from "commander";
import { DEFAULT_MOUNTPOINT, serve, UsageError } from "../daemon/serve";

function fail(message: string, code = 2): never {
  process.stderr.write(`procview: ${message}\n`);
  process.exit(code);
}

export function buildProgram(): Command {
  const program = new Command("procview")
    .description("Container-aware /proc and /sys/devices/system/cpu over FUSE")
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  program
    .command("serve")
    .description("mount the filesystem and serve it in the foreground")
    .option("--mountpoint <dir>", "where to mount", DEFAULT_MOUNTPOINT)
    .option("--no-cpu-quota", "show the whole cpuset, not ceil(CFS quota) CPUs")
    .action(async (o: { mountpoint: string; cpuQuota: boolean }) => {
      process.exitCode = await serve({ mountpoint: o.mountpoint, cpuQuota: o.cpuQuota });
    });

  program
    .command("inspect")
    .description("show what a process sees through procview next to the host's values")
    .argument("<pid>", "process id (as seen from the host)")
    .option("--json", "print JSON instead of a table")
    .action(async (pid: string, o: { json?: boolean }) => {
      const { inspect } = await import("./inspect.js");
      process.stdout.write(inspect(pid, { json: Boolean(o.json) }));
    });

  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : 2);
    if (e instanceof UsageError) fail(e.message);
    fail(e instanceof Error ? e.message : String(e), 1);
  }
}

if (require.main === module) void main(process.argv);
