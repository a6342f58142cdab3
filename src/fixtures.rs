//! Builder fixtures for unit tests: a small world of Kubernetes objects plus mock-driver state.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    core::v1::{Node, PersistentVolume, PersistentVolumeClaim},
    storage::v1::StorageClass,
};
use serde_json::json;

use crate::{
    cluster::{ClusterView, Objects, pod::PodFacts},
    driver::{
        NodeStatus,
        mock::{MockDriver, PROVISIONER, Topology, TopologyNode, TopologyVolume},
    },
    extender::{Candidate, Inputs},
};

/// Namespace of every fixture object.
pub const NS: &str = "default";

/// A driver node with defaults (Online, name = hostname = id, IP 10.0.<n>).
pub fn dnode(id: &str) -> TopologyNode {
    TopologyNode { id: id.into(), ..TopologyNode::default() }
}

/// Builder methods on topology nodes.
pub trait DriverNodeExt {
    /// Sets the status.
    fn status(self, s: NodeStatus) -> Self;
    /// Sets region/zone/rack ("" leaves a level unset).
    fn at(self, region: &str, zone: &str, rack: &str) -> Self;
    /// Sets the Kubernetes name the driver reports.
    fn named(self, name: &str) -> Self;
    /// Sets host name and IPs.
    fn host(self, hostname: &str, ips: &[&str]) -> Self;
}

impl DriverNodeExt for TopologyNode {
    fn status(mut self, s: NodeStatus) -> Self {
        self.status = s;
        self
    }
    fn at(mut self, region: &str, zone: &str, rack: &str) -> Self {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        (self.region, self.zone, self.rack) = (opt(region), opt(zone), opt(rack));
        self
    }
    fn named(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }
    fn host(mut self, hostname: &str, ips: &[&str]) -> Self {
        self.hostname = Some(hostname.into());
        self.ips = ips.iter().map(|s| s.to_string()).collect();
        self
    }
}

/// A pod in [`NS`].
pub fn pod(name: &str) -> PodFacts {
    let mut p = PodFacts::default();
    p.metadata.name = name.into();
    p.metadata.namespace = NS.into();
    p
}

/// Builder methods on pods.
pub trait PodExt {
    /// Adds a PVC volume.
    fn with_pvc(self, claim: &str) -> Self;
    /// Adds a generic ephemeral volume whose claim template names `class` (`None`: the default).
    fn with_ephemeral(self, volume: &str, class: Option<&str>) -> Self;
    /// Adds an annotation.
    fn annotated(self, k: &str, v: &str) -> Self;
}

impl PodExt for PodFacts {
    fn with_pvc(mut self, claim: &str) -> Self {
        let v = json!({"name": format!("vol-{claim}"), "persistentVolumeClaim": {"claimName": claim}});
        self.spec.volumes.push(serde_json::from_value(v).expect("volume fixture"));
        self
    }
    fn with_ephemeral(mut self, volume: &str, class: Option<&str>) -> Self {
        let v = json!({"name": volume, "ephemeral": {"volumeClaimTemplate": {"spec": {"storageClassName": class}}}});
        self.spec.volumes.push(serde_json::from_value(v).expect("volume fixture"));
        self
    }
    fn annotated(mut self, k: &str, v: &str) -> Self {
        self.metadata.annotations.insert(k.into(), v.into());
        self
    }
}

/// Kubernetes objects and mock state under construction.
#[derive(Default)]
pub struct World {
    objects: Objects,
    topology: Topology,
}

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("fixture object")
}

impl World {
    /// Classes `mock-sc` (Immediate), `mock-wffc` (WaitForFirstConsumer) and `other-sc`.
    pub fn new() -> Self {
        let mut w = Self::default();
        for (name, prov, mode) in [
            ("mock-sc", PROVISIONER, "Immediate"),
            ("mock-wffc", PROVISIONER, "WaitForFirstConsumer"),
            ("other-sc", "other.csi.example.com", "Immediate"),
        ] {
            w.objects.storage_classes.push(obj::<StorageClass>(
                json!({"metadata": {"name": name}, "provisioner": prov, "volumeBindingMode": mode}),
            ));
        }
        w
    }

    /// Driver nodes, each also a Kubernetes node of the same name with InternalIP/Hostname.
    pub fn driver_nodes(mut self, nodes: impl IntoIterator<Item = TopologyNode>) -> Self {
        for n in nodes {
            let name = n.name.clone().unwrap_or_else(|| n.id.clone());
            if !self.objects.nodes.iter().any(|k| k.metadata.name.as_deref() == Some(name.as_str())) {
                self = self.k8s_node(&name, &[]);
            }
            self.topology.nodes.push(n);
        }
        self
    }

