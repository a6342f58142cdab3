//! The monitor's decisions, with no client and no await: given the driver's answer at each step
//! and the cached pods, which pods to delete now and when to look again.
//!
//! Safety rules (DESIGN.md deviation 8): a driver error or a mass outage means no action at all
//! and forgets every probation; a node is acted on only after the driver reported it down at
//! every scheduled re-check; each batch is preceded by a fresh driver answer; deletions obey a
//! cluster-wide per-minute ceiling; each pod is acted on at most once per leadership term.

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use crate::driver::{NodeIdentity, NodeInventory, NodeStatus};

/// Monitor timings and limits.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Poll interval when nothing is pending.
    pub interval: Duration,
    /// First wait of the re-check backoff; each later wait doubles.
    pub backoff_initial: Duration,
    /// Checks (including the first sighting) a node must fail before it is acted on.
    pub backoff_checks: u32,
    /// Pods deleted per batch.
    pub batch_size: usize,
    /// Pause after each batch.
    pub batch_interval: Duration,
    /// Above this share of driver nodes down, the driver itself is broken: no action.
    pub max_down_fraction: f64,
    /// Cluster-wide ceiling on deletions in any 60 s window.
    pub max_deletions_per_minute: u32,
    /// Record events only; delete nothing.
    pub dry_run: bool,
}

impl Default for Settings {
    /// Stork's timings (checks at 0, 10, 30, 70, 150 s; batches of 5, 30 s apart) plus our limits.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(120),
            backoff_initial: Duration::from_secs(10),
            backoff_checks: 5,
            batch_size: 5,
            batch_interval: Duration::from_secs(30),
            max_down_fraction: 0.5,
            max_deletions_per_minute: 20,
            dry_run: false,
        }
    }
}

/// A cached pod, reduced to what the monitor decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID: the deletion precondition, so a recreated pod of the same name is never hit.
    pub uid: String,
    /// `spec.nodeName`.
    pub node: String,
    /// One of the driver's own CSI pods.
    pub csi: bool,
    /// Uses at least one driver volume (resolved without error).
    pub uses_driver: bool,
    /// Reason `NodeLost`, or terminating on a node tainted unreachable:NoExecute.
    pub unknown_state: bool,
}

/// Why a pod is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The driver reported the pod's node down through the whole backoff.
    DriverOffline(NodeStatus),
    /// The pod is in unknown state (its node is unreachable).
    NodeLost,
}

/// One pod to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// The pod.
    pub pod: PodInfo,
    /// Why.
    pub cause: Cause,
}

/// An action not taken, for the skipped-actions counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The driver answered with an error.
    DriverError,
    /// Too many driver nodes down at once.
    MassOutage,
    /// A node under probation came back.
    Recovered,
    /// The per-minute deletion ceiling was reached.
    RateLimited,
}

impl Skip {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DriverError => "driver_error",
            Self::MassOutage => "mass_outage",
            Self::Recovered => "recovered",
            Self::RateLimited => "rate_limited",
        }
    }
}

/// The outcome of one step.
#[derive(Debug)]
pub struct Step {
    /// Pods to delete now, CSI pods first within each node.
    pub deletions: Vec<Deletion>,
    /// Actions not taken, with the reason.
    pub skipped: Vec<Skip>,
    /// When to step again at the latest.
    pub wake_at: Instant,
}

/// Kubernetes node name to its `status.addresses` (type, address).
pub type NodeAddresses = BTreeMap<String, Vec<(String, String)>>;

#[derive(Debug)]
struct Track {
    /// Storage id of the driver entry that reported the node down.
    storage_id: String,
    status: NodeStatus,
    checks: u32,
    next: Instant,
    draining: bool,
}

/// Decision state across steps; a new leader starts from a fresh one.
#[derive(Debug)]
pub struct Planner {
    settings: Settings,
    tracks: BTreeMap<String, Track>,
    recent: VecDeque<Instant>,
    acted: HashSet<String>,
}

const MINUTE: Duration = Duration::from_secs(60);

fn is_down(status: NodeStatus) -> bool {
    matches!(status, NodeStatus::Offline | NodeStatus::Degraded)
}

impl Planner {
    /// A planner with nothing under probation.
    pub fn new(settings: Settings) -> Self {
        Self { settings, tracks: BTreeMap::new(), recent: VecDeque::new(), acted: HashSet::new() }
    }

    /// Kubernetes nodes under probation or being drained (for logs and tests).
    pub fn tracked(&self) -> Vec<&str> {
        self.tracks.keys().map(String::as_str).collect()
    }

