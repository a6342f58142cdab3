//! Synthetic clusters of any size, for benchmarks and load tests: Kubernetes objects, mock
//! driver state and ExtenderArgs bodies shaped like a real cluster's (full Node objects carry
//! images, conditions and labels, as kube-scheduler sends them).

use serde_json::{Value, json};

use crate::{
    cluster::Objects,
    driver::mock::{PROVISIONER, Topology, TopologyNode, TopologyVolume},
};

/// A generated cluster.
pub struct SynthCluster {
    /// Kubernetes objects (StorageClass, Nodes, PVCs, PVs).
    pub objects: Objects,
    /// Mock driver state: every node a driver node, three replicas per volume.
    pub topology: Topology,
    /// Node names in order.
    pub node_names: Vec<String>,
}

/// Node `i`'s name.
pub fn node_name(i: usize) -> String {
    format!("node-{i:05}")
}

/// A realistic Node object (about 2 KB of JSON).
pub fn node_json(i: usize) -> Value {
    let name = node_name(i);
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name, "uid": format!("00000000-0000-0000-0000-{i:012}"), "resourceVersion": "12345",
            "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": format!("zone-{}", i % 3), "topology.kubernetes.io/region": "region-1",
                "node.kubernetes.io/instance-type": "m5.2xlarge"
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"}
        },
        "spec": {"podCIDR": format!("10.{}.{}.0/24", i / 256 % 256, i % 256), "providerID": format!("aws:///zone/i-{i:017x}")},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256)},
                {"type": "Hostname", "address": name}
            ],
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": "7900m", "memory": "31Gi", "pods": "110", "ephemeral-storage": "95Gi"},
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure"},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID"},
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}
            ],
            "images": [
                {"names": ["registry.k8s.io/kube-proxy@sha256:0123456789abcdef", "registry.k8s.io/kube-proxy:v1.33.1"], "sizeBytes": 30_000_000},
                {"names": ["docker.io/library/postgres@sha256:fedcba9876543210", "docker.io/library/postgres:17"], "sizeBytes": 150_000_000},
                {"names": ["registry.k8s.io/pause:3.10"], "sizeBytes": 300_000}
            ],
            "nodeInfo": {"kubeletVersion": "v1.33.1", "containerRuntimeVersion": "containerd://2.0.0", "osImage": "Debian GNU/Linux 12"}
        }
    })
}

impl SynthCluster {
    /// `nodes` driver nodes in 3 zones of 8 racks each, and `volumes` bound volumes with three
    /// replicas spread over consecutive nodes.
    pub fn new(nodes: usize, volumes: usize) -> Self {
        let node_names: Vec<String> = (0..nodes).map(node_name).collect();
        let mut objects = Objects::default();
        objects.storage_classes.push(
            serde_json::from_value(json!({"metadata": {"name": "mock-sc"}, "provisioner": PROVISIONER}))
                .expect("storage class"),
        );
        let mut topology = Topology::default();
        for (i, name) in node_names.iter().enumerate() {
            let mut n: k8s_openapi::api::core::v1::Node = serde_json::from_value(node_json(i)).expect("node");
            crate::cluster::trim_node(&mut n);
            objects.nodes.push(n);
            topology.nodes.push(TopologyNode {
                id: name.clone(),
                ips: vec![format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256)],
                zone: Some(format!("zone-{}", i % 3)),
                rack: Some(format!("rack-{}", i % 24)),
                region: Some("region-1".into()),
                ..TopologyNode::default()
            });
        }
        for v in 0..volumes {
            let (claim, pv) = (format!("data-{v}"), format!("pv-{v}"));
            let replicas = (0..3.min(nodes)).map(|r| node_names[(v * 7 + r) % nodes].clone()).collect();
            topology.volumes.push(TopologyVolume { id: pv.clone(), replicas, ..TopologyVolume::default() });
            objects.pvcs.push(
                serde_json::from_value(json!({
                    "metadata": {"name": claim, "namespace": "bench"},
                    "spec": {"storageClassName": "mock-sc", "volumeName": pv},
                    "status": {"phase": "Bound"}
                }))
                .expect("pvc"),
            );
            objects.pvs.push(
                serde_json::from_value(json!({
                    "metadata": {"name": pv},
                    "spec": {"storageClassName": "mock-sc", "csi": {"driver": PROVISIONER, "volumeHandle": pv}}
                }))
                .expect("pv"),
            );
        }
        Self { objects, topology, node_names }
    }

    /// A pod using claims `data-0 .. data-<volumes-1>`.
    pub fn pod(volumes: usize) -> Value {
        let vols: Vec<Value> = (0..volumes)
            .map(|v| json!({"name": format!("v{v}"), "persistentVolumeClaim": {"claimName": format!("data-{v}")}}))
            .collect();
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "bench-0", "namespace": "bench", "uid": "11111111-2222-3333-4444-555555555555"},
            "spec": {"schedulerName": "stork", "containers": [{"name": "c", "image": "postgres:17"}], "volumes": vols}
        })
    }

    /// ExtenderArgs in names mode (`nodeCacheCapable: true`).
    pub fn names_args(&self, volumes: usize) -> Vec<u8> {
        serde_json::to_vec(&json!({"Pod": Self::pod(volumes), "Nodes": null, "NodeNames": self.node_names}))
            .expect("encode")
    }

    /// ExtenderArgs with full Node objects (`nodeCacheCapable: false`).
    pub fn nodes_args(&self, volumes: usize) -> Vec<u8> {
        let items: Vec<Value> = (0..self.node_names.len()).map(node_json).collect();
        serde_json::to_vec(
            &json!({"Pod": Self::pod(volumes), "Nodes": {"metadata": {}, "items": items}, "NodeNames": null}),
        )
        .expect("encode")
    }
}
