//! Stork's hyperconvergence gauges: for each running pod with driver volumes, whether it landed
//! on the node with the most replicas of its volumes, on one with some, or on one with none.

use std::{collections::HashMap, sync::Arc};

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, watcher},
};
use tokio_util::sync::CancellationToken;

use crate::{
    cluster::{ClusterView, node_addresses, pod::PodFacts},
    driver::{self, Driver, NodeIdentity, NodeInventory, PodVolume},
    metrics::{Metrics, PodLabels},
};

/// Where a running pod sits relative to its volumes' replicas.
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

fn is_ready(pod: &Pod) -> bool {
    let conds = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conds.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Keeps the gauges current from a pod watch until `cancel` fires.
pub async fn run(
    client: Client,
    cluster: ClusterView,
    driver: Arc<dyn Driver>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let m = &metrics.placement;
    let families = [&m.hyperconverged, &m.semi_hyperconverged, &m.non_hyperconverged];
    let update = |pod: &Pod| {
        let facts = PodFacts::of(pod);
        let labels = PodLabels { pod: facts.metadata.name.clone(), namespace: facts.metadata.namespace.clone() };
        if pod.metadata.deletion_timestamp.is_some() {
            families.iter().for_each(|f| {
                f.remove(&labels);
            });
            return;
        }
        if !is_ready(pod) || facts.spec.node_name.is_empty() {
            return;
        }
        let (Ok(vols), Ok(inv)) = (driver::pod_volumes(driver.as_ref(), &cluster, &facts), driver.nodes()) else {
            return;
        };
        if vols.bound.is_empty() {
            return;
        }
        let placement = classify(storage_id(&inv, &cluster, &facts.spec.node_name), &vols.bound);
        let chosen = match placement {
            Placement::Hyperconverged => 0,
            Placement::SemiHyperconverged => 1,
            Placement::NonHyperconverged => 2,
        };
        for (i, f) in families.iter().enumerate() {
            f.get_or_create(&labels).set(i64::from(i == chosen));
        }
    };
    let stream = watcher(Api::<Pod>::all(client), watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            e = stream.try_next() => e,
        };
        match event {
            Ok(Some(watcher::Event::Apply(p) | watcher::Event::InitApply(p))) => update(&p),
            Ok(Some(watcher::Event::Delete(p))) => {
                let labels = PodLabels {
                    pod: p.metadata.name.unwrap_or_default(),
                    namespace: p.metadata.namespace.unwrap_or_default(),
                };
                families.iter().for_each(|f| {
                    f.remove(&labels);
                });
            }
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(e) => tracing::warn!(error = %e, "pod watch failed; retrying"),
        }
    }
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

    #[test]
    fn a_pod_on_the_node_with_most_replicas_is_hyperconverged_fewer_is_semi_none_is_non() {
        let vols = [vol(&["a", "b"]), vol(&["b", "c"])];
        assert_eq!(classify(Some("b"), &vols), Placement::Hyperconverged);
        assert_eq!(classify(Some("a"), &vols), Placement::SemiHyperconverged);
        assert_eq!(classify(Some("z"), &vols), Placement::NonHyperconverged);
        assert_eq!(classify(None, &vols), Placement::NonHyperconverged);
    }
}
