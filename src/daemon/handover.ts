// The handover: a running daemon gives its /dev/fuse connection to the daemon that succeeds
// it, so the mount, and every container's bind of its files, never goes away. Without it an
// upgrade has a window in which containers read the host's own files (their CPU counters
// leap to the host's and back). The descriptors travel over a Unix socket in the root-only
// state directory (SCM_RIGHTS, through the native helper); no container can reach it.
//
// On the wire, one JSON object per line; the running daemon (the giver) answers the newcomer:
//   newcomer: {hello, version, pid}       giver: {offer...} with the descriptors attached,
//                                                then {loads} (the load-average history)
//   newcomer: {take}   (its serving thread is warm)
//                                         giver: {parked}  (no one of its own reads the connection)
//   newcomer: {serving} (a read through the mount was answered by it)
// then the giver lets go of the connection and waits, idle, for its own stop. Whatever ends
// early gives the connection back: a giver that has not said `parked` serves on, and a
// newcomer that has not said `serving` is gone or gives up (the giver serves again).
import * as fs from "node:fs";
import * as net from "node:net";
import type { Logger } from "pino";
import { sharedMapHelper } from "../fuse/journal";
import type { LoadTable } from "./loads";

/** Bumped whenever a message or the meaning of a handed-over file changes. */
export const HANDOVER_VERSION = 1;
/** How long a newcomer may take from the offer to `take` (it starts and warms its serving thread). */
const TAKE_WITHIN_MS = 30_000;
/** How long the giver may take to park (its serving process finishes the request in hand). */
const PARKED_WITHIN_MS = 10_000;
/** How long a newcomer may take from `parked` to its first answer. */
const SERVING_WITHIN_MS = 20_000;

/** What the giver hands over besides the connection. */
export interface Offer {
  version: number;
  pid: number;
  /** The next generation number of serving processes: the newcomer's handles must not collide with open ones. */
  generation: number;
  loads: LoadTable;
  hostCpus: number;
  /** Which descriptors follow the connection (fds[0]), in this order. */
  clocks: boolean;
  journal: boolean;
}

/** What the newcomer holds once offered: the connection, and the shared files the giver used. */
export interface Taken {
  offer: Offer;
  fuseFd: number;
  clocksFd?: number;
  journalFd?: number;
  /**
   * Asks the giver to stop serving: "parked" once it has, "gone" if it went away first (the
   * connection is ours alone then); a HandoverError if it refused (it serves on).
   */
  take(): Promise<"parked" | "gone">;
  /** Tells the giver we serve: it lets go. */
  serving(): void;
  /** Gives up before `take` (the giver serves on); closes what was handed over. */
  abort(): void;
}

export class HandoverError extends Error {}

interface FdHelper {
  sendFds(sock: number, data: Buffer, fds: number[]): number;
  recvFds(sock: number, maxBytes: number): { data: Buffer; fds: number[]; truncated: boolean } | null;
}

/** The native helper's descriptor passing, or undefined when it was not built (no handover then). */
export function fdPassing(): FdHelper | undefined {
  const h = sharedMapHelper() as unknown as Partial<FdHelper> | undefined;
  return h?.sendFds && h.recvFds ? (h as FdHelper) : undefined;
}

/** A Unix socket's descriptor (libuv keeps it non-blocking). */
const fdOf = (s: net.Socket): number => (s as unknown as { _handle: { fd: number } })._handle.fd;

/** Splits a byte stream into JSON lines; anything but objects is an error. */
class Lines {
  private buf = "";
  push(chunk: Buffer): object[] {
    this.buf += chunk.toString("utf8");
    const out: object[] = [];
    for (let nl = this.buf.indexOf("\n"); nl >= 0; nl = this.buf.indexOf("\n")) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      const v = JSON.parse(line) as unknown;
      if (typeof v !== "object" || v === null) throw new HandoverError("not a message");
      out.push(v);
    }
    // The load history of thousands of cgroups is a few MiB at most.
    if (this.buf.length > 64 << 20) throw new HandoverError("message too long");
    return out;
  }
}

