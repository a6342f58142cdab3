//! Driver nodes from Kubernetes objects, pure: which Nodes serve a configured CSI driver (their
//! CSINode lists it), how healthy the driver is there (the Node's readiness and the node-plugin
//! pod's state), and where the node sits (rack/zone/region labels, DESIGN.md deviation 5).

use std::{borrow::Borrow, collections::HashMap};

use k8s_openapi::api::{
    core::v1::{Node, Pod},
    storage::v1::CSINode,
};

use super::config::{CsiConfig, FALLBACK_RACK_LABEL};
use crate::driver::{DriverNode, NodeStatus};

/// Zone labels, preferred first.
pub const ZONE_LABELS: [&str; 2] = ["topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone"];
/// Region labels, preferred first.
pub const REGION_LABELS: [&str; 2] = ["topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region"];

/// Why a node has the status it has, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Node Ready and the node plugin (if watched) Running and Ready.
    Healthy,
    /// The Node's Ready condition is False, Unknown or missing.
    NodeNotReady,
    /// No node-plugin pod on the node.
    PluginAbsent,
    /// A node-plugin container is in CrashLoopBackOff, errored or terminated.
    PluginCrashing,
    /// The node-plugin pod is not in phase Running.
    PluginNotRunning,
    /// The node-plugin pod runs but is not Ready.
    PluginNotReady,
    /// A node-plugin pod is on the node but the driver is not (or no longer) in its CSINode:
    /// the kubelet dropped the registration, so volumes cannot be staged there.
    NotRegistered,
}

impl Reason {
    /// Short text for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::NodeNotReady => "node not ready",
            Self::PluginAbsent => "node-plugin pod absent",
            Self::PluginCrashing => "node-plugin pod crash-looping",
            Self::PluginNotRunning => "node-plugin pod not running",
            Self::PluginNotReady => "node-plugin pod not ready",
            Self::NotRegistered => "driver missing from the node's CSINode",
        }
    }

    fn status(self) -> NodeStatus {
        match self {
            Self::Healthy => NodeStatus::Online,
            Self::PluginNotReady => NodeStatus::StorageDown,
            _ => NodeStatus::Offline,
        }
    }
}

/// One driver node and why it has its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessed {
    /// The node as the inventory holds it.
    pub node: DriverNode,
    /// Why it has that status.
    pub reason: Reason,
}

/// The driver nodes, sorted by name. `plugin_pods[i]` are the pods `config.node_plugins[i]`
/// selects (namespace and labels already applied); pods beyond the selectors are ignored.
/// A Node whose CSINode lists no configured driver is not a driver node, unless a selected
/// node-plugin pod runs there: then the driver is missing from its CSINode and the node is
/// Offline. With several drivers, a node takes the best status among those it serves.
pub fn assess<N, C, P>(config: &CsiConfig, nodes: &[N], csinodes: &[C], plugin_pods: &[Vec<P>]) -> Vec<Assessed>
where
    N: Borrow<Node>,
    C: Borrow<CSINode>,
    P: Borrow<Pod>,
{
    let registered: HashMap<&str, &CSINode> =
        csinodes.iter().map(Borrow::borrow).filter_map(|c: &CSINode| Some((c.metadata.name.as_deref()?, c))).collect();
    let by_node: Vec<HashMap<&str, Vec<&Pod>>> = plugin_pods.iter().map(|pods| pods_by_node(pods)).collect();
    let mut out: Vec<Assessed> = nodes
        .iter()
        .map(Borrow::borrow)
        .filter_map(|node: &Node| {
            let name = node.metadata.name.as_deref()?;
            let csinode = registered.get(name);
            let reason = config
                .pairs()
                .enumerate()
                .filter_map(|(i, (driver, selector))| {
                    let pods =
                        selector.map(|_| by_node.get(i).and_then(|m| m.get(name)).map_or(&[][..], Vec::as_slice));
                    match (csinode.is_some_and(|c| lists_driver(c, driver)), pods) {
                        (true, pods) => Some(reason(node, pods)),
                        (false, Some(pods)) if !pods.is_empty() => Some(Reason::NotRegistered),
                        (false, _) => None,
                    }
                })
                .min_by_key(|r| r.status().rank())?;
            Some(Assessed { node: describe(config, node, reason.status()), reason })
        })
        .collect();
    out.sort_by(|a, b| a.node.name.cmp(&b.node.name));
    out
}

fn pods_by_node<P: Borrow<Pod>>(pods: &[P]) -> HashMap<&str, Vec<&Pod>> {
    let mut map: HashMap<&str, Vec<&Pod>> = HashMap::new();
    for pod in pods.iter().map(Borrow::borrow) {
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty()) {
            map.entry(node).or_default().push(pod);
        }
    }
    map
}