    /// A Kubernetes node with a Hostname address equal to its name plus the given InternalIPs.
    pub fn k8s_node(mut self, name: &str, ips: &[&str]) -> Self {
        let mut addrs = vec![json!({"type": "Hostname", "address": name})];
        addrs.extend(ips.iter().map(|ip| json!({"type": "InternalIP", "address": ip})));
        self.objects.nodes.push(obj::<Node>(json!({"metadata": {"name": name}, "status": {"addresses": addrs}})));
        self
    }

    /// Marks `class` as the cluster's default StorageClass.
    pub fn default_class(mut self, class: &str) -> Self {
        let c = self.objects.storage_classes.iter_mut().find(|c| c.metadata.name.as_deref() == Some(class));
        let c = c.expect("class");
        let annotations = c.metadata.annotations.get_or_insert_with(BTreeMap::new);
        annotations.insert("storageclass.kubernetes.io/is-default-class".into(), "true".into());
        self
    }

    /// Annotates a Kubernetes node.
    pub fn node_annotation(mut self, node: &str, k: &str, v: &str) -> Self {
        let n = self.objects.nodes.iter_mut().find(|n| n.metadata.name.as_deref() == Some(node)).expect("node");
        n.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(k.into(), v.into());
        self
    }

    /// A bound mock claim `claim` on PV `pv-<claim>` with these replicas.
    pub fn volume(self, claim: &str, replicas: &[&str]) -> Self {
        self.volume_with(claim, replicas, |_| {})
    }

    /// Like [`Self::volume`], letting the test adjust the driver volume.
    pub fn volume_with(mut self, claim: &str, replicas: &[&str], f: impl FnOnce(&mut TopologyVolume)) -> Self {
        let pv = format!("pv-{claim}");
        let mut v = TopologyVolume {
            id: pv.clone(),
            replicas: replicas.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        f(&mut v);
        self.topology.volumes.push(v);
        self.objects.pvs.push(obj::<PersistentVolume>(json!({
            "metadata": {"name": pv},
            "spec": {"storageClassName": "mock-sc", "csi": {"driver": PROVISIONER, "volumeHandle": pv}}
        })));
        self.claim(claim, "mock-sc", Some(&pv))
    }

    /// A claim of `class`; bound to `pv` when given, else Pending.
    pub fn claim(mut self, claim: &str, class: &str, pv: Option<&str>) -> Self {
        let phase = if pv.is_some() { "Bound" } else { "Pending" };
        self.objects.pvcs.push(obj::<PersistentVolumeClaim>(json!({
            "metadata": {"name": claim, "namespace": NS},
            "spec": {"storageClassName": class, "volumeName": pv},
            "status": {"phase": phase}
        })));
        self
    }

    /// Annotates a claim.
    pub fn claim_annotation(mut self, claim: &str, k: &str, v: &str) -> Self {
        let c = self.objects.pvcs.iter_mut().find(|c| c.metadata.name.as_deref() == Some(claim)).expect("claim");
        c.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(k.into(), v.into());
        self
    }

    /// The cluster view and mock driver holding this world.
    pub fn build(self) -> (ClusterView, MockDriver) {
        (self.objects.into_view(), MockDriver::from_topology(self.topology))
    }
}

/// A built world, ready to answer extender decisions for node names.
pub struct Built {
    /// Cached objects.
    pub cluster: ClusterView,
    /// Mock driver.
    pub driver: MockDriver,
}

impl From<World> for Built {
    fn from(w: World) -> Self {
        let (cluster, driver) = w.build();
        Self { cluster, driver }
    }
}

impl Built {
    /// Runs `f` with decision inputs and candidates for `names` (addresses from the cache).
    pub fn with_candidates<R>(
        &self,
        pod: &PodFacts,
        names: &[&str],
        f: impl FnOnce(&Inputs<'_>, &[Candidate<'_>]) -> R,
    ) -> R {
        let cached: Vec<_> = names.iter().map(|n| self.cluster.node(n)).collect();
        let candidates: Vec<Candidate<'_>> =
            names.iter().zip(&cached).map(|(name, node)| Candidate::from_cache(name, node.as_deref())).collect();
        let inputs = Inputs { pod, cluster: &self.cluster, driver: &self.driver, deadline: Default::default() };
        f(&inputs, &candidates)
    }
}