// ---------------------------------------------------------------- the giver (running daemon)

/** What the running daemon does for a handover (see ServingProcesses and serve). */
export interface Giver {
  /** The connection and shared files, and what goes with them. */
  offer(): { fuseFd: number; clocksFd?: number; journalFd?: number; generation: number; loads: LoadTable; hostCpus: number };
  /** Stops answering the connection; false if its serving process did not park in time. */
  park(): Promise<boolean>;
  /** The newcomer failed or went away: serve again. */
  resume(): void;
  /** The newcomer serves: let go of the connection. */
  release(pid: number): Promise<void>;
}

/**
 * Listens for a successor on `sockPath`. One handover at a time; a newcomer that arrives
 * while one is under way is refused.
 */
export class HandoverServer {
  private server?: net.Server;
  private busy?: Promise<void>;
  private done = false;
  private closed = false;
  /** The successor being talked to, until it has asked to take over (a stop may cut it off before). */
  private talking?: net.Socket;

  constructor(
    private readonly sockPath: string,
    private readonly giver: Giver,
    private readonly log: Logger,
  ) {}

  /** Whether the connection was handed over (the daemon then stops without touching mounts). */
  get handedOver(): boolean {
    return this.done;
  }

  async listen(): Promise<void> {
    if (this.closed) return;
    if (!fdPassing()) {
      this.log.warn("the native helper is not built: this daemon cannot hand its connection to a successor");
      return;
    }
    // A socket left by a daemon that died: no one listens on it (we serve, so no one else can).
    fs.rmSync(this.sockPath, { force: true });
    const server = net.createServer((s) => this.accept(s));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.sockPath, () => resolve());
    });
    fs.chmodSync(this.sockPath, 0o600);
    server.on("error", (e) => this.log.warn({ err: e.message }, "handover socket failed"));
    this.server = server;
  }

  /**
   * Stops listening (the socket file goes). A handover that has not reached `take` is cut off
   * (the successor finds its connection gone); one past it is waited for.
   */
  async close(): Promise<void> {
    this.closed = true;
    this.stopListening();
    const t = this.talking;
    // Said, not just cut: a successor that only saw the end would take us for dead and serve.
    if (t) await say(t, { refused: "the running daemon is stopping" }).then(() => t.destroy());
    await this.busy;
  }

  /** Closes the listening socket, which unlinks its file at once (the server's 'close' waits for connections to end). */
  private stopListening(): void {
    this.server?.close();
    this.server = undefined;
  }

  private async resume(): Promise<void> {
    this.giver.resume();
    await this.listen().catch((e: Error) => this.log.warn({ err: e.message }, "cannot listen for a successor again"));
  }

  private accept(s: net.Socket): void {
    s.on("error", () => {});
    if (this.busy || this.done || this.closed) {
      const why = this.done
        ? "this daemon has handed its connection over already"
        : this.closed
          ? "this daemon is stopping"
          : "another handover is under way";
      s.end(line({ refused: why }));
      return;
    }
    this.busy = this.converse(s).finally(() => {
      this.busy = undefined;
      s.destroy();
    });
  }

  private async converse(s: net.Socket): Promise<void> {
    const inbox = Inbox.of(s);
    this.talking = s;
    const hello = (await inbox.next(5000)) as { hello?: string; version?: number; pid?: number } | undefined;
    if (hello?.hello !== "procview-handover") return;
    const pid = Number(hello.pid);
    if (hello.version !== HANDOVER_VERSION) {
      await say(s, { refused: `this daemon speaks handover version ${HANDOVER_VERSION}, not ${hello.version}` });
      return;
    }
    const o = this.giver.offer();
    const fds = [o.fuseFd, ...(o.clocksFd === undefined ? [] : [o.clocksFd]), ...(o.journalFd === undefined ? [] : [o.journalFd])];
    const offer: Omit<Offer, "loads"> = {
      version: HANDOVER_VERSION,
      pid: process.pid,
      generation: o.generation,
      hostCpus: o.hostCpus,
      clocks: o.clocksFd !== undefined,
      journal: o.journalFd !== undefined,
    };
    // The descriptors with the first bytes on the socket (small: one sendmsg); the rest through Node.
    if (!sendWithFds(s, offer, fds)) return;
    await say(s, { loads: o.loads });
    this.log.info({ to: pid }, "handing the connection over");
    if (!("take" in ((await inbox.next(TAKE_WITHIN_MS)) ?? {}))) {
      if (inbox.ended) this.log.warn({ to: pid }, "the successor went away before taking over: serving on");
      else {
        // Told so: it must not take our silence for our death and serve beside us.
        await say(s, { refused: `the successor did not ask to take over within ${TAKE_WITHIN_MS / 1000} s` });
        this.log.warn({ to: pid }, "the successor did not take over in time: serving on");
      }
      return;
    }
    this.talking = undefined;
    const started = Date.now();
    // The socket file goes now (closing unlinks it), before the successor listens there.
    this.stopListening();
    if (!(await this.giver.park())) {
      this.log.warn({ to: pid }, "could not park the serving process: serving on");
      await say(s, { refused: "the running daemon could not stop serving in time" });
      await this.resume();
      return;
    }
    await say(s, { parked: true });
    const ack = await inbox.next(SERVING_WITHIN_MS);
    if (!ack || !("serving" in ack)) {
      this.log.warn({ to: pid }, "the successor did not start serving: serving again");
      await this.resume();
      return;
    }
    this.done = true;
    this.log.info({ to: pid, ms: Date.now() - started }, "handed the connection over");
    await this.giver.release(pid);
  }
}

