//! `/prioritize`: rank nodes by how close they are to the pod's volume replicas. Pure.
//!
//! Scores are Stork's raw scale, summed over volumes and deliberately not clamped to the
//! extender maximum of 10: with the scheduler's weight, a replica node outweighs every
//! default plugin together, which is what makes placement hyperconverged.

use std::collections::BTreeSet;

use super::{Candidate, Inputs, limits::Expired};
use crate::{
    driver::{self, DriverNode, NodeInventory, NodeStatus, PodVolume},
    events::PodEvent,
    knobs,
};

/// A node holding a replica.
pub const NODE_SCORE: i64 = 100;
/// A node in the same rack as a replica.
pub const RACK_SCORE: i64 = 50;
/// A node in the same zone as a replica.
pub const ZONE_SCORE: i64 = 25;
/// A node in the same region as a replica.
pub const REGION_SCORE: i64 = 10;
/// A replica node whose storage is down (Stork's `StorageDown ? 25 : 100`).
pub const STORAGE_DOWN_NODE_SCORE: i64 = 25;
/// A healthy driver node with no locality to any replica.
pub const DEFAULT_SCORE: i64 = 5;
/// A node where the driver does not serve: not a driver node, or Offline/Degraded.
pub const INVALID_SCORE: i64 = 0;
/// Reason of the event recorded when no replica node was offered to the pod.
pub const NON_OPTIMUM_EVENT: &str = "NonOptimumScheduling";

/// Scores in request order, plus an optional event for the pod.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scores {
    /// One score per request node.
    pub scores: Vec<i64>,
    /// An event to record on the pod.
    pub event: Option<PodEvent>,
}

/// Scores `nodes` for `input.pod`, or stops at the inputs' deadline.
pub fn prioritize(input: &Inputs<'_>, nodes: &[Candidate<'_>]) -> Result<Scores, Expired> {
    let defaults = || Ok(Scores { scores: vec![DEFAULT_SCORE; nodes.len()], event: None });
    let Ok(inventory) = input.driver.nodes() else {
        return defaults();
    };
    let mut scratch = Vec::new();
    // Each node's preferred driver entry, as an inventory index.
    let matched: Vec<Option<usize>> =
        nodes.iter().map(|n| n.matches(&inventory, input.cluster, &mut scratch).first().copied()).collect();
    let status = |m: Option<usize>| m.map(|i| inventory.keys(i).status);
    if input.is_csi_pod() {
        // Stork: no driver nodes at all is not "every node is bad"; every node gets the default.
        if inventory.nodes().is_empty() {
            return defaults();
        }
        let scores = matched
            .iter()
            .map(|&m| match status(m) {
                Some(NodeStatus::Online) => NODE_SCORE,
                Some(NodeStatus::StorageDown | NodeStatus::Degraded) => NODE_SCORE / 2,
                Some(NodeStatus::Offline) | None => INVALID_SCORE,
            })
            .collect();
        return Ok(Scores { scores, event: None });
    }
    if knobs::flag(&input.pod.metadata.annotations, knobs::DISABLE_HYPERCONVERGENCE, false) {
        return defaults();
    }
    let volumes = match driver::pod_volumes(input.driver, input.cluster, input.pod) {
        Ok(v) if !v.bound.is_empty() => v.bound,
        // Prioritize errors are ignored by the scheduler; neutral scores say the same thing.
        _ => return defaults(),
    };

    let mut totals = vec![0i64; nodes.len()];
    // Anti-hyperconverged replicas: whether there are any, and the keys of those the driver knows.
    let mut anti_replicas = false;
    let mut anti_keys: Vec<u32> = Vec::new();
    let mut far_volumes: Vec<&PodVolume> = Vec::new();
    for v in &volumes {
        // Each volume costs a pass over every node: check the clock once per volume.
        if input.deadline.passed() {
            return Err(Expired);
        }
        if knobs::flag(&v.labels, knobs::SKIP_SCHEDULER_SCORING, false) || v.volume.windows {
            continue;
        }
        if v.volume.anti_hyperconvergence && knobs::flag(&v.labels, knobs::PREFER_REMOTE_NODE, true) {
            anti_replicas |= !v.volume.replicas.is_empty();
            anti_keys.extend(v.volume.replicas.iter().filter_map(|id| inventory.key_of(id)));
            continue;
        }
        // Deviation from Stork: an Offline or Degraded replica gives no locality at all.
        let replicas: Vec<usize> = v
            .volume
            .replicas
            .iter()
            .filter_map(|id| inventory.index_of(id))
            .filter(|&i| inventory.keys(i).status.is_schedulable())
            .collect();
        let replica_ids: Vec<u32> = replicas.iter().map(|&r| inventory.keys(r).id).collect();
        // Without zones and regions every segment score is 0: skip its string compares.
        let segmented = !(v.volume.zones.is_empty() && v.volume.regions.is_empty());
        let mut offered = false;
        for (total, &m) in totals.iter_mut().zip(&matched) {
            let Some(d) = m.filter(|&d| inventory.keys(d).status.is_schedulable()) else { continue };
            offered |= replica_ids.contains(&inventory.keys(d).id);
            let segment = if segmented { segment_score(inventory.get(d), &v.volume) } else { 0 };
            *total += locality_score(&inventory, d, &replicas).max(segment);
        }
        // A volume known only by its topology segment has no replica node to miss.
        let segment_only = v.volume.replicas.is_empty() && segmented;
        if !offered && !segment_only {
            far_volumes.push(v);
        }
    }

    let healthy = |m: Option<usize>| status(m).is_some_and(NodeStatus::is_schedulable);
    if anti_replicas {
        // Anti-hyperconvergence: replica nodes drop to the default, healthy others gain a replica's worth.
        anti_keys.sort_unstable();
        for (total, &m) in totals.iter_mut().zip(&matched) {
            let Some(d) = m.map(|d| inventory.keys(d)) else { continue };
            if anti_keys.binary_search(&d.id).is_ok() {
                *total = DEFAULT_SCORE;
            } else if d.status == NodeStatus::Online {
                *total += NODE_SCORE;
            }
        }
    }
    let scores = totals
        .iter()
        .zip(&matched)
        .map(|(&t, &m)| match (healthy(m), t) {
            (false, _) => INVALID_SCORE,
            (true, 0) => DEFAULT_SCORE,
            (true, t) => t,
        })
        .collect();
    let event = (!anti_replicas && !far_volumes.is_empty()).then(|| non_optimum_event(&far_volumes, &inventory));
    Ok(Scores { scores, event })
}

