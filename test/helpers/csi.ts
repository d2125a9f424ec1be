// A CSI caller from the kubelet's side: the CSI v1 messages procview's node plugin is sent,
// encoded here from the specification's field numbers (github.com/container-storage-interface/spec,
// csi.proto), not from procview's own description of them, and sent over real gRPC.
import * as grpc from "@grpc/grpc-js";
import { Reader, Writer } from "protobufjs";

export type Fields = Map<number, (number | Uint8Array)[]>;
export function decode(buf: Uint8Array): Fields {
  const r = Reader.create(buf);
  const out: Fields = new Map();
  while (r.pos < r.len) {
    const tag = r.uint32();
    const value = (tag & 7) === 2 ? r.bytes() : (tag & 7) === 0 ? r.uint32() : (r.skipType(tag & 7), -1);
    out.set(tag >>> 3, [...(out.get(tag >>> 3) ?? []), value]);
  }
  return out;
}
export const str = (f: Fields, n: number) => Buffer.from((f.get(n)?.[0] as Uint8Array | undefined) ?? []).toString();

export interface Publish {
  volumeId?: string;
  target: string;
  ephemeral?: boolean;
  block?: boolean;
}
/** NodePublishVolumeRequest: volume_id 1, target_path 4, volume_capability 5, readonly 6, volume_context 8. */
export function publishRequest(p: Publish): Buffer {
  const w = Writer.create();
  if (p.volumeId !== "") w.uint32((1 << 3) | 2).string(p.volumeId ?? "csi-0123456789abcdef");
  w.uint32((4 << 3) | 2).string(p.target);
  // VolumeCapability: block 1 or mount 2, access_mode 3 { mode 1: SINGLE_NODE_READER_ONLY = 2 }
  w.uint32((5 << 3) | 2).fork();
  w.uint32(((p.block ? 1 : 2) << 3) | 2)
    .fork()
    .ldelim();
  w.uint32((3 << 3) | 2)
    .fork()
    .uint32((1 << 3) | 0)
    .int32(2)
    .ldelim();
  w.ldelim();
  w.uint32((6 << 3) | 0).bool(true);
  const context: Record<string, string> = {
    "csi.storage.k8s.io/pod.name": "app-0",
    "csi.storage.k8s.io/pod.namespace": "restricted-ns",
    "csi.storage.k8s.io/serviceAccount.name": "default",
  };
  if (p.ephemeral !== false) context["csi.storage.k8s.io/ephemeral"] = "true";
  for (const [k, v] of Object.entries(context))
    w.uint32((8 << 3) | 2)
      .fork()
      .uint32((1 << 3) | 2)
      .string(k)
      .uint32((2 << 3) | 2)
      .string(v)
      .ldelim();
  return Buffer.from(w.finish());
}
/** NodeUnpublishVolumeRequest: volume_id 1, target_path 2. */
export function unpublishRequest(target: string): Buffer {
  return Buffer.from(Writer.create().uint32(10).string("csi-0123456789abcdef").uint32(18).string(target).finish());
}

export interface Answer {
  code: number;
  details: string;
  fields: Fields;
}

/** A CSI caller on a Unix socket, as the kubelet and the registrar are. */
export class CsiCaller {
  private readonly client: grpc.Client;
  constructor(socket: string) {
    this.client = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure());
  }
  close(): void {
    this.client.close();
  }
  call(method: string, body: Buffer = Buffer.alloc(0)): Promise<Answer> {
    const client = this.client;
    return new Promise((resolve) => {
      client.makeUnaryRequest(
        method,
        (b: Buffer) => b,
        (b: Buffer) => b,
        body,
        { deadline: Date.now() + 20_000 },
        (err: grpc.ServiceError | null, res?: Buffer) =>
          resolve(
            err
              ? { code: err.code, details: err.details, fields: new Map() }
              : { code: 0, details: "", fields: decode(res ?? Buffer.alloc(0)) },
          ),
      );
    });
  }
}
export const OK = 0;
export const INVALID_ARGUMENT = 3;
