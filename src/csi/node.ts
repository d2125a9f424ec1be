// procview's CSI node plugin: a gRPC server on a Unix socket that the kubelet (through
// node-driver-registrar) calls to mount inline ephemeral `csi:` volumes. Pod Security's
// baseline and restricted levels admit such volumes where they refuse hostPath. It runs in
// `procview serve`, beside the filesystem it hands out, so it answers only while there is
// something to hand out.
import * as fs from "node:fs";
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { fromJSON } from "@grpc/proto-loader";
import type { Logger } from "pino";
import * as protobuf from "protobufjs";
import { answers, type Layout } from "../mounts/layout";
import { CSI_DRIVER } from "../targets";
import { CSI_PROTO } from "./spec";
import { checkTarget, prepareSource, publish, releaseSource, unpublish, VolumeError } from "./volumes";

export interface CsiOptions {
  /** The socket's path. */
  endpoint: string;
  /** The kubelet's pods directory: every volume is mounted inside it. */
  podsDir: string;
  nodeId: string;
}

const VERSION = "0.1.0";
/** What the kubelet puts in volume_context for an inline ephemeral volume. */
const EPHEMERAL_KEY = "csi.storage.k8s.io/ephemeral";

interface PublishRequest {
  volume_id: string;
  target_path: string;
  readonly: boolean;
  volume_capability?: { block?: object; mount?: object };
  volume_context?: Record<string, string>;
}
interface UnpublishRequest {
  volume_id: string;
  target_path: string;
}

type Unary<Req> = grpc.handleUnaryCall<Req, object>;

function loadServices(): grpc.GrpcObject {
  const root = protobuf.parse(CSI_PROTO, { keepCase: true }).root;
  const def = fromJSON(root.toJSON(), { keepCase: true, defaults: true, oneofs: true });
  return grpc.loadPackageDefinition(def);
}

export class CsiNode {
  private server?: grpc.Server;
  /** Publish and unpublish of one target never overlap (the kubelet may retry while one runs). */
  private readonly busy = new Map<string, Promise<unknown>>();

  constructor(
    private readonly l: Layout,
    private readonly o: CsiOptions,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await prepareSource(this.l);
    const csi = (loadServices().csi as grpc.GrpcObject).v1 as grpc.GrpcObject;
    const server = new grpc.Server();
    server.addService((csi.Identity as grpc.ServiceClientConstructor).service, {
      GetPluginInfo: this.unary(async () => ({ name: CSI_DRIVER, vendor_version: VERSION })),
      GetPluginCapabilities: this.unary(async () => ({ capabilities: [] })),
      Probe: this.unary(async () => ({ ready: { value: await answers(this.l.fsDir) } })),
    });
    server.addService((csi.Node as grpc.ServiceClientConstructor).service, {
      NodeGetInfo: this.unary(async () => ({ node_id: this.o.nodeId })),
      NodeGetCapabilities: this.unary(async () => ({ capabilities: [] })),
      NodePublishVolume: this.unary((r: PublishRequest) => this.serial(r.target_path, () => this.publish(r))),
      NodeUnpublishVolume: this.unary((r: UnpublishRequest) => this.serial(r.target_path, () => this.unpublish(r))),
    });
    const sock = this.o.endpoint;
    fs.mkdirSync(path.dirname(sock), { recursive: true, mode: 0o700 });
    fs.rmSync(sock, { force: true });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${sock}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())),
    );
    fs.chmodSync(sock, 0o600);
    this.server = server;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((resolve) => s.tryShutdown(() => resolve()));
    fs.rmSync(this.o.endpoint, { force: true });
    // The volumes stay: they are slaves of the anchor and get the next daemon's filesystem.
    await releaseSource(this.l);
  }

  private async publish(r: PublishRequest): Promise<object> {
    if (!r.volume_id) throw new VolumeError("volume_id is required", true);
    checkTarget(this.o.podsDir, r.target_path);
    if (r.volume_context?.[EPHEMERAL_KEY] !== "true")
      throw new VolumeError(`${CSI_DRIVER} serves only inline ephemeral volumes (a csi: volume in the pod spec)`, true);
    if (r.volume_capability?.block) throw new VolumeError("a block volume was asked for: procview's volume is a filesystem", true);
    if (!(await answers(this.l.fsDir))) throw new Unavailable("procview is not serving yet");
    await publish(this.l, r.target_path);
    this.log.info(
      { volume: r.volume_id, target: r.target_path, pod: r.volume_context?.["csi.storage.k8s.io/pod.name"] },
      "volume published",
    );
    return {};
  }

  private async unpublish(r: UnpublishRequest): Promise<object> {
    if (!r.volume_id) throw new VolumeError("volume_id is required", true);
    checkTarget(this.o.podsDir, r.target_path);
    await unpublish(r.target_path);
    this.log.info({ volume: r.volume_id, target: r.target_path }, "volume unpublished");
    return {};
  }

  private serial<T>(key: string, f: () => Promise<T>): Promise<T> {
    const prev = this.busy.get(key) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(f);
    this.busy.set(key, next);
    const clear = () => {
      if (this.busy.get(key) === next) this.busy.delete(key);
    };
    next.then(clear, clear);
    return next;
  }

  /** A handler whose errors become gRPC statuses with a one-line reason. */
  private unary<Req>(f: (req: Req) => Promise<object>): Unary<Req> {
    return (call, callback) => {
      f(call.request).then(
        (res) => callback(null, res),
        (e: Error) => {
          const code =
            e instanceof VolumeError && e.invalid
              ? grpc.status.INVALID_ARGUMENT
              : e instanceof Unavailable
                ? grpc.status.UNAVAILABLE
                : grpc.status.INTERNAL;
          if (code === grpc.status.INTERNAL) this.log.error({ err: e.message }, "CSI call failed");
          callback({ code, details: e.message.slice(0, 512) });
        },
      );
    };
  }
}

class Unavailable extends Error {}
