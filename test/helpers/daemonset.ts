// procview's DaemonSet pod, run with runc the way a container runtime would run it on a node:
// the spec is read from deploy/base/daemonset.yaml, or from an overlay as kubectl renders it
// (args, env, privileged, hostPID, volumes and their propagation, memory limit), not
// written by hand, so what passes here is the kit. Only the procview container runs.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { kitObject, REPO, renderedObject } from "./deploy";
import { Container, type OciSpec } from "./runc";

interface PodSpec {
  hostPID?: boolean;
  containers: {
    args: string[];
    env?: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
    securityContext?: { privileged?: boolean };
    resources?: { limits?: { memory?: string } };
    volumeMounts?: { name: string; mountPath: string; readOnly?: boolean; mountPropagation?: string }[];
  }[];
  volumes?: { name: string; hostPath?: { path: string } }[];
}

/** The node's name the stand-in kubelet gives the pod (spec.nodeName). */
export const NODE_NAME = "node-a";

export function daemonSetPod(overlay?: string): PodSpec {
  const ds = overlay ? renderedObject(overlay, "DaemonSet") : kitObject("deploy/base/daemonset.yaml", "DaemonSet");
  return ds.spec.template.spec as PodSpec;
}

// Every capability a privileged container gets (capability(7), Linux 5.9+).
const ALL_CAPS = [
  "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE",
  "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT",
  "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE",
  "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
  "PERFMON", "BPF", "CHECKPOINT_RESTORE",
].map((c) => `CAP_${c}`); // prettier-ignore

/** Of those, the ones this machine lets us give (a sandbox may withhold some, e.g. MAC_OVERRIDE). */
function privilegedCaps(): string[] {
  const bnd = BigInt(`0x${/^CapBnd:\s+([0-9a-f]+)/m.exec(fs.readFileSync("/proc/self/status", "utf8"))?.[1] ?? "0"}`);
  return ALL_CAPS.filter((_, bit) => (bnd >> BigInt(bit)) & 1n);
}

const UNITS: Record<string, number> = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 };

/**
 * Starts the DaemonSet's container. `hostPaths` maps a hostPath volume's path to the
 * directory standing in for it here (others are the host's own); `change` alters the pod
 * first (a broken layout).
 * The image's /opt/procview is this checkout, read-only; its entrypoint is bin/procview.
 */
export function startDaemonSetPod(hostPaths: Record<string, string>, change?: (pod: PodSpec) => void, overlay?: string): Container {
  const pod = daemonSetPod(overlay);
  change?.(pod);
  const c = pod.containers[0];
  const volumes = new Map((pod.volumes ?? []).map((v) => [v.name, v.hostPath?.path ?? ""]));
  const limit = /^(\d+)(Ki|Mi|Gi)$/.exec(c.resources?.limits?.memory ?? "");
  return new Container({
    memoryBytes: limit ? Number(limit[1]) * UNITS[limit[2]] : undefined,
    customize: (spec: OciSpec) => {
      spec.process.args = ["/opt/procview/bin/procview", ...c.args];
      for (const e of c.env ?? []) {
        const field = e.valueFrom?.fieldRef?.fieldPath;
        if (e.value === undefined && field !== "spec.nodeName")
          throw new Error(`env ${e.name}: only values and spec.nodeName are stood in for`);
        spec.process.env.push(`${e.name}=${e.value ?? NODE_NAME}`);
      }
      spec.process.noNewPrivileges = false;
      const mounts = spec.mounts.filter((m) => m.destination !== "/dev" && m.destination !== "/dev/pts" && m.destination !== "/sys");
      mounts.push(
        // privileged: every host device, sysfs and the cgroup trees writable.
        { destination: "/dev", type: "bind", source: "/dev", options: ["rbind", "rw"] },
        { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "rw"] },
        { destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup", options: ["nosuid", "noexec", "nodev", "relatime", "rw"] },
        { destination: "/opt/procview", type: "bind", source: REPO, options: ["rbind", "ro"] },
      );
      let bidirectional = false;
      for (const vm of c.volumeMounts ?? []) {
        const host = volumes.get(vm.name);
        const source = host === undefined ? undefined : (hostPaths[host] ?? host);
        if (!source) throw new Error(`no stand-in for the hostPath of volume ${vm.name} (${host})`);
        const propagation =
          vm.mountPropagation === "Bidirectional" ? "rshared" : vm.mountPropagation === "HostToContainer" ? "rslave" : "rprivate";
        bidirectional ||= propagation === "rshared";
        mounts.push({ destination: vm.mountPath, type: "bind", source, options: ["rbind", vm.readOnly ? "ro" : "rw", propagation] });
      }
      spec.mounts = mounts;
      // As containerd does for a Bidirectional mount: the container's mounts propagate back.
      if (bidirectional) spec.linux.rootfsPropagation = "rshared";
      if (c.securityContext?.privileged) {
        const caps = privilegedCaps();
        spec.process.capabilities = { bounding: caps, effective: caps, permitted: caps };
        spec.linux.maskedPaths = [];
        spec.linux.readonlyPaths = [];
        spec.linux.resources.devices = [{ allow: true, access: "rwm" }];
      }
      if (pod.hostPID) spec.linux.namespaces = spec.linux.namespaces.filter((n) => n.type !== "pid");
      // On a pure cgroup v2 host containerd gives every container a private cgroup namespace.
      if (fs.existsSync("/sys/fs/cgroup/cgroup.controllers")) spec.linux.namespaces.push({ type: "cgroup" });
    },
  });
}

/**
 * A host directory that is a shared mount, as a node's filesystem is (systemd mounts / shared;
 * this machine's / is private), so that a Bidirectional mount of it carries the daemon's
 * FUSE mount back to the host. Returns the undo.
 */
export function sharedMount(dir: string): () => void {
  const run = (args: string[]) => {
    const r = spawnSync("mount", args, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`mount ${args.join(" ")}: ${r.stderr.trim()}`);
  };
  run(["--bind", dir, dir]);
  run(["--make-shared", dir]);
  return () => {
    spawnSync("umount", ["-R", "-l", dir]);
  };
}