const line = (msg: object): string => `${JSON.stringify(msg)}\n`;

/**
 * The first message, with the descriptors: one sendmsg(2) on a socket nothing was written to
 * yet, so it goes whole (a few hundred bytes). False if the peer went away.
 */
function sendWithFds(s: net.Socket, msg: object, fds: number[]): boolean {
  const data = Buffer.from(line(msg));
  try {
    return fdPassing()?.sendFds(fdOf(s), data, fds) === data.length;
  } catch {
    return false;
  }
}

/** A message without descriptors, through Node (which keeps what the socket cannot take yet). */
function say(s: net.Socket, msg: object): Promise<void> {
  return new Promise((resolve) => (s.destroyed ? resolve() : s.write(line(msg), () => resolve())));
}

/**
 * Messages from the peer, as they come: through Node's reads on the giver's side (nothing
 * comes to it with descriptors), pulled with their descriptors on the newcomer's.
 */
class Inbox {
  private readonly queue: object[] = [];
  private readonly lines = new Lines();
  private wake?: () => void;
  /** The peer closed its end, or sent what is not a message (`error` says what then). */
  ended = false;
  error?: string;

  /** The giver's: everything Node reads from `s`; a malformed message ends the conversation. */
  static of(s: net.Socket): Inbox {
    const inbox = new Inbox();
    s.on("data", (chunk) => {
      inbox.add(chunk);
      if (inbox.error) s.destroy();
    });
    s.on("close", () => inbox.add(Buffer.alloc(0)));
    return inbox;
  }

  /** Bytes from the peer; none: its end. */
  add(bytes: Buffer): void {
    if (bytes.length === 0) this.ended = true;
    else {
      try {
        this.queue.push(...this.lines.push(bytes));
      } catch (e) {
        this.ended = true;
        this.error = (e as Error).message;
      }
    }
    this.wake?.();
  }

