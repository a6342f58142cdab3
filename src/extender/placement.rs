//! Stork's hyperconvergence gauges: for each running pod with driver volumes, whether it landed
//! on the node with the most replicas of its volumes, on one with some, or on one with none.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::api::core::v1::Pod;
use tokio_util::sync::CancellationToken;

use crate::{
    cluster::{ClusterView, node_addresses, pod::PodFacts},
    driver::{self, Driver, NodeIdentity, NodeInventory, PodVolume},
    metrics::{Metrics, PodLabels},
};

/// Where a running pod sits relative to its volumes' replicas (the order of the gauge families).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On a node with the most replicas.
    Hyperconverged,
    /// On a node with some replicas, not the most.
    SemiHyperconverged,
    /// On a node with no replica.
    NonHyperconverged,
}

/// Classifies a pod on `node` (its driver storage id, if the node is a driver node).
pub fn classify(storage_id: Option<&str>, volumes: &[PodVolume]) -> Placement {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for v in volumes {
        for r in &v.volume.replicas {
            *counts.entry(r.as_str()).or_default() += 1;
        }
    }
    let max = counts.values().copied().max().unwrap_or(0);
    match storage_id.and_then(|id| counts.get(id)) {
        Some(&c) if c == max => Placement::Hyperconverged,
        Some(_) => Placement::SemiHyperconverged,
        None => Placement::NonHyperconverged,
    }
}

/// The storage id of the driver node that is Kubernetes node `name`.
fn storage_id<'a>(inventory: &'a NodeInventory, cluster: &ClusterView, name: &str) -> Option<&'a str> {
    let node = cluster.node(name);
    let addresses = node.as_deref().map(node_addresses).unwrap_or_default();
    let mut scratch = Vec::new();
    inventory
        .best_match(NodeIdentity { name, addresses: &addresses }, &mut scratch)
        .map(|i| inventory.get(i).id.as_str())
}

/// Where a Ready, scheduled pod with bound driver volumes sits; `None` for any other pod.
fn placement_of(
    pod: &Pod,
    facts: &PodFacts,
    inventory: &NodeInventory,
    cluster: &ClusterView,
    driver: &dyn Driver,
) -> Option<Placement> {
    if !is_ready(pod) || facts.spec.node_name.is_empty() {
        return None;
    }
    let vols = driver::pod_volumes(driver, cluster, facts).ok().filter(|v| !v.bound.is_empty())?;
    Some(classify(storage_id(inventory, cluster, &facts.spec.node_name), &vols.bound))
}

fn is_ready(pod: &Pod) -> bool {
    let conds = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conds.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The least time between two refreshes of the gauges: each one classifies every cached pod, and
/// Prometheus scrapes far less often than pods change in a large cluster.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Keeps the gauges current from the cluster's Pod cache until `cancel` fires: after a Pod
/// change, at most once per [`REFRESH_INTERVAL`].
pub async fn run(cluster: ClusterView, driver: Arc<dyn Driver>, metrics: Arc<Metrics>, cancel: CancellationToken) {
    let mut changes = cluster.pod_changes();
    let mut shown = HashSet::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
        shown = refresh(&cluster, driver.as_ref(), &metrics, shown);
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(REFRESH_INTERVAL) => {}
        }
    }
}

/// Sets the gauges of every running pod with driver volumes from the cache; removes those of
/// pods deleted since `shown` (the pods that had gauges). Returns the pods that now have gauges.
/// A pod that is not Ready keeps its last gauges.
pub fn refresh(
    cluster: &ClusterView,
    driver: &dyn Driver,
    metrics: &Metrics,
    shown: HashSet<PodLabels>,
) -> HashSet<PodLabels> {
    let m = &metrics.placement;
    let families = [&m.hyperconverged, &m.semi_hyperconverged, &m.non_hyperconverged];
    let inventory = driver.nodes().ok();
    let mut now = HashSet::new();
    for pod in cluster.pods().iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let facts = PodFacts::of(pod);
        let labels = PodLabels { pod: facts.metadata.name.clone(), namespace: facts.metadata.namespace.clone() };
        match inventory.as_deref().and_then(|inv| placement_of(pod, &facts, inv, cluster, driver)) {
            Some(p) => {
                let chosen = p as usize;
                for (i, f) in families.iter().enumerate() {
                    f.get_or_create(&labels).set(i64::from(i == chosen));
                }
            }
            // Not placed now (not Ready, no driver volumes): keeps the gauges it had, if any.
            None if !shown.contains(&labels) => continue,
            None => {}
        }
        now.insert(labels);
    }
    for gone in shown.difference(&now) {
        families.iter().for_each(|f| {
            f.remove(gone);
        });
    }
    now
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::Volume;

    fn vol(replicas: &[&str]) -> PodVolume {
        PodVolume {
            claim: "ns/c".into(),
            volume: Arc::new(Volume {
                replicas: replicas.iter().map(|s| s.to_string()).collect(),
                ..Volume::default()
            }),
            labels: Default::default(),
        }
    }

    fn gauges(metrics: &Metrics, pod: &str) -> [Option<i64>; 3] {
        let m = &metrics.placement;
        let labels = PodLabels { pod: pod.into(), namespace: crate::fixtures::NS.into() };
        [&m.hyperconverged, &m.semi_hyperconverged, &m.non_hyperconverged].map(|f| f.get(&labels).map(|g| g.get()))
    }

    #[test]
    fn the_gauges_follow_the_pod_cache_and_a_deleted_pod_loses_its_gauges() {
        use crate::fixtures::{World, dnode};
        let world = || World::new().driver_nodes([dnode("n1"), dnode("n2")]).volume("c1", &["n1"]);
        let (cluster, driver) = world().running_pod("near", "n1", &["c1"]).running_pod("far", "n2", &["c1"]).build();
        let metrics = Metrics::new();
        let shown = refresh(&cluster, &driver, &metrics, HashSet::new());
        assert_eq!(shown.len(), 2);
        assert_eq!(gauges(&metrics, "near"), [Some(1), Some(0), Some(0)]);
        assert_eq!(gauges(&metrics, "far"), [Some(0), Some(0), Some(1)]);

        let (cluster, driver) = world().running_pod("near", "n1", &["c1"]).build();
        let shown = refresh(&cluster, &driver, &metrics, shown);
        assert_eq!(shown.len(), 1);
        assert_eq!(gauges(&metrics, "far"), [None, None, None], "a deleted pod's series are removed");
    }

    #[test]
    fn a_pod_on_the_node_with_most_replicas_is_hyperconverged_fewer_is_semi_none_is_non() {
        let vols = [vol(&["a", "b"]), vol(&["b", "c"])];
        assert_eq!(classify(Some("b"), &vols), Placement::Hyperconverged);
        assert_eq!(classify(Some("a"), &vols), Placement::SemiHyperconverged);
        assert_eq!(classify(Some("z"), &vols), Placement::NonHyperconverged);
        assert_eq!(classify(None, &vols), Placement::NonHyperconverged);
    }
}