/// Score of one healthy driver node for one volume: replica > same rack > same zone > same
/// region, each level compared with every healthy replica; lowered when the node's storage is
/// down ([`storage_down`]).
/// Nodes and replicas are inventory indices, compared through their [`NodeInventory::keys`] in
/// one pass over the replicas (the best level of any replica is the score).
/// Deviation from Stork: a node without rack information never counts as "same rack".
pub fn locality_score(inventory: &NodeInventory, node: usize, replicas: &[usize]) -> i64 {
    let d = inventory.keys(node);
    let empty = NodeInventory::EMPTY_KEY;
    let level = |&r: &usize| {
        let r = inventory.keys(r);
        if r.id == d.id {
            NODE_SCORE
        } else if r.region != d.region {
            0
        } else if d.rack != empty && r.rack == d.rack && r.zone == d.zone {
            RACK_SCORE
        } else if d.zone != empty && r.zone == d.zone {
            ZONE_SCORE
        } else if d.region != empty {
            REGION_SCORE
        } else {
            0
        }
    };
    let full = replicas.iter().map(level).max().unwrap_or(0);
    if d.status == NodeStatus::StorageDown { storage_down(full) } else { full }
}

/// Stork's scores for a node whose storage is down: a replica 25, same rack 25, same zone 12
/// (`int(12.5)`), same region 5. Halved, except a replica, which drops to a quarter.
pub fn storage_down(full: i64) -> i64 {
    if full == NODE_SCORE { STORAGE_DOWN_NODE_SCORE } else { full / 2 }
}

/// Score of one healthy driver node for a volume's topology segment (CSI accessible topology):
/// same zone, else same region; lowered when the node's storage is down ([`storage_down`]).
pub fn segment_score(d: &DriverNode, volume: &driver::Volume) -> i64 {
    let full = if !d.zone.is_empty() && volume.zones.contains(&d.zone) {
        ZONE_SCORE
    } else if !d.region.is_empty() && volume.regions.contains(&d.region) {
        REGION_SCORE
    } else {
        0
    };
    if d.status == NodeStatus::StorageDown { storage_down(full) } else { full }
}

fn non_optimum_event(far: &[&PodVolume], inventory: &NodeInventory) -> PodEvent {
    let vols: Vec<&str> = far.iter().map(|v| v.volume.id.as_str()).collect();
    let nodes: BTreeSet<&str> = far
        .iter()
        .flat_map(|v| v.volume.replicas.iter())
        .map(|id| inventory.by_id(id).map_or(id.as_str(), |d| d.name.as_str()))
        .collect();
    PodEvent::warning(
        NON_OPTIMUM_EVENT,
        // Clipped: a pod may name thousands of volumes.
        crate::text::clip_reason(format!(
            "Unable to schedule pod using volumes {vols:?} in a hyperconverged fashion. Make sure you have enough \
             CPU and memory resources available on these nodes: {:?}",
            nodes.into_iter().collect::<Vec<_>>()
        )),
    )
}
