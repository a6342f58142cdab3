//! Support for the per-rule placement proofs (`placement_rules::`): node groups a test's pods are
//! confined to, cordoning, pods built from a few knobs, and reading why a pod stays Pending.
//!
//! Every test's nodes carry `stork-e2e/group=<group>` and its pods select that label, so nodes
//! other tests left behind never compete for a pod. This also makes the suite realistic: a real
//! cluster always has nodes some plugin rejects (tainted control plane, a nodeSelector), and
//! whether kube-scheduler retries a pod depends on which plugins rejected which nodes.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use crate::{objects::create, wait_for};

/// The label a test's nodes carry and its pods select.
pub const GROUP_LABEL: &str = "stork-e2e/group";

/// A KWOK node of a test's group: name, IP and extra labels (zone, region, rack …).
#[derive(Debug, Clone)]
pub struct GroupNode {
    /// Node name (also its driver storage id in the mock topology).
    pub name: String,
    /// InternalIP.
    pub ip: String,
    /// Labels besides the group label and hostname.
    pub labels: Value,
    /// `status.allocatable` and `.capacity`, when the test needs a known size (KWOK's default is huge).
    pub size: Option<Value>,
}

impl GroupNode {
    /// A node with no extra labels.
    pub fn new(name: &str, ip: &str) -> Self {
        Self { name: name.into(), ip: ip.into(), labels: json!({}), size: None }
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels[key] = json!(value);
        self
    }

    /// Gives the node 4 CPUs, 8 GiB and 110 pods, so resource scores differ visibly.
    pub fn small(mut self) -> Self {
        self.size = Some(json!({"cpu": "4", "memory": "8Gi", "pods": "110"}));
        self
    }
}

/// Creates the group's KWOK nodes and waits until the scheduler may use them.
pub async fn group_nodes(client: &Client, group: &str, nodes: &[GroupNode]) {
    let api: Api<Node> = Api::all(client.clone());
    for n in nodes {
        let mut labels = json!({"kubernetes.io/hostname": n.name, "kubernetes.io/os": "linux", "type": "kwok"});
        labels[GROUP_LABEL] = json!(group);
        for (k, v) in n.labels.as_object().into_iter().flatten() {
            labels[k] = v.clone();
        }
        let mut status =
            json!({"addresses": [{"type": "InternalIP", "address": n.ip}, {"type": "Hostname", "address": n.name}]});
        if let Some(size) = &n.size {
            status["allocatable"] = size.clone();
            status["capacity"] = size.clone();
        }
        let node = json!({
            "metadata": {"name": n.name, "annotations": {"kwok.x-k8s.io/node": "fake"}, "labels": labels},
            "status": status
        });
        create(&api, node).await;
    }
    let names: Vec<(&str, &str)> = nodes.iter().map(|n| (n.name.as_str(), n.ip.as_str())).collect();
    crate::kwok_nodes(client, &names).await.expect("group nodes ready");
}

/// Cordons (`true`) or uncordons a node, as `kubectl cordon` does.
pub async fn cordon(client: &Client, node: &str, cordoned: bool) {
    let patch = json!({"spec": {"unschedulable": cordoned}});
    Api::<Node>::all(client.clone())
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("cordon patch");
}

/// Sets (`Some`) or removes an annotation on a node.
pub async fn annotate_node(client: &Client, node: &str, key: &str, value: Option<&str>) {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    Api::<Node>::all(client.clone())
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("node annotation patch");
}

/// A pod of `group` (it selects the group's nodes), built up and then created.
#[derive(Debug, Clone)]
pub struct GroupPod {
    body: Value,
}

impl GroupPod {
    /// A pod named `name` on the `stork` scheduler, confined to `group`'s nodes.
    pub fn new(group: &str, name: &str) -> Self {
        let body = json!({
            "metadata": {"name": name, "annotations": {}},
            "spec": {
                "schedulerName": "stork",
                "nodeSelector": {GROUP_LABEL: group},
                "containers": [{"name": "app", "image": "fake"}],
                "volumes": []
            }
        });
        Self { body }
    }

    /// Uses claim `claim`.
    pub fn claim(mut self, claim: &str) -> Self {
        let v = json!({"name": claim, "persistentVolumeClaim": {"claimName": claim}});
        self.body["spec"]["volumes"].as_array_mut().expect("volumes").push(v);
        self
    }

    /// Adds an annotation.
    pub fn annotate(mut self, key: &str, value: &str) -> Self {
        self.body["metadata"]["annotations"][key] = json!(value);
        self
    }

    /// Leaves the scheduler unset, so the webhook decides.
    pub fn default_scheduler(mut self) -> Self {
        self.body["spec"].as_object_mut().expect("spec").remove("schedulerName");
        self
    }

