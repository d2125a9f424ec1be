// Mount work inside a container's mount namespace, done by the host's own util-linux:
// nothing from the container's filesystem is ever run, and nothing of ours enters its
// pid, network or cgroup namespace or its cgroups. Only the mount namespace is switched.
//  - mount: `mount -N` enters the namespace just for mount(2); the kernel then resolves
//    both paths under the container's root, so a symlink there cannot lead out of it.
//  - umount: `umount -N` would read /proc/self/mountinfo inside the namespace, where /proc
//    is the container's and has no such process. So nsenter enters the mount namespace
//    keeping our root (opened before the switch), and the host's umount names the target
//    through /proc/PID/root. umount2(2) acts only on mounts of the namespace it is in.
import * as fs from "node:fs";
import { runForFailure } from "./run";

/** The host's binaries, by absolute path: never looked up in a PATH a container could shape. */
function hostBinary(name: string): string {
  for (const dir of ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]) {
    const p = `${dir}/${name}`;
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return `/usr/bin/${name}`;
}
const MOUNT = hostBinary("mount");
const UMOUNT = hostBinary("umount");
const NSENTER = hostBinary("nsenter");
const ENV = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C" };

/** Per call: a container whose namespace operation hangs costs its own work this, nobody else's. */
const DEADLINE_MS = 10_000;

/** Runs a host binary; resolves with undefined on success, else its last line of complaint. */
function runHost(argv: string[]): Promise<string | undefined> {
  return runForFailure(argv, DEADLINE_MS, ENV);
}

const nsOf = (pid: number) => `/proc/${pid}/ns/mnt`;

/**
 * Binds `src` read-only onto `dst`, both paths as the namespace of `pid` sees them from its
 * root. `recursive` for a directory whose submounts come along (sys/devices/system/cpu).
 */
export function bindInside(pid: number, src: string, dst: string, o: { recursive?: boolean } = {}) {
  return runHost([MOUNT, "-N", nsOf(pid), "-i", "-c", o.recursive ? "--rbind" : "--bind", "-o", "ro", src, dst]);
}

/** Makes `dst` a slave mount (recursively), so later mounts under its source appear in it. */
export function makeRslaveInside(pid: number, dst: string) {
  return runHost([MOUNT, "-N", nsOf(pid), "-i", "-c", "--make-rslave", dst]);
}

/** Lazily unmounts each of `mountPoints` (paths from the container's root) in its namespace. */
export function detachInside(pid: number, mountPoints: readonly string[]) {
  const targets = mountPoints.map((m) => `/proc/${pid}/root${m}`);
  return runHost([NSENTER, `--mount=${nsOf(pid)}`, "--root=/", "--", UMOUNT, "-i", "-c", "-l", ...targets]);
}
