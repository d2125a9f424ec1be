// `procview docker-args`: the flags that give a `docker run` (or podman) container
// procview's files, plus the slave copy of the mountpoint that lets a restarted daemon
// re-bind them.
import * as path from "node:path";
import { DEFAULT_TARGETS } from "../targets";

export function dockerArgs(mountpoint: string, remountable: boolean): string[] {
  const args = DEFAULT_TARGETS.flatMap((t) => ["-v", `${path.join(mountpoint, t.source)}:${t.dest}:ro`]);
  if (remountable) args.push("--mount", `type=bind,source=${mountpoint},target=/run/procview,readonly,bind-propagation=rslave`);
  return args;
}