    /// Decides what to do at `now` from a fresh driver answer and the cached pods and nodes.
    pub fn step(
        &mut self,
        now: Instant,
        inventory: Result<&NodeInventory, String>,
        nodes: &NodeAddresses,
        pods: &[PodInfo],
    ) -> Step {
        let live: HashSet<&str> = pods.iter().map(|p| p.uid.as_str()).collect();
        self.acted.retain(|uid| live.contains(uid.as_str()));
        while self.recent.front().is_some_and(|t| now.duration_since(*t) >= MINUTE) {
            self.recent.pop_front();
        }
        let mut step = Step { deletions: Vec::new(), skipped: Vec::new(), wake_at: now + self.settings.interval };
        let inventory = match inventory {
            Ok(inv) => inv,
            Err(error) => {
                tracing::warn!(%error, "storage driver did not answer; the monitor takes no action");
                self.tracks.clear();
                step.skipped.push(Skip::DriverError);
                return step;
            }
        };
        let all = inventory.nodes();
        let down = all.iter().filter(|n| is_down(n.status)).count();
        if !all.is_empty() && down as f64 / all.len() as f64 > self.settings.max_down_fraction {
            tracing::warn!(
                down,
                total = all.len(),
                "driver reports too many nodes down; treating it as a driver outage"
            );
            self.tracks.clear();
            step.skipped.push(Skip::MassOutage);
            return step;
        }

        let candidates: Vec<&PodInfo> = pods.iter().filter(|p| p.csi || p.uses_driver).collect();
        let mut down_nodes = down_nodes(inventory, nodes, &candidates);
        // A drained node has no candidate pods left; it stays tracked while the driver still
        // reports its entry down, so it is not mistaken for a recovery.
        for (node, track) in &self.tracks {
            if !down_nodes.contains_key(node)
                && !candidates.iter().any(|p| &p.node == node)
                && let Some(status) = inventory.by_id(&track.storage_id).map(|n| n.status).filter(|s| is_down(*s))
            {
                down_nodes.insert(node.clone(), (track.storage_id.clone(), status));
            }
        }
        let before = self.tracks.len();
        self.tracks.retain(|node, _| {
            let back = !down_nodes.contains_key(node);
            if back {
                tracing::info!(%node, "storage driver node is back; no pods deleted");
            }
            !back
        });
        step.skipped.extend(std::iter::repeat_n(Skip::Recovered, before - self.tracks.len()));

        for pod in candidates.iter().filter(|p| p.unknown_state) {
            self.delete(&mut step, now, pod, Cause::NodeLost);
        }
        for (node, (storage_id, status)) in down_nodes {
            let s = &self.settings;
            let track = self.tracks.entry(node.clone()).or_insert_with(|| {
                tracing::info!(%node, %storage_id, %status, "storage driver reports node down; re-checking before acting");
                let draining = s.backoff_checks <= 1;
                let next = if draining { now } else { now + s.backoff_initial };
                Track { storage_id, status, checks: 1, next, draining }
            });
            track.status = status;
            if !track.draining && now >= track.next {
                track.checks += 1;
                if track.checks >= s.backoff_checks {
                    tracing::info!(%node, %status, checks = track.checks, "node still down after every re-check; acting");
                    track.draining = true;
                } else {
                    track.next = now + s.backoff_initial * 2u32.saturating_pow(track.checks - 1);
                }
            }
            if track.draining && now >= track.next {
                self.drain_batch(&mut step, now, &node, status, &candidates);
            }
        }
        let next = self.tracks.values().map(|t| t.next).filter(|t| *t > now).min();
        step.wake_at = next.map_or(step.wake_at, |t| t.min(step.wake_at));
        step
    }

    fn drain_batch(&mut self, step: &mut Step, now: Instant, node: &str, status: NodeStatus, pods: &[&PodInfo]) {
        let mut victims: Vec<&PodInfo> =
            pods.iter().copied().filter(|p| p.node == node && !self.acted.contains(&p.uid)).collect();
        victims.sort_by(|a, b| (!a.csi, &a.namespace, &a.name).cmp(&(!b.csi, &b.namespace, &b.name)));
        let mut deleted = 0;
        for pod in victims.iter().take(self.settings.batch_size) {
            deleted += usize::from(self.delete(step, now, pod, Cause::DriverOffline(status)));
        }
        let track = self.tracks.get_mut(node).expect("draining node is tracked");
        track.next = if deleted > 0 || victims.is_empty() {
            now + self.settings.batch_interval
        } else {
            // Rate-limited: retry when the oldest deletion leaves the window.
            self.recent.front().map_or(now + self.settings.batch_interval, |t| *t + MINUTE)
        };
    }

    /// Records a deletion if the ceiling allows; false (and a skip) if it does not.
    fn delete(&mut self, step: &mut Step, now: Instant, pod: &PodInfo, cause: Cause) -> bool {
        if self.acted.contains(&pod.uid) {
            return false;
        }
        if self.recent.len() >= self.settings.max_deletions_per_minute as usize {
            step.skipped.push(Skip::RateLimited);
            return false;
        }
        self.recent.push_back(now);
        self.acted.insert(pod.uid.clone());
        step.deletions.push(Deletion { pod: pod.clone(), cause });
        true
    }
}

/// Kubernetes nodes hosting candidate pods whose preferred driver entry is Offline or Degraded.
/// The preferred entry is the best status among every entry matching the node, so a stale
/// Offline entry beside an Online one (a re-used IP or name) never marks the node down.
fn down_nodes(
    inventory: &NodeInventory,
    nodes: &NodeAddresses,
    pods: &[&PodInfo],
) -> BTreeMap<String, (String, NodeStatus)> {
    let mut out = BTreeMap::new();
    let mut scratch = Vec::new();
    for name in pods.iter().map(|p| p.node.as_str()).filter(|n| !n.is_empty()) {
        if out.contains_key(name) {
            continue;
        }
        let owned = nodes.get(name).map(Vec::as_slice).unwrap_or_default();
        let addresses: Vec<(&str, &str)> = owned.iter().map(|(t, a)| (t.as_str(), a.as_str())).collect();
        let best = inventory.best_match(NodeIdentity { name, addresses: &addresses }, &mut scratch);
        if let Some(entry) = best.map(|i| inventory.get(i)).filter(|n| is_down(n.status)) {
            out.insert(name.to_string(), (entry.id.clone(), entry.status));
        }
    }
    out
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
