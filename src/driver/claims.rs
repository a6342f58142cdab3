//! The claim index: every cached PVC resolved ahead of time to what placement needs (another
//! driver's, pending, or bound to a driver volume with its effective labels), so
//! [`super::pod_volumes`] looks claims up instead of rebuilding PVCs and PVs and asking the
//! driver on every request.
//!
//! One builder task ([`run`]) keeps it current off the request path and publishes each new
//! index whole ([`ClaimIndexSlot`]). The maps are persistent (`rpds`), so a change to one claim
//! costs a path copy, not a copy of 50,000 entries. A change of StorageClasses or of the
//! driver's volumes, or a relist, rebuilds it whole.
//!
//! Nothing is ever served stale: each entry remembers the stored versions of the PVC and PV it
//! was built from, and a lookup whose versions are not the cache's current ones answers nothing,
//! so the caller resolves that claim itself — correct, only slower — until the builder catches up.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwapOption;
use rpds::HashTrieMapSync;
use rustc_hash::{FxBuildHasher, FxHashSet};
use tokio_util::sync::CancellationToken;

use super::{Driver, Outcome, classify};
use crate::{
    cluster::{ClaimVersion, ClusterView, VolumeVersion},
    metrics::{BuildLabels, Metrics},
};

type Map<V> = HashTrieMapSync<Box<str>, V, FxBuildHasher>;

fn map<V>() -> Map<V> {
    HashTrieMapSync::new_with_hasher_and_ptr_kind(FxBuildHasher)
}

/// How often the builder looks for a change of the driver's volumes ([`ClaimIndexSlot::volumes_changed`]).
pub const VOLUMES_POLL: Duration = Duration::from_millis(100);

/// Where a driver publishes its claim index. A driver that supports the index holds one and
/// calls [`Self::volumes_changed`] whenever what [`Driver::volume`] answers may have changed.
#[derive(Debug, Default)]
pub struct ClaimIndexSlot {
    current: ArcSwapOption<ClaimIndex>,
    volumes: AtomicU64,
}

impl ClaimIndexSlot {
    /// Marks every indexed volume as possibly changed; lookups stop using the index until the
    /// builder rebuilt it.
    pub fn volumes_changed(&self) {
        self.volumes.fetch_add(1, Ordering::AcqRel);
    }

    fn volumes_version(&self) -> u64 {
        self.volumes.load(Ordering::Acquire)
    }

    /// The published index, if it was built for `cluster` with the current classes and volumes.
    pub fn current(&self, cluster: &ClusterView) -> Option<Arc<ClaimIndex>> {
        let index = self.current.load_full()?;
        let fresh = index.view == cluster.id()
            && index.classes == cluster.claim_changes().class_generation()
            && index.volumes == self.volumes_version();
        fresh.then_some(index)
    }
}

/// One claim, resolved.
#[derive(Debug)]
struct Entry {
    /// The PVC version it was resolved from.
    pvc: ClaimVersion,
    /// The PV the claim names and the version of it that was read (`None`: not cached).
    pv: Option<(Box<str>, Option<VolumeVersion>)>,
    outcome: Outcome,
}

/// Claims resolved for one cluster view, with the class and volume generations they saw.
#[derive(Clone)]
pub struct ClaimIndex {
    view: u64,
    classes: u64,
    volumes: u64,
    entries: Map<Arc<Entry>>,
    /// PV name → the claim whose entry read it, so a PV change finds the entry to redo.
    readers: Map<Box<str>>,
}

impl std::fmt::Debug for ClaimIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimIndex").field("view", &self.view).field("claims", &self.len()).finish_non_exhaustive()
    }
}

impl ClaimIndex {
    /// Number of resolved claims.
    pub fn len(&self) -> usize {
        self.entries.size()
    }

    /// Whether no claim is resolved.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The resolution of a claim (`namespace/name`) if it is current: its PVC and PV are the
    /// versions the cache holds now. `None` means resolve it directly.
    pub(crate) fn lookup(&self, cluster: &ClusterView, key: &str) -> Option<&Outcome> {
        let entry = self.entries.get(key)?;
        if !entry.pvc.same(&cluster.claim_version(key)?) {
            return None;
        }
        if let Some((name, seen)) = &entry.pv
            && !VolumeVersion::same_opt(seen.as_ref(), cluster.volume_version(name).as_ref())
        {
            return None;
        }
        Some(&entry.outcome)
    }

    fn empty(cluster: &ClusterView, classes: u64, volumes: u64) -> Self {
        Self { view: cluster.id(), classes, volumes, entries: map(), readers: map() }
    }

