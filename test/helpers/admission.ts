// AdmissionReview requests shaped as kube-apiserver sends them for a pod created by a
// Deployment's ReplicaSet: generateName and no name, the service-account token volume
// already added by the ServiceAccount admission plugin, defaults filled in.
import { randomUUID } from "node:crypto";

export type Json = Record<string, unknown>;

export function deploymentPod(o: { namespace?: string; annotations?: Record<string, string>; labels?: Record<string, string> } = {}): Json {
  const namespace = o.namespace ?? "shop";
  return {
    kind: "Pod",
    apiVersion: "v1",
    metadata: {
      generateName: "web-7d4b9c8f6-",
      namespace,
      creationTimestamp: null,
      labels: { app: "web", "pod-template-hash": "7d4b9c8f6", ...o.labels },
      ...(o.annotations ? { annotations: o.annotations } : {}),
      ownerReferences: [
        {
          apiVersion: "apps/v1",
          kind: "ReplicaSet",
          name: "web-7d4b9c8f6",
          uid: "0b1f6c7e-7f43-4a4a-9a59-6b1c6e0f7a11",
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
      managedFields: [
        {
          manager: "kube-controller-manager",
          operation: "Update",
          apiVersion: "v1",
          time: "2026-11-21T10:00:00Z",
          fieldsType: "FieldsV1",
          fieldsV1: {},
        },
      ],
    },
    spec: {
      volumes: [
        {
          name: "kube-api-access-x7k2p",
          projected: {
            sources: [
              { serviceAccountToken: { expirationSeconds: 3607, path: "token" } },
              { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
              { downwardAPI: { items: [{ path: "namespace", fieldRef: { apiVersion: "v1", fieldPath: "metadata.namespace" } }] } },
            ],
            defaultMode: 420,
          },
        },
      ],
      containers: [
        {
          name: "web",
          image: "nginx:1.27",
          ports: [{ containerPort: 80, protocol: "TCP" }],
          resources: { limits: { cpu: "500m", memory: "256Mi" }, requests: { cpu: "100m", memory: "128Mi" } },
          volumeMounts: [{ name: "kube-api-access-x7k2p", readOnly: true, mountPath: "/var/run/secrets/kubernetes.io/serviceaccount" }],
          terminationMessagePath: "/dev/termination-log",
          terminationMessagePolicy: "File",
          imagePullPolicy: "IfNotPresent",
        },
      ],
      restartPolicy: "Always",
      terminationGracePeriodSeconds: 30,
      dnsPolicy: "ClusterFirst",
      serviceAccountName: "default",
      serviceAccount: "default",
      securityContext: {},
      schedulerName: "default-scheduler",
      tolerations: [
        { key: "node.kubernetes.io/not-ready", operator: "Exists", effect: "NoExecute", tolerationSeconds: 300 },
        { key: "node.kubernetes.io/unreachable", operator: "Exists", effect: "NoExecute", tolerationSeconds: 300 },
      ],
      priority: 0,
      enableServiceLinks: true,
      preemptionPolicy: "PreemptLowerPriority",
    },
    status: {},
  };
}

export function admissionReview(pod: Json, o: { apiVersion?: string; dryRun?: boolean; operation?: string } = {}): Json {
  const namespace = (pod.metadata as Json | undefined)?.namespace ?? "shop";
  const gvk = { group: "", version: "v1", kind: "Pod" };
  const gvr = { group: "", version: "v1", resource: "pods" };
  return {
    kind: "AdmissionReview",
    apiVersion: o.apiVersion ?? "admission.k8s.io/v1",
    request: {
      uid: randomUUID(),
      kind: gvk,
      resource: gvr,
      requestKind: gvk,
      requestResource: gvr,
      name: "",
      namespace,
      operation: o.operation ?? "CREATE",
      userInfo: {
        username: "system:serviceaccount:kube-system:replicaset-controller",
        uid: "5f3e1c2a-1111-4c1e-9d1b-2b3c4d5e6f70",
        groups: ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
      },
      object: pod,
      oldObject: null,
      dryRun: o.dryRun ?? false,
      options: { kind: "CreateOptions", apiVersion: "meta.k8s.io/v1" },
    },
  };
}