    /// Adds a generic ephemeral volume whose claim template names `class`.
    pub fn ephemeral(mut self, volume: &str, class: &str) -> Self {
        let v = json!({"name": volume, "ephemeral": {"volumeClaimTemplate": {"spec": {
            "storageClassName": class, "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}
        }}}});
        self.body["spec"]["volumes"].as_array_mut().expect("volumes").push(v);
        self
    }

    /// Sets a field of the spec.
    pub fn spec(mut self, key: &str, value: Value) -> Self {
        self.body["spec"][key] = value;
        self
    }

    /// The pod as JSON (for templates).
    pub fn json(&self) -> &Value {
        &self.body
    }

    /// Creates the pod in `ns`.
    pub async fn create(self, client: &Client, ns: &str) -> Api<Pod> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        create(&pods, self.body).await;
        pods
    }
}

/// A pod bound straight to `node` (no scheduler) requesting `cpu`, to make the node look busy
/// to kube-scheduler's resource scores.
pub async fn filler(client: &Client, ns: &str, node: &str, cpu: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = json!({
        "metadata": {"name": format!("filler-{node}")},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "fake",
                 "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]}
    });
    pods.create(&PostParams::default(), &serde_json::from_value(pod).expect("filler pod")).await.expect("filler");
}

/// Waits for a `FailedScheduling` event on pod `name` whose message contains `needle`, and
/// returns it; fails with the messages seen so far.
pub async fn failed_scheduling(client: &Client, ns: &str, name: &str, needle: &str, timeout: Duration) -> String {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let selector = format!("involvedObject.name={name}");
    wait_for(&format!("a FailedScheduling event on {name} containing {needle:?}"), timeout, || async {
        let list = events.list(&ListParams::default().fields(&selector)).await.map_err(|e| vec![e.to_string()])?;
        let msgs: Vec<String> = list
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("FailedScheduling"))
            .filter_map(|e| e.message)
            .collect();
        msgs.iter().find(|m| m.contains(needle)).cloned().ok_or(msgs)
    })
    .await
}

/// The node pod `name` is bound to, if any.
pub async fn node_of(pods: &Api<Pod>, name: &str) -> Option<String> {
    pods.get(name).await.ok().and_then(|p| p.spec.and_then(|s| s.node_name))
}

/// Waits until the harness stork serves the topology as last written: its
/// `stork_driver_nodes{status}` counts equal the file's. A test that changes a driver status and
/// then creates a pod must know stork saw the change first (it reloads the file on its own time).
pub async fn topology_served(cluster: &crate::Cluster) {
    let mut want = std::collections::BTreeMap::<String, i64>::new();
    for node in cluster.topology()["nodes"].as_array().into_iter().flatten() {
        *want.entry(node["status"].as_str().unwrap_or("Online").to_string()).or_default() += 1;
    }
    let port = cluster.info.stork_admin_port;
    wait_for("stork serving the topology as written", Duration::from_secs(30), || async {
        let text = tokio::task::spawn_blocking(move || crate::http_get_full(port, "/metrics"))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let seen: std::collections::BTreeMap<String, i64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("stork_driver_nodes{status=\""))
            .filter_map(|l| l.split_once("\"} "))
            .filter_map(|(status, n)| Some((status.to_string(), n.trim().parse().ok()?)))
            .filter(|(_, n)| *n > 0)
            .collect();
        if seen == want { Ok(()) } else { Err(format!("stork sees {seen:?}, the file says {want:?}")) }
    })
    .await
}

/// Cuts a KWOK node off the way a lost kubelet is cut off. Its pods and the node are annotated
/// `stork-e2e/partitioned`, which the harness's KWOK stages skip (build.sh): no more status
/// heartbeats, and nobody confirms a deletion of its pods. Its Lease in `kube-node-lease` is
/// handed to another holder for an hour, and KWOK renews only leases it holds. The node
/// lifecycle controller then marks the node unreachable after its grace period.
pub async fn partition(client: &Client, node: &str) {
    use k8s_openapi::api::coordination::v1::Lease;
    let mark = json!({"metadata": {"annotations": {"stork-e2e/partitioned": "true"}}});
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = ListParams::default().fields(&format!("spec.nodeName={node}"));
    for p in pods.list(&on_node).await.expect("list the node's pods") {
        let (name, ns) = (p.metadata.name.expect("name"), p.metadata.namespace.expect("namespace"));
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&mark)).await.expect("mark the pod partitioned");
    }
    let nodes: Api<Node> = Api::all(client.clone());
    nodes.patch(node, &PatchParams::default(), &Patch::Merge(&mark)).await.expect("mark the node partitioned");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let take = json!({"spec": {"holderIdentity": "stork-e2e-partition", "leaseDurationSeconds": 3600}});
    leases.patch(node, &PatchParams::default(), &Patch::Merge(&take)).await.expect("take the node's lease");
}