  /**
   * The next message, or undefined at the peer's end or the deadline. `pull`, if given, reads
   * what has come (false: nothing yet) and is polled every 2 ms; without it, `add` wakes us.
   */
  async next(withinMs: number, pull?: () => boolean): Promise<object | undefined> {
    const end = Date.now() + withinMs;
    while (this.queue.length === 0 && !this.ended && Date.now() < end) {
      if (pull?.()) continue;
      await new Promise<void>((r) => {
        const t = setTimeout(r, pull ? 2 : end - Date.now());
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
      this.wake = undefined;
    }
    return this.queue.shift();
  }
}

// ---------------------------------------------------------------- the newcomer

/**
 * Asks the daemon listening on `sockPath` for its connection. Undefined when no daemon
 * listens there (none runs, or one that cannot hand over); a HandoverError when one refuses.
 */
export async function takeOver(sockPath: string): Promise<Taken | undefined> {
  const helper = fdPassing();
  if (!helper || !fs.existsSync(sockPath)) return undefined;
  const s = net.connect(sockPath);
  // Not read by Node: descriptors come in-band and libuv would drop them.
  s.pause();
  s.on("error", () => {});
  const connected = await new Promise<boolean>((resolve) => {
    s.once("connect", () => resolve(true));
    s.once("error", () => resolve(false));
  });
  if (!connected) {
    s.destroy();
    return undefined;
  }
  const inbox = new Inbox();
  const received: number[] = [];
  /** Reads what has come on the socket, descriptors and all; false if nothing has. */
  const pull = (): boolean => {
    let got: ReturnType<FdHelper["recvFds"]>;
    try {
      got = helper.recvFds(fdOf(s), 65536);
    } catch {
      inbox.add(Buffer.alloc(0));
      return true;
    }
    if (!got) return false;
    received.push(...got.fds);
    if (got.truncated) throw new HandoverError("descriptors were cut off in transit");
    inbox.add(got.data);
    return true;
  };
  /** The next message; undefined at the peer's end or the deadline. */
  const next = async (withinMs: number): Promise<object | undefined> => {
    const m = await inbox.next(withinMs, pull);
    if (m === undefined && inbox.error) throw new HandoverError(inbox.error);
    return m;
  };
  const closeAll = () => {
    for (const fd of received) fs.closeSync(fd);
    received.length = 0;
  };
  /** Gives up: what came goes back (closed here; the giver keeps its own), and the giver serves on. */
  const giveUp = (why: string): never => {
    closeAll();
    s.destroy();
    throw new HandoverError(why);
  };
  s.write(`${JSON.stringify({ hello: "procview-handover", version: HANDOVER_VERSION, pid: process.pid })}\n`);
  const offer = (await next(10_000).catch((e: Error) => giveUp(e.message))) as (Offer & { refused?: string }) | undefined;
  if (!offer || offer.refused || offer.version !== HANDOVER_VERSION) return giveUp(offer?.refused ?? "the running daemon offered nothing");
  const expected = 1 + (offer.clocks ? 1 : 0) + (offer.journal ? 1 : 0);
  if (received.length !== expected) return giveUp(`expected ${expected} descriptor(s), got ${received.length}`);
  const loads = (await next(10_000).catch(() => undefined)) as { loads?: LoadTable } | undefined;
  if (!Array.isArray(loads?.loads)) return giveUp("the running daemon sent no load history");
  const [fuseFd, ...rest] = received;
  return {
    offer: { ...offer, loads: loads.loads },
    fuseFd,
    clocksFd: offer.clocks ? rest.shift() : undefined,
    journalFd: offer.journal ? rest.shift() : undefined,
    async take() {
      s.write(`${JSON.stringify({ take: true })}\n`);
      const m = (await next(PARKED_WITHIN_MS + 2000)) as { parked?: boolean; refused?: string } | undefined;
      if (m?.parked) return "parked";
      if (m?.refused) throw new HandoverError(m.refused);
      if (inbox.ended) return "gone";
      throw new HandoverError(`the running daemon did not park within ${PARKED_WITHIN_MS + 2000} ms`);
    },
    serving() {
      s.end(`${JSON.stringify({ serving: true })}\n`);
    },
    abort() {
      closeAll();
      s.destroy();
    },
  };
}
