// The VM test bed: Debian's own kernels (unpacked from their packages, never installed),
// booted under QEMU's software emulation with this machine's root shared read-only over
// virtio-9p (an overlay with a tmpfs on top makes it writable inside) and a busybox
// initramfs. The guest runs one command with a pure cgroup v2 hierarchy and powers off.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export const CACHE = process.env.PROCVIEW_VM_CACHE ?? "/var/cache/procview-vm";

/** The Debian kernels nodes run: bookworm's 6.1 (FUSE 7.38) and bookworm-security's 6.12 (7.41). */
export const KERNELS: Record<string, RegExp> = {
  "6.1": /^linux-image-6\.1\.0-\d+-amd64-unsigned$/,
  "6.12": /^linux-image-6\.12\.\d+\+deb12-amd64-unsigned$/,
};

function run(cmd: string, args: string[], o: { cwd?: string; input?: Buffer } = {}): string {
  const r = spawnSync(cmd, args, { cwd: o.cwd, input: o.input, encoding: "buffer", maxBuffer: 1 << 28 });
  if (r.error) throw new Error(`${cmd}: ${r.error.message} (install qemu-system-x86 busybox-static cpio xz-utils)`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr.toString().trim().slice(-500)}`);
  return r.stdout.toString();
}

export interface Kernel {
  release: string;
  vmlinuz: string;
  modules: string;
}

/** The newest package of that series from the configured Debian archives, downloaded and unpacked once. */
export function kernel(series: string): Kernel {
  const pattern = KERNELS[series];
  const names = run("apt-cache", ["search", "--names-only", "^linux-image-6\\.1"])
    .split("\n")
    .map((l) => l.split(" ")[0])
    .filter((n) => pattern.test(n));
  if (names.length === 0) throw new Error(`no ${pattern} in the apt archives (bookworm and bookworm-security are needed)`);
  const pkg = names.sort((a, b) => a.localeCompare(b, "en", { numeric: true })).pop() as string;
  const release = pkg.replace(/^linux-image-/, "").replace(/-unsigned$/, "");
  const dir = path.join(CACHE, release);
  const vmlinuz = path.join(dir, "boot", `vmlinuz-${release}`);
  if (!fs.existsSync(vmlinuz)) {
    fs.mkdirSync(CACHE, { recursive: true });
    run("apt-get", ["download", pkg], { cwd: CACHE });
    const deb = fs.readdirSync(CACHE).find((f) => f.startsWith(`${pkg}_`) && f.endsWith(".deb"));
    if (!deb) throw new Error(`apt-get download ${pkg} left no .deb in ${CACHE}`);
    run("dpkg", ["-x", path.join(CACHE, deb), dir]);
  }
  return { release, vmlinuz, modules: path.join(dir, "lib", "modules", release) };
}

/** The module files for `names` and everything they depend on, dependencies first; built-ins skipped. */
function moduleFiles(k: Kernel, names: string[]): string[] {
  const norm = (n: string) => n.replace(/-/g, "_");
  const byName = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.ko(\.xz)?$/.test(e.name)) byName.set(norm(e.name.replace(/\.ko(\.xz)?$/, "")), p);
    }
  };
  walk(path.join(k.modules, "kernel"));
  const out: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string) => {
    const n = norm(name);
    if (seen.has(n)) return;
    seen.add(n);
    const file = byName.get(n);
    if (!file) return; // built in
    for (const dep of run("modinfo", ["-F", "depends", file]).trim().split(",").filter(Boolean)) visit(dep);
    out.push(file);
  };
  for (const n of names) visit(n);
  return out;
}

const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in /modules/*.ko; do insmod "$m" || echo "procview-vm: insmod $m failed"; done
mkdir -p /lower /rw /root
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro host /lower || { echo "procview-vm: no 9p root"; poweroff -f; }
mount -t tmpfs -o size=1g tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /root
for d in proc sys dev; do mount --move /$d /root/$d; done
for a in $(cat /root/proc/cmdline); do case "$a" in procview.guest=*) guest="\${a#procview.guest=}";; esac; done
exec switch_root /root /bin/sh "$guest"
`;

/** The initramfs for a kernel: busybox, the modules, /init; cached beside the kernel. */
export function initramfs(k: Kernel): string {
  const out = path.join(CACHE, `initramfs-${k.release}.cpio.gz`);
  if (fs.existsSync(out)) return out;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "pv-initramfs-"));
  try {
    for (const d of ["bin", "proc", "sys", "dev", "modules"]) fs.mkdirSync(path.join(root, d));
    fs.copyFileSync("/bin/busybox", path.join(root, "bin", "busybox"));
    fs.chmodSync(path.join(root, "bin", "busybox"), 0o755);
    fs.writeFileSync(path.join(root, "init"), INIT, { mode: 0o755 });
    moduleFiles(k, ["virtio_pci", "9pnet_virtio", "9p", "overlay", "fuse", "virtio_blk"]).forEach((f, i) => {
      const dest = path.join(root, "modules", `${String(i).padStart(2, "0")}-${path.basename(f).replace(/\.xz$/, "")}`);
      fs.writeFileSync(dest, f.endsWith(".xz") ? spawnSync("xz", ["-dc", f], { maxBuffer: 1 << 28 }).stdout : fs.readFileSync(f));
    });
    const list = run("sh", ["-c", "find . -print0"], { cwd: root }).replace(/\0$/, "");
    const cpio = spawnSync("cpio", ["--null", "-o", "--format=newc", "--quiet"], {
      cwd: root,
      input: Buffer.from(list),
      maxBuffer: 1 << 28,
    });
    if (cpio.status !== 0) throw new Error(`cpio: ${cpio.stderr.toString()}`);
    fs.writeFileSync(`${out}.tmp`, spawnSync("gzip", ["-1"], { input: cpio.stdout, maxBuffer: 1 << 28 }).stdout);
    fs.renameSync(`${out}.tmp`, out);
    return out;
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

export interface Boot {
  output: string;
  ms: number;
  timedOut: boolean;
  /**
   * The guest's kernel reported a CPU stuck for LOCKED_UP_S or more (it was killed then), or
   * panicked (seen under software emulation: a trap on code the kernel was patching, in the page
   * allocator; see the guest's procview-vm-keys cgroup).
   */
  lockedUp: boolean;
}

/**
 * A CPU the guest's kernel reports stuck this long in kernel mode means a dead guest: under
 * software emulation both vCPUs have been seen spinning for good from 40 s after boot, in
 * runc, before the first test. Such a guest is killed at once instead of at the deadline.
 */
const LOCKED_UP_S = 120;

/**
 * Boots `k` with the host's root, runs `script` (a shell script, as root, cgroup v2 only)
 * and returns the console. The guest powers off when the script ends; a guest that does not
 * within `timeoutMs` is killed.
 */
export async function boot(k: Kernel, script: string, timeoutMs: number): Promise<Boot> {
  // The guest's first command, through the overlay: a file the initramfs execs after switch_root.
  const guest = `#!/bin/sh
# /tmp stays the host's (through the overlay, writable): the checkout may live there.
mount -t tmpfs tmpfs /run
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup
mount -t fusectl fusectl /sys/fs/fuse/connections 2>/dev/null
echo "+cpu +cpuset +memory +io +pids" > /sys/fs/cgroup/cgroup.subtree_control
# Switched on once, now, while the guest is idle, and kept on: the kernel's static keys for
# cpusets (on while any cpuset cgroup exists), memory cgroups and CFS bandwidth (on while any
# cgroup has a quota). Each switch patches the kernel's code live; under emulation with a thread
# per vCPU the other vCPU then trapped on the patch (Oops: int3 in the page allocator):
# 11 boots of 18 panicked under a cgroup-churning load on 6.12, none of 16 with a cgroup held.
mkdir /sys/fs/cgroup/procview-vm-keys && echo "10000000 100000" > /sys/fs/cgroup/procview-vm-keys/cpu.max
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
# A disk for I/O figures (ext4 on /dev/vda at /mnt/data) and a swap device (/dev/vdb).
mkfs.ext4 -q -F /dev/vda && mkdir -p /mnt/data && mount /dev/vda /mnt/data
mkswap -q /dev/vdb >/dev/null && swapon /dev/vdb
echo "procview-vm: guest up, kernel $(uname -r)"
${script}
echo "procview-vm: exit $?"
echo o > /proc/sysrq-trigger
sleep 10
`;
  // The overlay's upper layer starts empty: the script reaches the guest on the 9p root.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pv-vm-"));
  fs.writeFileSync(path.join(dir, "guest.sh"), guest, { mode: 0o755 });
  // Sparse images: they cost the host nothing until written.
  for (const [name, mib] of [
    ["data.img", 256],
    ["swap.img", 64],
  ] as const) {
    fs.writeFileSync(path.join(dir, name), "");
    fs.truncateSync(path.join(dir, name), mib * 1024 * 1024);
  }
  const started = Date.now();
  const args = [
    ...["-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2", "-m", "2G", "-nographic", "-no-reboot"],
    ...["-kernel", k.vmlinuz, "-initrd", initramfs(k)],
    ...["-append", `console=ttyS0 quiet panic=-1 cgroup_no_v1=all procview.guest=${dir}/guest.sh`],
    ...["-virtfs", "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap"],
    ...["-drive", `file=${dir}/data.img,if=virtio,format=raw`, "-drive", `file=${dir}/swap.img,if=virtio,format=raw`],
  ];
  const qemu = spawn("qemu-system-x86_64", args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  let lockedUp = false;
  // PROCVIEW_VM_CONSOLE=FILE keeps the guest's console as it comes (a guest that hangs says where).
  const tee = process.env.PROCVIEW_VM_CONSOLE;
  const onData = (d: Buffer) => {
    output += d;
    if (tee) fs.appendFileSync(tee, d);
    const stuck = /soft lockup - CPU#\d+ stuck for (\d+)s/.exec(d.toString());
    if (stuck && Number(stuck[1]) >= LOCKED_UP_S && !lockedUp) {
      lockedUp = true;
      qemu.kill("SIGKILL");
    }
  };
  qemu.stdout.on("data", onData);
  qemu.stderr.on("data", onData);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    qemu.kill("SIGKILL");
  }, timeoutMs);
  await new Promise((r) => qemu.once("close", r));
  clearTimeout(timer);
  // A panic after the script ended (init gone while powering off) is not one.
  if (/Kernel panic - not syncing/.test(output) && !/procview-vm: exit/.test(output)) lockedUp = true;
  fs.rmSync(dir, { recursive: true, force: true });
  return { output, ms: Date.now() - started, timedOut, lockedUp };
}
