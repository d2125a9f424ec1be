// procview's tree, served through the FUSE interface: rendered views under proc/ and
// sys/devices/system/cpu/, and the rest of the host's sys/devices/system/cpu passed
// through, with its cpuN entries cut and renumbered for each reader.
import * as fs from "node:fs";
import { constants } from "node:os";
import * as path from "node:path";
import type { Caller, Entry, Errno, FileSystem, Opened } from "../fuse/fs";
import { type Attr, type DirEntry, DT_DIR, DT_LNK, DT_REG, S_IFDIR, S_IFREG } from "../fuse/protocol";
import { renumberCacheId, renumberCpuFile } from "../views/cpus";
import { type Rendered, type Renderer, VIEWS, type ViewName } from "./render";

const E = constants.errno;
const ROOT = 1;
// Views and static directories never change shape: let the kernel cache them.
const STATIC_VALID = 3600;
// Passed-through sysfs entries may differ per reader or appear and vanish (CPU hotplug).
const HOST_VALID = 1;
const CPU_DIR = "sys/devices/system/cpu";
const CPU_ENTRY = /^cpu(\d+)$/;
const CACHE_ID = /^cpu\d+\/cache\/(index\d+)\/id$/;
// Passed-through entries get inode numbers from their path, so that a serving process
// started after a crash gives the kernel's cached inodes the same meaning.
const HOST_INO_BASE = 2 ** 20;
/** The most text kept for open handles' later offsets, in all. */
const MAX_SNAPSHOT_BYTES = 16 * 2 ** 20;

/** 48 bits of FNV-1a (two 32-bit passes with different offsets): stable across processes. */
function pathIno(rel: string): number {
  let a = 0x811c9dc5;
  let b = 0x050c5d1f;
  for (let i = 0; i < rel.length; i++) {
    const c = rel.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193) >>> 0;
    b = Math.imul(b ^ c, 0x01000193) >>> 0;
  }
  return HOST_INO_BASE + (a * 0x10000 + (b & 0xffff));
}

type Node =
  | { kind: "dir"; ino: number; path: string; children: Map<string, number> }
  | { kind: "view"; ino: number; path: string; view: ViewName }
  // `rel` is relative to sys/devices/system/cpu, with cpuN as the reader sees it.
  | { kind: "host"; ino: number; path: string; rel: string };

interface Handle {
  node: Node;
  opener: number;
  /** Latin-1 text (a view's) or bytes (a host file's). */
  snapshot?: string | Buffer;
}

/** What a read resolved to, for counting: the view served and whether the host's file was given. */
export type ReadHook = (view: string, rendered: Rendered | undefined, micros: number, container: string | undefined) => void;

export class ProcviewTree implements FileSystem {
  private readonly nodes = new Map<number, Node>();
  private readonly hostInos = new Map<string, number>();
  private readonly handles = new Map<number, Handle>();
  /** Bytes of handles' texts kept, and the handles that keep one, oldest first (see keepSnapshot). */
  private snapshotBytes = 0;
  private readonly snapshotted = new Set<Handle>();
  private nextIno = ROOT;
  private nextFh: number;
  private readonly started = Math.floor(Date.now() / 1000);

  /**
   * `generation` numbers the serving process: handles it issues cannot be mistaken for
   * those of an earlier one that crashed with some still open.
   */
  constructor(
    private readonly renderer: Renderer,
    private readonly hostCpuDir = "/sys/devices/system/cpu",
    private readonly onRead?: ReadHook,
    generation = 0,
  ) {
    this.nextFh = (generation % 2 ** 20) * 2 ** 32 + 1;
    this.addDir("");
    for (const v of VIEWS) {
      this.ensureDirs(path.dirname(v));
      const node: Node = { kind: "view", ino: this.nextIno++, path: v, view: v };
      this.attach(node);
    }
    this.ensureDirs(CPU_DIR);
  }

  private addDir(p: string): Node {
    const node: Node = { kind: "dir", ino: this.nextIno++, path: p, children: new Map() };
    this.attach(node);
    return node;
  }

  private attach(node: Node): void {
    this.nodes.set(node.ino, node);
    if (node.path === "") return;
    const parent = [...this.nodes.values()].find((n) => n.kind === "dir" && n.path === path.dirname(node.path).replace(/^\.$/, ""));
    if (parent?.kind === "dir") parent.children.set(path.basename(node.path), node.ino);
  }

  private ensureDirs(p: string): void {
    if (p === "." || p === "") return;
    this.ensureDirs(path.dirname(p));
    if (![...this.nodes.values()].some((n) => n.path === p)) this.addDir(p);
  }

  /** Host path under sys/devices/system/cpu for a reader's `rel`, or undefined if hidden from it. */
  private hostPath(rel: string, visible: number[] | null): string | undefined {
    const parts = rel.split("/");
    const m = CPU_ENTRY.exec(parts[0]);
    if (m && visible) {
      const i = Number(m[1]);
      if (i >= visible.length) return undefined;
      parts[0] = `cpu${visible[i]}`;
    }
    return path.join(this.hostCpuDir, ...parts);
  }

