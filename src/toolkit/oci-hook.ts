// `procview oci-hook`: an OCI createRuntime/prestart hook. It reads the container's state
// on stdin and, before the runtime pivots into the container's root, binds procview's
// files over the container's /proc and /sys files from inside the container's mount
// namespace, where the runtime's own view (and so procview's mount) is still reachable.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { answers, type Layout } from "../daemon/layout";
import { DEFAULT_TARGETS } from "../targets";
import { selectPid, shellQuote } from "./containers";

export class HookError extends Error {}

interface OciState {
  pid: number;
  bundle: string;
  id?: string;
}

export function parseState(text: string): OciState {
  let s: unknown;
  try {
    s = JSON.parse(text);
  } catch (e) {
    throw new HookError(`the OCI state on stdin is not JSON: ${(e as Error).message.replace(/\s+/g, " ")}`);
  }
  const o = s as Partial<OciState>;
  if (typeof s !== "object" || s === null || !Number.isInteger(o.pid) || (o.pid ?? 0) <= 0)
    throw new HookError("the OCI state has no pid: run this as a createRuntime or prestart hook");
  if (typeof o.bundle !== "string" || !path.isAbsolute(o.bundle)) throw new HookError("the OCI state has no absolute bundle path");
  return o as OciState;
}

const q = shellQuote;

/** Returns the container paths it bound. */
export async function runHook(stateText: string, l: Layout): Promise<string[]> {
  const state = parseState(stateText);
  try {
    selectPid(state.pid);
  } catch (e) {
    throw new HookError(/no process/.test((e as Error).message) ? `process ${state.pid} is gone` : (e as Error).message);
  }
  if (!(await answers(l.fsDir))) throw new HookError(`procview is not serving at ${l.anchor}: the container keeps the host's files`);
  let config: { root?: { path?: string } };
  try {
    config = JSON.parse(fs.readFileSync(path.join(state.bundle, "config.json"), "utf8"));
  } catch (e) {
    throw new HookError(`cannot read ${state.bundle}/config.json: ${(e as Error).message}`);
  }
  const rootfs = path.resolve(state.bundle, config.root?.path ?? "rootfs");
  const steps: string[] = [];
  const bound: string[] = [];
  for (const t of DEFAULT_TARGETS) {
    const dst = `${rootfs}${t.dest}`;
    const flags = t.directory ? "--rbind" : "--bind";
    steps.push(
      `if [ -e ${q(dst)} ]; then mount ${flags} ${q(path.join(l.fsDir, t.source))} ${q(dst)} && mount -o remount,bind,ro ${q(dst)}; fi`,
    );
    bound.push(t.dest);
  }
  // A slave copy of the anchor, so that a later daemon can re-bind these files.
  const live = `${rootfs}/run/procview`;
  steps.push(
    `if [ -d ${q(`${rootfs}/run`)} ] && mkdir -p ${q(live)} 2>/dev/null; then mount --rbind ${q(l.anchor)} ${q(live)} && mount --make-rslave ${q(live)}; fi`,
  );
  // No -r: before pivot_root the namespace's root is still the runtime's view of the host.
  const r = spawnSync("nsenter", ["-t", String(state.pid), "-m", "--", "/bin/sh", "-c", `set -e; ${steps.join("; ")}`], {
    encoding: "utf8",
    timeout: 10_000,
  });
  if (r.status !== 0)
    throw new HookError(`binding into container ${state.id ?? state.pid} failed: ${(r.stderr || r.error?.message || "").trim()}`);
  return bound;
}
