//! The index builder: keeps each inventory's index of the cluster's Nodes
//! ([`super::NodeInventory::node_index`]) current off the request path, so no extender request
//! builds, locks or joins to find a node's driver entries.
//!
//! It rebuilds when the Node cache changes (every change since the last build is folded into
//! one rebuild) and when the driver replaces its inventory, which it notices by polling
//! [`Driver::nodes`] (an `Arc` clone) every [`INVENTORY_POLL`].

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::Driver;
use crate::cluster::ClusterView;

/// How often the builder looks for a replaced inventory. Until it does, requests match each
/// node against the new inventory themselves: correct, only slower.
pub const INVENTORY_POLL: Duration = Duration::from_millis(100);

/// Keeps the node index of `driver`'s current inventory current for `cluster` until cancelled.
pub async fn run(driver: Arc<dyn Driver>, cluster: ClusterView, cancel: CancellationToken) {
    let mut changes = cluster.node_changes();
    let mut poll = tokio::time::interval(INVENTORY_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        refresh(driver.as_ref(), &cluster);
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
            _ = poll.tick() => {}
        }
    }
}

/// One step of the builder: rebuilds the current inventory's index if it is stale.
pub fn refresh(driver: &dyn Driver, cluster: &ClusterView) {
    let Ok(inventory) = driver.nodes() else { return };
    if !inventory.node_index_is_stale(cluster) {
        return;
    }
    let started = std::time::Instant::now();
    let index = inventory.refresh_node_index(cluster);
    tracing::debug!(nodes = index.len(), elapsed = ?started.elapsed(), "node index rebuilt");
}
