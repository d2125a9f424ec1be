// The part of the Container Storage Interface (CSI v1, package csi.v1) a node plugin for
// inline ephemeral volumes answers: the Identity service and the Node calls the kubelet
// and node-driver-registrar make. Names and field numbers are the specification's, so the
// bytes on the wire are what any CSI caller sends; calls left out (staging, stats, the
// Controller service) are answered UNIMPLEMENTED by gRPC itself.
// ProbeResponse.ready is google.protobuf.BoolValue in the specification: a message whose
// field 1 is the bool, declared here as BoolValue to keep this file free of imports.
export const CSI_PROTO = `
syntax = "proto3";
package csi.v1;

service Identity {
  rpc GetPluginInfo (GetPluginInfoRequest) returns (GetPluginInfoResponse) {}
  rpc GetPluginCapabilities (GetPluginCapabilitiesRequest) returns (GetPluginCapabilitiesResponse) {}
  rpc Probe (ProbeRequest) returns (ProbeResponse) {}
}

service Node {
  rpc NodePublishVolume (NodePublishVolumeRequest) returns (NodePublishVolumeResponse) {}
  rpc NodeUnpublishVolume (NodeUnpublishVolumeRequest) returns (NodeUnpublishVolumeResponse) {}
  rpc NodeGetCapabilities (NodeGetCapabilitiesRequest) returns (NodeGetCapabilitiesResponse) {}
  rpc NodeGetInfo (NodeGetInfoRequest) returns (NodeGetInfoResponse) {}
}

message GetPluginInfoRequest {}
message GetPluginInfoResponse {
  string name = 1;
  string vendor_version = 2;
  map<string, string> manifest = 3;
}

message GetPluginCapabilitiesRequest {}
message GetPluginCapabilitiesResponse {
  repeated PluginCapability capabilities = 1;
}
message PluginCapability {
  message Service {
    enum Type {
      UNKNOWN = 0;
      CONTROLLER_SERVICE = 1;
      VOLUME_ACCESSIBILITY_CONSTRAINTS = 2;
    }
    Type type = 1;
  }
  oneof type {
    Service service = 1;
  }
}

message BoolValue {
  bool value = 1;
}
message ProbeRequest {}
message ProbeResponse {
  BoolValue ready = 1;
}

message VolumeCapability {
  message BlockVolume {}
  message MountVolume {
    string fs_type = 1;
    repeated string mount_flags = 2;
  }
  message AccessMode {
    int32 mode = 1;
  }
  oneof access_type {
    BlockVolume block = 1;
    MountVolume mount = 2;
  }
  AccessMode access_mode = 3;
}

message NodePublishVolumeRequest {
  string volume_id = 1;
  map<string, string> publish_context = 2;
  string staging_target_path = 3;
  string target_path = 4;
  VolumeCapability volume_capability = 5;
  bool readonly = 6;
  map<string, string> secrets = 7;
  map<string, string> volume_context = 8;
}
message NodePublishVolumeResponse {}

message NodeUnpublishVolumeRequest {
  string volume_id = 1;
  string target_path = 2;
}
message NodeUnpublishVolumeResponse {}

message NodeGetCapabilitiesRequest {}
message NodeGetCapabilitiesResponse {
  repeated NodeServiceCapability capabilities = 1;
}
message NodeServiceCapability {
  message RPC {
    int32 type = 1;
  }
  oneof type {
    RPC rpc = 1;
  }
}

message NodeGetInfoRequest {}
message NodeGetInfoResponse {
  string node_id = 1;
  int64 max_volumes_per_node = 2;
}
`;
