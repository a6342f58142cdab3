//! What changed among claims, volumes and StorageClasses, for indexes derived from them (the
//! driver's claim index): which keys, or "everything" after a relist, plus a tick to wait on.
//!
//! The set is bounded: past [`MAX_PENDING`] keys it collapses into "everything", so a burst of
//! changes nobody collects (offline mode, tests without a builder) costs a few megabytes at most.

use std::sync::{
    Arc, Mutex, PoisonError,
    atomic::{AtomicU64, Ordering},
};

use rustc_hash::FxHashSet;
use tokio::sync::watch;

use super::compact::{CachedPv, CachedPvc};

/// Keys past which [`ClaimChanges`] stops listing them and reports everything changed.
pub const MAX_PENDING: usize = 65_536;

/// Changes collected since the last [`ClaimChanges::take`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// Claim keys (`namespace/name`) added, changed or deleted.
    pub claims: FxHashSet<Box<str>>,
    /// PersistentVolume names added, changed or deleted.
    pub volumes: FxHashSet<Box<str>>,
    /// A store was replaced whole (relist), a class changed, or too many keys piled up.
    pub everything: bool,
}

impl Pending {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        !self.everything && self.claims.is_empty() && self.volumes.is_empty()
    }
}

/// The change log shared by the PVC, PV and StorageClass writers and read by index builders.
#[derive(Debug)]
pub struct ClaimChanges {
    pending: Mutex<Pending>,
    classes: AtomicU64,
    tick: watch::Sender<u64>,
}

impl Default for ClaimChanges {
    fn default() -> Self {
        Self { pending: Mutex::default(), classes: AtomicU64::new(0), tick: watch::Sender::new(0) }
    }
}

/// Which store a change came from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Claim,
    Volume,
}

impl ClaimChanges {
    /// Records a changed key of `kind`, or everything when `key` is `None` (a relist).
    pub(crate) fn record(&self, kind: Kind, key: Option<&str>) {
        {
            let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            match key {
                _ if p.everything => {}
                None => p.everything = true,
                Some(key) => {
                    let set = match kind {
                        Kind::Claim => &mut p.claims,
                        Kind::Volume => &mut p.volumes,
                    };
                    set.insert(key.into());
                    if p.claims.len() + p.volumes.len() > MAX_PENDING {
                        *p = Pending { everything: true, ..Pending::default() };
                    }
                }
            }
        }
        self.tick.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Records a StorageClass change: every claim's class may have changed.
    pub(crate) fn class_changed(&self) {
        // Bumped before the tick, so a builder woken by it reads the new generation.
        self.classes.fetch_add(1, Ordering::AcqRel);
        self.record(Kind::Claim, None);
    }

    /// Counts StorageClass changes; an index built while this returned `g` is current for
    /// classes while it still returns `g`. Read it before reading the classes.
    pub fn class_generation(&self) -> u64 {
        self.classes.load(Ordering::Acquire)
    }

    /// Takes the changes collected so far.
    pub fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Ticks whenever a change is recorded.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tick.subscribe()
    }
}

/// One cached version of a PVC: cheap to hold and compare; [`Self::get`] rebuilds the
/// (trimmed) claim. Two handles are [`Self::same`] exactly when no write came between them.
#[derive(Clone)]
pub struct ClaimVersion(pub(crate) Arc<CachedPvc>);

impl ClaimVersion {
    /// The claim, as cached.
    pub fn get(&self) -> Arc<k8s_openapi::api::core::v1::PersistentVolumeClaim> {
        self.0.get()
    }

    /// Whether both are the same stored version.
    pub fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// One cached version of a PV, as [`ClaimVersion`] is of a PVC.
#[derive(Clone)]
pub struct VolumeVersion(pub(crate) Arc<CachedPv>);

impl VolumeVersion {
    /// The volume, as cached.
    pub fn get(&self) -> Arc<k8s_openapi::api::core::v1::PersistentVolume> {
        self.0.get()
    }

    /// Whether both are the same stored version (or both absent).
    pub fn same_opt(a: Option<&Self>, b: Option<&Self>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(&a.0, &b.0),
            (None, None) => true,
            _ => false,
        }
    }
}

impl std::fmt::Debug for ClaimVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ClaimVersion").field(&Arc::as_ptr(&self.0)).finish()
    }
}

impl std::fmt::Debug for VolumeVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("VolumeVersion").field(&Arc::as_ptr(&self.0)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_collected_by_kind_and_taken_once() {
        let c = ClaimChanges::default();
        c.record(Kind::Claim, Some("ns/a"));
        c.record(Kind::Volume, Some("pv-a"));
        let p = c.take();
        assert!(p.claims.contains("ns/a") && p.volumes.contains("pv-a") && !p.everything);
        assert!(c.take().is_empty());
    }

    #[test]
    fn a_relist_a_class_change_or_too_many_keys_collapse_into_everything() {
        let c = ClaimChanges::default();
        c.record(Kind::Volume, None);
        assert_eq!(c.take(), Pending { everything: true, ..Pending::default() });
        let before = c.class_generation();
        c.class_changed();
        assert!(c.take().everything && c.class_generation() == before + 1);
        for i in 0..=MAX_PENDING {
            c.record(Kind::Claim, Some(&format!("ns/{i}")));
        }
        assert_eq!(c.take(), Pending { everything: true, ..Pending::default() });
    }
}
