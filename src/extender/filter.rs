//! `/filter`: drop nodes where the pod's storage cannot be served. Pure and synchronous.
//!
//! Stork's rules (reference §1.6), with our deviations: every dropped node gets a reason;
//! pod-level conditions no node can fix (claim missing, pending or being restored, no online
//! replica) mark every node unresolvable instead of failing the request with HTTP 400.

use std::collections::HashMap;

use super::{Candidate, Inputs, UNRESOLVABLE_EVENT, limits::Expired};
use crate::{
    cluster::ClusterView,
    driver::{self, NodeInventory, NodeStatus, PodVolume, VolumesError},
    events::PodEvent,
    knobs,
    text::clip_reason,
};

/// What `/filter` decided, as indices into the request's node list.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FilterDecision {
    /// Nodes that may run the pod, in request order.
    pub kept: Vec<usize>,
    /// Dropped nodes with the reason (`FailedNodes`).
    pub failed: Vec<(usize, String)>,
    /// Nodes dropped for a reason no node can fix (`FailedAndUnresolvableNodes`).
    pub unresolvable: Vec<(usize, String)>,
    /// An event to record on the pod.
    pub event: Option<PodEvent>,
}

impl FilterDecision {
    fn keep_all(n: usize) -> Self {
        Self { kept: (0..n).collect(), ..Self::default() }
    }

    /// The same reason for every node: clipped first, since it is copied once per node and may
    /// quote a claim name of any length from the request.
    fn unresolvable(n: usize, reason: String) -> Self {
        let reason = clip_reason(reason);
        Self {
            unresolvable: (0..n).map(|i| (i, reason.clone())).collect(),
            event: Some(PodEvent::warning(UNRESOLVABLE_EVENT, reason)),
            ..Self::default()
        }
    }
}

/// Decides which of `nodes` can run `input.pod`, or stops at the inputs' deadline.
pub fn filter(input: &Inputs<'_>, nodes: &[Candidate<'_>]) -> Result<FilterDecision, Expired> {
    let n = nodes.len();
    if input.is_csi_pod() {
        return filter_csi_pod(input, nodes);
    }
    let ns = input.pod.metadata.namespace.as_str();
    for c in input.pod.claims() {
        let claim = &c.name;
        match input.cluster.pvc(ns, claim) {
            // A generic ephemeral volume's claim may not exist yet: `pod_volumes` decides from its
            // template's class.
            None if c.ephemeral_class.is_some() => {}
            None => {
                return Ok(FilterDecision::unresolvable(
                    n,
                    format!("pvc {ns}/{claim} (pod volume {}) was not found", c.volume),
                ));
            }
            Some(pvc) if driver::restore_in_progress(&pvc) => {
                return Ok(FilterDecision::unresolvable(
                    n,
                    format!("volume restore is in progress for pvc {ns}/{claim}"),
                ));
            }
            Some(_) => {}
        }
    }
    let volumes = match driver::pod_volumes(input.driver, input.cluster, input.pod) {
        Ok(v) if v.is_empty() => return Ok(FilterDecision::keep_all(n)),
        Ok(v) => v,
        Err(e @ (VolumesError::PvcNotFound { .. } | VolumesError::PvcPending { .. })) => {
            return Ok(FilterDecision::unresolvable(n, e.to_string()));
        }
        Err(VolumesError::Driver(msg)) => {
            // Fail open: an unreachable driver must not stop every stateful pod from scheduling.
            let mut d = FilterDecision::keep_all(n);
            let msg = clip_reason(format!("error getting volumes for pod: {msg}"));
            d.event = Some(PodEvent::warning(UNRESOLVABLE_EVENT, msg));
            return Ok(d);
        }
    };

    let mut decision = FilterDecision::default();
    let schedulable: Vec<usize> = (0..n)
        .filter(|&i| {
            let ok = !nodes[i].storage_unschedulable;
            if !ok {
                let why = format!("node is marked unschedulable for storage ({})", knobs::NODE_UNSCHEDULABLE);
                decision.failed.push((i, why));
            }
            ok
        })
        .collect();
    let inventory = match input.driver.nodes() {
        Ok(inv) => inv,
        Err(e) => {
            tracing::warn!(error = %e, "driver nodes unavailable; not filtering by driver state");
            decision.kept = schedulable;
            return Ok(decision);
        }
    };
    // A Windows (SMB) volume is reachable from anywhere: no placement constraint applies.
    if volumes.bound.iter().any(|v| v.volume.windows) {
        decision.kept = schedulable;
        return Ok(decision);
    }

    let mut remote_only: HashMap<&str, &PodVolume> = HashMap::new();
    for (step, v) in volumes.bound.iter().enumerate() {
        if input.deadline.passed_at(step) {
            return Err(Expired);
        }
        if wants_remote_only(v) {
            for id in &v.volume.replicas {
                remote_only.entry(id.as_str()).or_insert(v);
            }
        }
        let online =
            v.volume.replicas.iter().any(|id| inventory.by_id(id).is_some_and(|d| d.status == NodeStatus::Online));
        if !v.volume.replicas.is_empty() && !online {
            let why = format!("no online node holds a replica of volume {} (pvc {})", v.volume.id, v.claim);
            return Ok(FilterDecision::unresolvable(n, why));
        }
    }

    let prefer_local = knobs::flag(&input.pod.metadata.annotations, knobs::PREFER_LOCAL_NODE_ONLY, false);
    let local: Vec<&PodVolume> = volumes.bound.iter().filter(|v| !v.volume.anti_hyperconvergence).collect();
    let rules = NodeRules {
        inventory: &inventory,
        cluster: input.cluster,
        prefer_local,
        local: &local,
        remote_only: &remote_only,
    };
    let mut scratch = Vec::new();
    decision.kept.reserve_exact(schedulable.len());
    for (step, i) in schedulable.into_iter().enumerate() {
        if input.deadline.passed_at(step) {
            return Err(Expired);
        }
        match rules.admit(&nodes[i], &mut scratch) {
            Ok(()) => decision.kept.push(i),
            // Clipped: quotes a claim name, and is copied into the answer once per node.
            Err(why) => decision.failed.push((i, clip_reason(why))),
        }
    }
    decision.failed.sort_unstable_by_key(|(i, _)| *i);
    if decision.kept.is_empty() {
        let msg = match (prefer_local, !remote_only.is_empty()) {
            (true, true) => {
                "no node can honour pod annotation preferLocalNodeOnly and volume label preferRemoteNodeOnly together"
            }
            (true, false) => "no node holds a replica of every volume (preferLocalNodeOnly)",
            (false, true) => "no node can honour volume label preferRemoteNodeOnly",
            (false, false) => "no node has a healthy storage driver",
        };
        decision.event = Some(PodEvent::warning(UNRESOLVABLE_EVENT, msg));
    }
    Ok(decision)
}

