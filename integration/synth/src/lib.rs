//! Synthetic clusters of any size, for benchmarks and load tests: Kubernetes objects, mock
//! driver state and ExtenderArgs bodies shaped like a real cluster's (full Node objects carry
//! images, conditions and labels, as kube-scheduler sends them).

use std::io::Write;

use serde_json::{Value, json};

use stork::{
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

/// The StorageClass every synthetic claim uses (provisioned by the mock driver).
pub fn storage_class_json() -> Value {
    json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "mock-sc"}, "provisioner": PROVISIONER})
}

/// Claim `bench/data-<v>`, bound to PV `pv-<v>`.
pub fn pvc_json(v: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": format!("data-{v}"), "namespace": "bench", "uid": format!("10000000-0000-0000-0000-{v:012}")},
        "spec": {
            "storageClassName": "mock-sc", "volumeName": format!("pv-{v}"), "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "10Gi"}}
        },
        "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "10Gi"}}
    })
}

/// PV `pv-<v>`, a mock-driver CSI volume bound to claim `bench/data-<v>`.
pub fn pv_json(v: usize) -> Value {
    let pv = format!("pv-{v}");
    json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": pv},
        "spec": {
            "storageClassName": "mock-sc", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "10Gi"},
            "persistentVolumeReclaimPolicy": "Delete",
            "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "bench", "name": format!("data-{v}")},
            "csi": {"driver": PROVISIONER, "volumeHandle": pv}
        },
        "status": {"phase": "Bound"}
    })
}

/// Node `i` as the mock driver sees it (zone `i % 3`, rack `i % 24`).
pub fn topology_node(i: usize) -> TopologyNode {
    TopologyNode {
        id: node_name(i),
        ips: vec![format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256)],
        zone: Some(format!("zone-{}", i % 3)),
        rack: Some(format!("rack-{}", i % 24)),
        region: Some("region-1".into()),
        ..TopologyNode::default()
    }
}

/// Volume `pv-<v>` with three replicas on consecutive-by-7 nodes of a `nodes`-node cluster.
pub fn topology_volume(v: usize, nodes: usize) -> TopologyVolume {
    let replicas = (0..3.min(nodes)).map(|r| node_name((v * 7 + r) % nodes)).collect();
    TopologyVolume { id: format!("pv-{v}"), replicas, ..TopologyVolume::default() }
}

/// Writes the objects of a `nodes`-node cluster with `volumes` bound claims as multi-document
/// YAML (one JSON document per object), streaming: memory stays flat at any size.
pub fn write_objects(out: &mut impl Write, nodes: usize, volumes: usize) -> std::io::Result<()> {
    let docs = std::iter::once(storage_class_json())
        .chain((0..nodes).map(node_json))
        .chain((0..volumes).flat_map(|v| [pvc_json(v), pv_json(v)]));
    for doc in docs {
        out.write_all(b"---\n")?;
        serde_json::to_writer(&mut *out, &doc)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Writes the mock topology of the same cluster (topology file format, as JSON), streaming.
pub fn write_topology(out: &mut impl Write, nodes: usize, volumes: usize) -> std::io::Result<()> {
    out.write_all(b"{\"nodes\": [\n")?;
    for i in 0..nodes {
        let n = topology_node(i);
        let node = json!({"id": n.id, "ips": n.ips, "zone": n.zone, "rack": n.rack, "region": n.region});
        write_item(out, i, &node)?;
    }
    out.write_all(b"],\n\"volumes\": [\n")?;
    for v in 0..volumes {
        let t = topology_volume(v, nodes);
        write_item(out, v, &json!({"id": t.id, "replicas": t.replicas}))?;
    }
    out.write_all(b"]}\n")
}

fn write_item(out: &mut impl Write, index: usize, item: &Value) -> std::io::Result<()> {
    if index > 0 {
        out.write_all(b",\n")?;
    }
    serde_json::to_writer(&mut *out, item)?;
    Ok(())
}

impl SynthCluster {
    /// `nodes` driver nodes in 3 zones of 8 racks each, and `volumes` bound volumes with three
    /// replicas spread over consecutive nodes.
    pub fn new(nodes: usize, volumes: usize) -> Self {
        let node_names: Vec<String> = (0..nodes).map(node_name).collect();
        let mut objects = Objects::default();
        objects.storage_classes.push(serde_json::from_value(storage_class_json()).expect("storage class"));
        let mut topology = Topology::default();
        for i in 0..nodes {
            let mut n: k8s_openapi::api::core::v1::Node = serde_json::from_value(node_json(i)).expect("node");
            stork::cluster::trim_node(&mut n);
            objects.nodes.push(n);
            topology.nodes.push(topology_node(i));
        }
        for v in 0..volumes {
            topology.volumes.push(topology_volume(v, nodes));
            objects.pvcs.push(serde_json::from_value(pvc_json(v)).expect("pvc"));
            objects.pvs.push(serde_json::from_value(pv_json(v)).expect("pv"));
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