/// Whether a CSINode lists the driver (`spec.drivers[].name`).
pub fn lists_driver(csinode: &CSINode, driver: &str) -> bool {
    csinode.spec.drivers.iter().any(|d| d.name == driver)
}

/// Health of one driver on one node that registered it. `plugin_pods` is `None` when no
/// node-plugin selector is configured for the driver, else the selected pods on this node
/// (during a rollout there may be two: the best one counts).
pub fn reason(node: &Node, plugin_pods: Option<&[&Pod]>) -> Reason {
    if !node_ready(node) {
        return Reason::NodeNotReady;
    }
    let Some(pods) = plugin_pods else {
        return Reason::Healthy;
    };
    pods.iter().map(|p| pod_reason(p)).min_by_key(|r| r.status().rank()).unwrap_or(Reason::PluginAbsent)
}

fn pod_reason(pod: &Pod) -> Reason {
    let status = pod.status.as_ref();
    if status.and_then(|s| s.phase.as_deref()) != Some("Running") {
        return Reason::PluginNotRunning;
    }
    let crashing = status.and_then(|s| s.container_statuses.as_ref()).is_some_and(|cs| {
        cs.iter().filter_map(|c| c.state.as_ref()).any(|state| {
            state.terminated.is_some()
                || state.waiting.as_ref().is_some_and(|w| {
                    matches!(w.reason.as_deref(), Some("CrashLoopBackOff" | "Error" | "RunContainerError"))
                })
        })
    });
    if crashing {
        return Reason::PluginCrashing;
    }
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    if ready { Reason::Healthy } else { Reason::PluginNotReady }
}

/// The Node's `Ready` condition is `True` (False, Unknown and missing all mean not ready).
pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The driver node for a Kubernetes node: id = name = the node name, host name from the
/// `Hostname` address, IPs from the `InternalIP` addresses, failure domains from labels.
pub fn describe(config: &CsiConfig, node: &Node, status: NodeStatus) -> DriverNode {
    let name = node.metadata.name.clone().unwrap_or_default();
    let addresses = node.status.as_ref().and_then(|s| s.addresses.as_deref()).unwrap_or_default();
    let hostname = addresses.iter().find(|a| a.type_ == "Hostname" && !a.address.is_empty()).map(|a| &a.address);
    let ips = addresses.iter().filter(|a| a.type_ == "InternalIP" && !a.address.is_empty());
    DriverNode {
        hostname: hostname.unwrap_or(&name).to_lowercase(),
        ips: ips.map(|a| a.address.clone()).collect(),
        rack: label(node, &[config.rack_label.as_str(), FALLBACK_RACK_LABEL]),
        zone: label(node, &ZONE_LABELS),
        region: label(node, &REGION_LABELS),
        id: name.clone(),
        name,
        status,
    }
}

/// The first non-empty value among `keys`, else "".
fn label(node: &Node, keys: &[&str]) -> String {
    let labels = node.metadata.labels.as_ref();
    keys.iter().find_map(|k| labels.and_then(|l| l.get(*k)).filter(|v| !v.is_empty())).cloned().unwrap_or_default()
}

/// A node whose driver status changed between two rebuilds; `None` means "not a driver node".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Node name.
    pub node: String,
    /// Status before.
    pub from: Option<NodeStatus>,
    /// Status now.
    pub to: Option<NodeStatus>,
    /// Why it has its new status (`None` when it left the inventory).
    pub reason: Option<Reason>,
}

/// Status changes from `previous` to `next` (both as [`assess`] returns them), by node name.
pub fn transitions(previous: &[Assessed], next: &[Assessed]) -> Vec<Transition> {
    let before: HashMap<&str, NodeStatus> = previous.iter().map(|a| (a.node.name.as_str(), a.node.status)).collect();
    let now: HashMap<&str, NodeStatus> = next.iter().map(|a| (a.node.name.as_str(), a.node.status)).collect();
    let changed = next.iter().filter(|a| before.get(a.node.name.as_str()) != Some(&a.node.status)).map(|a| {
        let from = before.get(a.node.name.as_str()).copied();
        Transition { node: a.node.name.clone(), from, to: Some(a.node.status), reason: Some(a.reason) }
    });
    let gone = previous.iter().filter(|a| !now.contains_key(a.node.name.as_str())).map(|a| Transition {
        node: a.node.name.clone(),
        from: Some(a.node.status),
        to: None,
        reason: None,
    });
    changed.chain(gone).collect()
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
