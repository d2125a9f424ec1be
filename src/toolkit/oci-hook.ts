// `procview oci-hook`: an OCI createRuntime/prestart hook. It reads the container's state
// on stdin and, before the runtime pivots into the container's root, binds procview's
// files over the container's /proc and /sys files inside the container's mount namespace,
// where the runtime's view (and so procview's mount) is still reachable. The host's mount
// binary does the binding (nothing of the image runs), and every path under the rootfs is
// resolved by us against the rootfs, so a symlink in the image cannot lead out of it.
import * as fs from "node:fs";
import * as path from "node:path";
import { DEFAULT_TARGETS } from "../targets";
import { selectPid } from "../mounts/containers";
import { bindInside, makeRslaveInside } from "../mounts/inside";
import { answers, type Layout } from "../mounts/layout";
import { EscapeError, resolveInRoot } from "../mounts/securejoin";

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
    throw new HookError(`the OCI state on stdin is not JSON: ${(e as Error).message.replace(/\s+/g, " ").slice(0, 200)}`);
  }
  const o = s as Partial<OciState>;
  if (typeof s !== "object" || s === null || !Number.isInteger(o.pid) || (o.pid ?? 0) <= 0)
    throw new HookError("the OCI state has no pid: run this as a createRuntime or prestart hook");
  if (typeof o.bundle !== "string" || !path.isAbsolute(o.bundle)) throw new HookError("the OCI state has no absolute bundle path");
  return o as OciState;
}

function isDir(p: string): boolean {
  try {
    return fs.lstatSync(p).isDirectory();
  } catch {
    return false;
  }
}

export interface HookResult {
  /** Container paths given procview's files. */
  bound: string[];
  /** One line per path left alone (it would have led out of the container's root). */
  refused: string[];
}

export async function runHook(stateText: string, l: Layout): Promise<HookResult> {
  const state = parseState(stateText);
  const name = state.id ?? String(state.pid);
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
  // Before pivot_root the namespace's root is still the runtime's view of the host: the
  // rootfs is a directory in it. /proc/PID/root shows that view with the runtime's mounts.
  const rootfs = path.resolve(state.bundle, config.root?.path ?? "rootfs");
  const view = `/proc/${state.pid}/root${rootfs}`;
  const result: HookResult = { bound: [], refused: [] };
  const resolve = (p: string): string | undefined => {
    try {
      return resolveInRoot(view, p);
    } catch (e) {
      if (!(e instanceof EscapeError)) throw e;
      result.refused.push(`container ${name}: ${e.message}: left alone`);
      return undefined;
    }
  };
  for (const t of DEFAULT_TARGETS) {
    const dest = resolve(t.dest);
    if (dest === undefined || !fs.existsSync(view + dest)) continue;
    const err = await bindInside(state.pid, path.join(l.fsDir, t.source), rootfs + dest, { recursive: t.directory });
    if (err) throw new HookError(`binding ${t.dest} into container ${name} failed: ${err}`);
    result.bound.push(t.dest);
  }
  // A read-only slave copy of the anchor, so that a later daemon can re-bind these files.
  const live = resolve("/run/procview");
  if (live !== undefined && isDir(view + path.dirname(live))) {
    try {
      fs.mkdirSync(view + live);
    } catch {
      // there already, or a read-only image: checked next
    }
    if (isDir(view + live)) {
      const err =
        (await bindInside(state.pid, l.anchor, rootfs + live, { recursive: true })) ?? (await makeRslaveInside(state.pid, rootfs + live));
      if (err) throw new HookError(`mounting ${l.anchor} into container ${name} failed: ${err}`);
    }
  }
  return result;
}
