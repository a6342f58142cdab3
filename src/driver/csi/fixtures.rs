//! Builder fixtures for the csi driver's tests: Nodes, CSINodes, node-plugin pods and PVs.

use k8s_openapi::api::{
    core::v1::{Node, PersistentVolume, Pod},
    storage::v1::CSINode,
};
use serde_json::{Value, json};

/// The CSI driver name most tests configure.
pub const DRIVER: &str = "hostpath.csi.k8s.io";
/// Namespace of the node-plugin pods.
pub const PLUGIN_NS: &str = "csi";

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("fixture object")
}

/// A Ready node with a `Hostname` address equal to its name.
pub fn node(name: &str) -> Node {
    obj(json!({
        "metadata": {"name": name},
        "status": {
            "addresses": [{"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    }))
}

/// Builder methods on nodes.
pub trait NodeExt {
    /// Sets the Ready condition's status (`True`, `False`, `Unknown`).
    fn ready(self, status: &str) -> Self;
    /// Removes every condition.
    fn without_conditions(self) -> Self;
    /// Adds a label.
    fn labeled(self, k: &str, v: &str) -> Self;
    /// Replaces the addresses with (type, address) pairs.
    fn addresses(self, addrs: &[(&str, &str)]) -> Self;
}

impl NodeExt for Node {
    fn ready(mut self, status: &str) -> Self {
        for c in self.status.as_mut().and_then(|s| s.conditions.as_mut()).into_iter().flatten() {
            c.status = status.into();
        }
        self
    }
    fn without_conditions(mut self) -> Self {
        self.status.as_mut().expect("node status").conditions = None;
        self
    }
    fn labeled(mut self, k: &str, v: &str) -> Self {
        self.metadata.labels.get_or_insert_with(Default::default).insert(k.into(), v.into());
        self
    }
    fn addresses(mut self, addrs: &[(&str, &str)]) -> Self {
        let list: Vec<Value> = addrs.iter().map(|(t, a)| json!({"type": t, "address": a})).collect();
        self.status.as_mut().expect("node status").addresses = Some(obj(Value::Array(list)));
        self
    }
}

/// A CSINode for `node` listing these drivers.
pub fn csinode(node: &str, drivers: &[&str]) -> CSINode {
    let drivers: Vec<Value> = drivers.iter().map(|d| json!({"name": d, "nodeID": node})).collect();
    obj(json!({"metadata": {"name": node}, "spec": {"drivers": drivers}}))
}

/// A Running, Ready node-plugin pod in [`PLUGIN_NS`] labelled `app=csi-node` on `node`.
pub fn plugin_pod(name: &str, node: &str) -> Pod {
    obj(json!({
        "metadata": {"name": name, "namespace": PLUGIN_NS, "labels": {"app": "csi-node"}},
        "spec": {"nodeName": node, "containers": [{"name": "plugin", "image": "csi:1"}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{
                "name": "plugin", "image": "csi:1", "imageID": "sha", "ready": true, "restartCount": 0,
                "state": {"running": {}}
            }]
        }
    }))
}

/// Builder methods on node-plugin pods.
pub trait PluginPodExt {
    /// Sets the phase.
    fn phase(self, phase: &str) -> Self;
    /// Ready condition False, container not ready.
    fn unready(self) -> Self;
    /// The container waits with this reason (and is not ready).
    fn waiting(self, reason: &str) -> Self;
    /// The container terminated with this reason (and is not ready).
    fn terminated(self, reason: &str) -> Self;
}

impl PluginPodExt for Pod {
    fn phase(mut self, phase: &str) -> Self {
        self.status.as_mut().expect("pod status").phase = Some(phase.into());
        self
    }
    fn unready(mut self) -> Self {
        let status = self.status.as_mut().expect("pod status");
        status.conditions.iter_mut().flatten().for_each(|c| c.status = "False".into());
        status.container_statuses.iter_mut().flatten().for_each(|c| c.ready = false);
        self
    }
    fn waiting(self, reason: &str) -> Self {
        self.with_state(json!({"waiting": {"reason": reason, "message": "back-off restarting"}}))
    }
    fn terminated(self, reason: &str) -> Self {
        self.with_state(json!({"terminated": {"reason": reason, "exitCode": 1}}))
    }
}

trait WithState {
    fn with_state(self, state: Value) -> Self;
}

impl WithState for Pod {
    fn with_state(self, state: Value) -> Self {
        let mut pod = self.unready();
        for c in pod.status.as_mut().and_then(|s| s.container_statuses.as_mut()).into_iter().flatten() {
            c.state = Some(obj(state.clone()));
        }
        pod
    }
}

/// A CSI PV of `driver` with optional annotations and node-affinity terms (each term a list of
/// (key, operator, values) match expressions).
pub fn pv(
    name: &str,
    driver: &str,
    annotations: &[(&str, &str)],
    terms: &[&[(&str, &str, &[&str])]],
) -> PersistentVolume {
    let annotations: serde_json::Map<String, Value> =
        annotations.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let terms: Vec<Value> = terms
        .iter()
        .map(|exprs| {
            let exprs: Vec<Value> =
                exprs.iter().map(|(k, op, vs)| json!({"key": k, "operator": op, "values": vs})).collect();
            json!({"matchExpressions": exprs})
        })
        .collect();
    let mut spec = json!({"csi": {"driver": driver, "volumeHandle": name}});
    if !terms.is_empty() {
        spec["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": terms}});
    }
    obj(json!({"metadata": {"name": name, "annotations": annotations}, "spec": spec}))
}