/// Anti-hyperconvergence with `preferRemoteNodeOnly`: replica nodes are off limits.
fn wants_remote_only(v: &PodVolume) -> bool {
    v.volume.anti_hyperconvergence
        && knobs::flag(&v.labels, knobs::PREFER_REMOTE_NODE, true)
        && knobs::flag(&v.labels, knobs::PREFER_REMOTE_NODE_ONLY, false)
}

struct NodeRules<'a> {
    inventory: &'a NodeInventory,
    cluster: &'a ClusterView,
    prefer_local: bool,
    /// Volumes that want the pod next to them (not anti-hyperconverged).
    local: &'a [&'a PodVolume],
    remote_only: &'a HashMap<&'a str, &'a PodVolume>,
}

impl NodeRules<'_> {
    /// Admits a node if one of its driver entries passes every rule; else the first entry's reason.
    fn admit(&self, node: &Candidate<'_>, scratch: &mut Vec<usize>) -> Result<(), String> {
        let mut reason = None;
        for &idx in node.matches(self.inventory, self.cluster, scratch) {
            let d = self.inventory.get(idx);
            let why = if !d.status.is_schedulable() {
                Some(format!("storage driver is {} on this node", d.status))
            } else if let Some(v) = self.prefer_local.then(|| self.missing_local(&d.id)).flatten() {
                Some(format!("no replica of pvc {} on this node (preferLocalNodeOnly)", v.claim))
            } else {
                self.remote_only.get(d.id.as_str()).map(|v| {
                    format!(
                        "holds a replica of pvc {}, which asks for remote nodes only (preferRemoteNodeOnly)",
                        v.claim
                    )
                })
            };
            match why {
                None => return Ok(()),
                Some(w) => {
                    reason.get_or_insert(w);
                }
            }
        }
        Err(reason.unwrap_or_else(|| "storage driver is not running on this node".to_string()))
    }

    fn missing_local(&self, storage_id: &str) -> Option<&PodVolume> {
        self.local.iter().copied().find(|v| !v.volume.replicas.iter().any(|r| r == storage_id))
    }
}

/// The driver's own CSI pods go to any node where the driver runs; never an empty answer.
fn filter_csi_pod(input: &Inputs<'_>, nodes: &[Candidate<'_>]) -> Result<FilterDecision, Expired> {
    let Ok(inventory) = input.driver.nodes() else {
        return Ok(FilterDecision::keep_all(nodes.len()));
    };
    let mut scratch = Vec::new();
    let mut decision = FilterDecision::default();
    for (i, node) in nodes.iter().enumerate() {
        if input.deadline.passed_at(i) {
            return Err(Expired);
        }
        let found = node.matches(&inventory, input.cluster, &mut scratch);
        if found.iter().any(|&m| inventory.get(m).status.is_schedulable()) {
            decision.kept.push(i);
        } else {
            decision.failed.push((i, "storage driver is not running on this node".to_string()));
        }
    }
    if decision.kept.is_empty() {
        return Ok(FilterDecision::keep_all(nodes.len()));
    }
    Ok(decision)
}
