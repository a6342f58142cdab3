//! Reduces cached Pods and Nodes to what the planner reads (sync, cache reads only).

use k8s_openapi::api::core::v1::{Node, Pod};

use super::plan::{NodeAddresses, PodInfo};
use crate::{
    cluster::{ClusterView, node_addresses, pod::PodFacts},
    driver::{self, Driver},
};

/// The taint the node lifecycle controller puts on a node whose kubelet stopped reporting.
const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// The planner's view of a pod; `None` for pods not bound to a node or already finished.
pub fn pod_info(driver: &dyn Driver, cluster: &ClusterView, pod: &Pod) -> Option<PodInfo> {
    let node = pod.spec.as_ref()?.node_name.clone().filter(|n| !n.is_empty())?;
    let status = pod.status.as_ref();
    if matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")) {
        return None;
    }
    let facts = PodFacts::of(pod);
    let csi = driver.is_csi_pod(&facts.metadata.name);
    // An unresolvable pod is not known to use the driver: never delete on a guess.
    let uses_driver = driver::pod_volumes(driver, cluster, &facts).is_ok_and(|v| !v.is_empty());
    let lost = status.and_then(|s| s.reason.as_deref()) == Some("NodeLost");
    let unreachable = pod.metadata.deletion_timestamp.is_some()
        && cluster.node(&node).is_some_and(|n| has_unreachable_no_execute(&n));
    Some(PodInfo {
        namespace: facts.metadata.namespace,
        name: facts.metadata.name,
        uid: facts.metadata.uid,
        node,
        csi,
        uses_driver,
        unknown_state: lost || unreachable,
    })
}

fn has_unreachable_no_execute(node: &Node) -> bool {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref());
    taints.is_some_and(|t| t.iter().any(|t| t.key == UNREACHABLE_TAINT && t.effect == "NoExecute"))
}

/// Addresses of the nodes the pods run on, from the cache.
pub fn node_addresses_of(cluster: &ClusterView, pods: &[PodInfo]) -> NodeAddresses {
    let mut out = NodeAddresses::new();
    for p in pods {
        if out.contains_key(&p.node) {
            continue;
        }
        let addrs = cluster.node(&p.node).map_or_else(Vec::new, |n| {
            node_addresses(&n).into_iter().map(|(t, a)| (t.to_string(), a.to_string())).collect()
        });
        out.insert(p.node.clone(), addrs);
    }
    out
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeSpec, PodSpec, PodStatus, Taint};

    use super::*;
    use crate::driver::mock::{MockDriver, Topology};

    fn pod(name: &str, node: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some("ns".into());
        p.metadata.uid = Some(format!("uid-{name}"));
        p.spec = Some(PodSpec { node_name: Some(node.into()), ..PodSpec::default() });
        p
    }

    #[test]
    fn unbound_and_finished_pods_are_ignored_and_lost_pods_are_unknown() {
        let driver = MockDriver::from_topology(Topology::default());
        let (cluster, _w) = ClusterView::new();
        assert!(pod_info(&driver, &cluster, &pod("a", "")).is_none());
        let mut done = pod("a", "n1");
        done.status = Some(PodStatus { phase: Some("Succeeded".into()), ..PodStatus::default() });
        assert!(pod_info(&driver, &cluster, &done).is_none());
        let mut lost = pod("a", "n1");
        lost.status = Some(PodStatus { reason: Some("NodeLost".into()), ..PodStatus::default() });
        let info = pod_info(&driver, &cluster, &lost).unwrap();
        assert!(info.unknown_state && !info.uses_driver);
    }

    #[test]
    fn only_the_unreachable_no_execute_taint_marks_nodes_unreachable() {
        let mut node = Node::default();
        let taint = |effect: &str| Taint { key: UNREACHABLE_TAINT.into(), effect: effect.into(), ..Taint::default() };
        node.spec = Some(NodeSpec { taints: Some(vec![taint("NoSchedule")]), ..NodeSpec::default() });
        assert!(!has_unreachable_no_execute(&node));
        node.spec = Some(NodeSpec { taints: Some(vec![taint("NoExecute")]), ..NodeSpec::default() });
        assert!(has_unreachable_no_execute(&node));
    }
}