  /** The host path a passed-through node stands for, for this reader. */
  private hostPathFor(rel: string, caller: Caller): string | undefined {
    return this.hostPath(rel, this.renderer.visibleFor(caller.pid));
  }

  private hostNode(rel: string): Node {
    let ino = this.hostInos.get(rel);
    if (ino === undefined) {
      ino = pathIno(rel);
      this.hostInos.set(rel, ino);
      this.nodes.set(ino, { kind: "host", ino, path: `${CPU_DIR}/${rel}`, rel });
    }
    return this.nodes.get(ino) as Node;
  }

  /** A node by inode number, including passed-through ones an earlier process handed out. */
  private node(ino: number): Node | undefined {
    const n = this.nodes.get(ino);
    if (n || ino < HOST_INO_BASE) return n;
    // Walk the host's cpu tree once to learn which path this number stands for.
    const walk = (rel: string, depth: number) => {
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(rel ? path.join(this.hostCpuDir, rel) : this.hostCpuDir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const child = rel ? `${rel}/${e.name}` : e.name;
        this.hostNode(child);
        if (e.isDirectory() && depth < 6) walk(child, depth + 1);
      }
    };
    walk("", 0);
    return this.nodes.get(ino);
  }

  private attrOf(node: Node, caller: Caller): Attr | Errno {
    if (node.kind === "dir") return { ino: node.ino, size: 0, mode: S_IFDIR | 0o555, nlink: 2, mtimeSec: this.started };
    if (node.kind === "view") {
      // As the kernel's: slabinfo is root-only, so ls and access(2) tell the truth about it.
      const perm = node.view === "proc/slabinfo" ? 0o400 : 0o444;
      return { ino: node.ino, size: 0, mode: S_IFREG | perm, nlink: 1, mtimeSec: this.started };
    }
    const p = this.hostPathFor(node.rel, caller);
    if (p === undefined) return E.ENOENT;
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      return E.ENOENT;
    }
    // Regular files are served with direct I/O, so their size must not cut the content.
    const size = st.isFile() ? 0 : st.size;
    return { ino: node.ino, size, mode: st.mode, nlink: st.nlink, mtimeSec: Math.floor(st.mtimeMs / 1000), uid: st.uid, gid: st.gid };
  }

  private entry(node: Node, caller: Caller, valid: number): Entry | Errno {
    const attr = this.attrOf(node, caller);
    return typeof attr === "number" ? attr : { attr, entryValid: valid, attrValid: valid };
  }

  lookup(parent: number, name: string, caller: Caller): Entry | Errno {
    const dir = this.node(parent);
    if (!dir) return E.ENOENT;
    if (dir.kind === "dir") {
      const child = dir.children.get(name);
      if (child !== undefined) return this.entry(this.nodes.get(child) as Node, caller, STATIC_VALID);
      if (dir.path !== CPU_DIR) return E.ENOENT;
      // cpuN entries depend on the reader: the kernel must ask again every time.
      return this.entry(this.hostNode(name), caller, CPU_ENTRY.test(name) ? 0 : HOST_VALID);
    }
    if (dir.kind === "host") return this.entry(this.hostNode(`${dir.rel}/${name}`), caller, HOST_VALID);
    return E.ENOTDIR;
  }

  getattr(ino: number, caller: Caller): Entry | Errno {
    const node = this.node(ino);
    if (!node) return E.ENOENT;
    return this.entry(node, caller, node.kind === "host" ? HOST_VALID : STATIC_VALID);
  }

  readlink(ino: number, caller: Caller): string | Errno {
    const node = this.node(ino);
    if (node?.kind !== "host") return E.EINVAL;
    const p = this.hostPathFor(node.rel, caller);
    if (p === undefined) return E.ENOENT;
    try {
      return fs.readlinkSync(p);
    } catch {
      return E.EINVAL;
    }
  }

  open(ino: number, _flags: number, caller: Caller): Opened | Errno {
    const node = this.node(ino);
    if (!node) return E.ENOENT;
    if (node.kind === "dir") return E.EISDIR;
    const fh = this.nextFh++;
    this.handles.set(fh, { node, opener: caller.pid });
    return { fh, directIo: true };
  }

  /** Renders the file for the reader: views through the renderer, host files as they are. */
  private content(node: Node, caller: Caller): string | Buffer | Errno {
    const started = this.onRead ? process.hrtime.bigint() : 0n;
    if (node.kind === "view") {
      const r = this.renderer.render(node.view, caller.pid, caller.uid);
      if (typeof r === "number") return r;
      this.onRead?.(node.view, r, Number(process.hrtime.bigint() - started) / 1000, r.cgroup);
      // Kept as the string it is: the reply is written straight from it, with no buffer
      // allocated outside V8's heap for each read.
      return r.text;
    }
    if (node.kind !== "host") return E.ENOENT;
    const visible = this.renderer.visibleFor(caller.pid);
    const p = this.hostPath(node.rel, visible);
    if (p === undefined) return E.ENOENT;
    try {
      const data = fs.readFileSync(p);
      if (!visible) return data;
      // Topology and cache sharing name CPUs: in the reader's numbers, only those it is shown.
      const cache = CACHE_ID.exec(node.rel);
      const renumbered = cache
        ? renumberCacheId(
            Number(data.toString("latin1")),
            visible.map((h) => Number(fs.readFileSync(path.join(this.hostCpuDir, `cpu${h}`, "cache", cache[1], "id"), "latin1"))),
          )
        : renumberCpuFile(node.rel, data.toString("latin1"), visible);
      return renumbered ? renumbered : data;
    } catch (e) {
      return (e as NodeJS.ErrnoException).errno ? -((e as NodeJS.ErrnoException).errno as number) : E.EIO;
    }
  }

  read(ino: number, fh: number, offset: number, size: number, caller: Caller): string | Buffer | Errno {
    let h = this.handles.get(fh);
    if (!h) {
      // Opened through a serving process that has since crashed: serve it afresh.
      const node = this.node(ino);
      if (!node) return E.EBADF;
      h = { node, opener: caller.pid };
      this.handles.set(fh, h);
    }
    // Render at offset 0 (a first read, or a reader that seeks back like top); serve later
    // offsets from that snapshot so small reads see one consistent file.
    if (offset === 0 || !h.snapshot) {
      const c = this.content(h.node, caller.pid === 0 ? { ...caller, pid: h.opener } : caller);
      if (typeof c === "number") return c;
      this.keepSnapshot(h, c);
    }
    const snap = h.snapshot as string | Buffer;
    const out = typeof snap === "string" ? snap.slice(offset, offset + size) : snap.subarray(offset, offset + size);
    // The read past the end that every reader makes: it has the whole file, the text can go
    // (a reader that comes back reads from 0 and gets a fresh one anyway).
    if (out.length === 0) this.dropSnapshot(h);
    return out;
  }

  /**
   * Keeps a handle's text for its later offsets, at most MAX_SNAPSHOT_BYTES in all: past that
   * the oldest handles' texts go (a reader holding many files open, read but not to their
   * end, must not grow this process without bound).
   */
  private keepSnapshot(h: Handle, text: string | Buffer): void {
    this.dropSnapshot(h);
    h.snapshot = text;
    this.snapshotBytes += text.length;
    this.snapshotted.add(h);
    // Oldest first; the newest (h) is last, so it stays.
    for (const other of this.snapshotted) {
      if (this.snapshotBytes <= MAX_SNAPSHOT_BYTES || other === h) return;
      this.dropSnapshot(other);
    }
  }

  private dropSnapshot(h: Handle): void {
    if (h.snapshot) this.snapshotBytes -= h.snapshot.length;
    h.snapshot = undefined;
    this.snapshotted.delete(h);
  }

  /**
   * Drops every open handle's state: for a serving thread that parks, since the releases of
   * what it opened go to whoever serves next (a later read of one of them is served afresh).
   */
  forgetHandles(): void {
    this.handles.clear();
    this.snapshotted.clear();
    this.snapshotBytes = 0;
  }

  release(_ino: number, fh: number): void {
    const h = this.handles.get(fh);
    if (h) this.dropSnapshot(h);
    this.handles.delete(fh);
  }

  readdir(ino: number, caller: Caller): readonly DirEntry[] | Errno {
    const node = this.node(ino);
    if (!node) return E.ENOENT;
    const dots: DirEntry[] = [
      { ino, name: ".", type: DT_DIR },
      { ino: ROOT, name: "..", type: DT_DIR },
    ];
    if (node.kind === "view") return E.ENOTDIR;
    const out = [...dots];
    if (node.kind === "dir") {
      for (const [name, child] of node.children)
        out.push({ ino: child, name, type: this.nodes.get(child)?.kind === "view" ? DT_REG : DT_DIR });
      if (node.path !== CPU_DIR) return out;
    }
    const visible = this.renderer.visibleFor(caller.pid);
    const rel = node.kind === "host" ? node.rel : "";
    const p = rel === "" ? this.hostCpuDir : this.hostPath(rel, visible);
    if (p === undefined) return E.ENOENT;
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(p, { withFileTypes: true });
    } catch {
      return E.ENOENT;
    }
    const typeOf = (d: fs.Dirent) => (d.isDirectory() ? DT_DIR : d.isSymbolicLink() ? DT_LNK : DT_REG);
    const join = (name: string) => (rel === "" ? name : `${rel}/${name}`);
    for (const d of entries) {
      // At the top, the reader's own cpuN entries replace the host's; views replace their files.
      if (rel === "" && ((visible && CPU_ENTRY.test(d.name)) || (node.kind === "dir" && node.children.has(d.name)))) continue;
      out.push({ ino: this.hostNode(join(d.name)).ino, name: d.name, type: typeOf(d) });
    }
    if (rel === "" && visible) {
      for (let i = 0; i < visible.length; i++) out.push({ ino: this.hostNode(`cpu${i}`).ino, name: `cpu${i}`, type: DT_DIR });
    }
    return out;
  }

  forget(): void {
    // Inodes are kept for the life of the mount: the tree is small and fixed in shape.
  }

  fileCount(): number {
    return this.nodes.size;
  }
}
