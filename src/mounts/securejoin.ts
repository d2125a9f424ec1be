// A path inside a container's root, resolved as the container would see it and never
// outside it: every component is checked, a symlink is followed against the container's
// root (an absolute target starts again there), and ".." above the root is refused. The
// same rule as runc's securejoin, with escapes refused rather than clamped.
import * as fs from "node:fs";

export class EscapeError extends Error {}

const MAX_LINKS = 40; // as the kernel's ELOOP

/**
 * Resolves `p` (absolute, as the container names it) under `root` (a host path to the
 * container's root). Returns the resolved path as the container names it; components that
 * do not exist yet are kept as given.
 */
export function resolveInRoot(root: string, p: string): string {
  const done: string[] = [];
  let todo = p.split("/").filter(Boolean);
  let links = 0;
  while (todo.length) {
    const c = todo.shift() as string;
    if (c === ".") continue;
    if (c === "..") {
      if (done.length === 0) throw new EscapeError(`${p} leaves the container's root through ".."`);
      done.pop();
      continue;
    }
    const here = `${root}/${[...done, c].join("/")}`;
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(here);
    } catch {
      st = undefined;
    }
    if (st?.isSymbolicLink()) {
      if (++links > MAX_LINKS) throw new EscapeError(`${p}: more than ${MAX_LINKS} symbolic links`);
      const target = fs.readlinkSync(here);
      if (target.startsWith("/")) done.length = 0;
      todo = [...target.split("/").filter(Boolean), ...todo];
      continue;
    }
    done.push(c);
  }
  return `/${done.join("/")}`;
}