    /// Resolves one claim again (or drops it when it is gone or the driver cannot answer).
    fn redo(&mut self, driver: &dyn Driver, cluster: &ClusterView, key: &str) {
        if let Some(old) = self.entries.get(key).cloned() {
            self.entries.remove_mut(key);
            if let Some((pv, _)) = &old.pv
                && self.readers.get(&**pv).is_some_and(|k| **k == *key)
            {
                self.readers.remove_mut(&**pv);
            }
        }
        let Some(pvc) = cluster.claim_version(key) else { return };
        let claim = pvc.get();
        let pv_name = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).filter(|n| !n.is_empty());
        // Versions are read before the objects they stand for: a write in between makes the
        // entry look older than it is, so lookups skip it until it is redone; never the reverse.
        let pv = pv_name.map(|n| (Box::<str>::from(n), cluster.volume_version(n)));
        match classify(driver, cluster, &claim) {
            Ok(outcome) => {
                if let Some((name, _)) = &pv {
                    self.readers.insert_mut(name.clone(), key.into());
                }
                self.entries.insert_mut(key.into(), Arc::new(Entry { pvc, pv, outcome }));
            }
            Err(e) => tracing::debug!(claim = key, error = %e, "claim left out of the index"),
        }
    }
}

/// What one [`refresh`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// The driver keeps no claim index.
    Unsupported,
    /// Nothing had changed.
    Current,
    /// Only the changed claims were resolved again.
    Incremental {
        /// Claims resolved again.
        claims: usize,
    },
    /// Every claim was resolved again.
    Whole {
        /// Claims in the index.
        claims: usize,
    },
}

/// One step of the builder: folds every change since the last step into the published index.
pub fn refresh(driver: &dyn Driver, cluster: &ClusterView) -> Refreshed {
    let Some(slot) = driver.claim_index() else { return Refreshed::Unsupported };
    // Generations before changes before objects: anything newer than what is read makes the
    // index look older than it is (and rebuilt again), never current when it is not.
    let classes = cluster.claim_changes().class_generation();
    let volumes = slot.volumes_version();
    let pending = cluster.claim_changes().take();
    let current = slot.current.load_full();
    let reusable = current
        .filter(|i| !pending.everything && i.view == cluster.id() && i.classes == classes && i.volumes == volumes);
    let (index, refreshed) = match reusable {
        Some(_) if pending.is_empty() => return Refreshed::Current,
        Some(index) => {
            let mut next = (*index).clone();
            let mut keys: FxHashSet<Box<str>> = pending.claims;
            keys.extend(pending.volumes.iter().filter_map(|pv| index.readers.get(&**pv).cloned()));
            keys.iter().for_each(|key| next.redo(driver, cluster, key));
            (next, Refreshed::Incremental { claims: keys.len() })
        }
        None => {
            let mut next = ClaimIndex::empty(cluster, classes, volumes);
            for (key, _) in cluster.claim_versions() {
                next.redo(driver, cluster, &key);
            }
            let claims = next.len();
            (next, Refreshed::Whole { claims })
        }
    };
    slot.current.store(Some(Arc::new(index)));
    refreshed
}

/// Keeps `driver`'s claim index current for `cluster` until cancelled (returns at once when the
/// driver keeps none). Woken by cache changes, and every [`VOLUMES_POLL`] for driver changes.
/// Counts its builds and the index's size in `metrics`.
pub async fn run(driver: Arc<dyn Driver>, cluster: ClusterView, metrics: Arc<Metrics>, cancel: CancellationToken) {
    let Some(slot) = driver.claim_index() else { return };
    let mut changes = cluster.claim_changes().subscribe();
    let mut poll = tokio::time::interval(VOLUMES_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let started = Instant::now();
        let refreshed = refresh(driver.as_ref(), &cluster);
        let elapsed = started.elapsed();
        let kind = match refreshed {
            Refreshed::Whole { .. } => Some("whole"),
            Refreshed::Incremental { .. } => Some("incremental"),
            Refreshed::Current | Refreshed::Unsupported => None,
        };
        if let Some(kind) = kind {
            tracing::debug!(?refreshed, ?elapsed, "claim index published");
            metrics.claim_index_builds.get_or_create(&BuildLabels { kind }).inc();
            let claims = slot.current.load().as_deref().map_or(0, ClaimIndex::len);
            metrics.claim_index_claims.set(i64::try_from(claims).unwrap_or(i64::MAX));
        }
        if let Refreshed::Whole { .. } = refreshed {
            // A driver whose volumes change constantly must not keep a core busy rebuilding:
            // whole rebuilds take at most half of it. Lookups resolve directly meanwhile.
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(elapsed) => {}
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
            _ = poll.tick() => {}
        }
    }
}

#[cfg(test)]
#[path = "claims_tests.rs"]
mod tests;
