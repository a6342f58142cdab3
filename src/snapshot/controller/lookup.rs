//! What a reconcile looks up, and how stork recognises its own objects: the driver snapshot id
//! derived from the snapshot's UID, the claim's driver volume, which data object and driver
//! snapshot to read, and whether a data object points back at its snapshot.

use kube::ResourceExt;

use super::DATA_PREFIX;
use crate::{
    cluster::ClusterView,
    driver::Driver,
    knobs::SNAPSHOT_ID_ANNOTATION,
    model::crd::{VolumeSnapshot, VolumeSnapshotData},
};

/// The driver snapshot id, which is also the `VolumeSnapshotData` name, of a snapshot UID.
pub fn snapshot_id(uid: &str) -> String {
    format!("{DATA_PREFIX}{uid}")
}

/// The id stork recorded for this snapshot, if stork took (or is taking) it.
pub fn stork_id(s: &VolumeSnapshot) -> Option<String> {
    let id = snapshot_id(s.metadata.uid.as_deref().filter(|u| !u.is_empty())?);
    (s.annotations().get(SNAPSHOT_ID_ANNOTATION) == Some(&id)).then_some(id)
}

/// What a claim resolves to for snapshotting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The claim's PV and driver volume.
    Volume {
        /// PV name.
        pv: String,
        /// Driver volume id.
        volume_id: String,
    },
    /// Not yet (claim not bound, cache behind, driver busy); retried. The message says why.
    Wait(String),
    /// Cannot be snapshotted as it stands; the message says what to fix.
    Invalid(String),
}

/// Resolves claim `namespace/claim` to its driver volume, from the cache and the driver's cache.
pub fn resolve(cluster: &ClusterView, driver: &dyn Driver, namespace: &str, claim: &str) -> Source {
    if claim.is_empty() {
        return Source::Invalid("spec.persistentVolumeClaimName is empty: name the claim to snapshot".into());
    }
    if !cluster.is_synced() {
        return Source::Wait("waiting for stork's cache of claims and volumes to sync".into());
    }
    let Some(pvc) = cluster.pvc(namespace, claim) else {
        return Source::Invalid(format!(
            "claim {namespace}/{claim} was not found: create it or fix spec.persistentVolumeClaimName"
        ));
    };
    let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let pv_name = pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or_default();
    if phase != "Bound" || pv_name.is_empty() {
        return Source::Wait(format!(
            "claim {namespace}/{claim} is not bound yet (phase {phase}); the snapshot is taken once it is"
        ));
    }
    let Some(pv) = cluster.pv(pv_name) else {
        return Source::Wait(format!("volume {pv_name} of claim {namespace}/{claim} is not in stork's cache yet"));
    };
    let name = driver.name();
    if !driver.owns_pvc(&pvc, cluster) || !driver.owns_pv(&pv) {
        return Source::Invalid(format!(
            "claim {namespace}/{claim} (volume {pv_name}) is not provisioned by the {name} storage driver; \
             stork snapshots only that driver's volumes"
        ));
    }
    match driver.volume(&pv) {
        Ok(Some(v)) => Source::Volume { pv: pv_name.to_string(), volume_id: v.id.clone() },
        Ok(None) => Source::Invalid(format!(
            "volume {pv_name} of claim {namespace}/{claim} is not known to the {name} storage driver"
        )),
        Err(e) => Source::Wait(format!("the storage driver cannot look up volume {pv_name}: {e}")),
    }
}

/// The data object to read: the bound one, else the one stork is making.
pub fn data_to_read(s: &VolumeSnapshot) -> Option<String> {
    Some(s.spec.snapshot_data_name.clone()).filter(|n| !n.is_empty()).or_else(|| stork_id(s))
}

/// The driver snapshot to look up: stork's own, or the one a pre-provisioned data object of
/// this driver names.
pub fn driver_snapshot_to_read(s: &VolumeSnapshot, driver: &str, data: Option<&VolumeSnapshotData>) -> Option<String> {
    stork_id(s).or_else(|| {
        let src = data?.spec.driver_snapshot.as_ref()?;
        (src.driver == driver && !src.snapshot_id.is_empty()).then(|| src.snapshot_id.clone())
    })
}

/// Whether a data object points back at `s`: namespace and name (or Go Stork's `ns/name` as
/// the name), and the UID when it records one.
pub fn points_at(data: &VolumeSnapshotData, s: &VolumeSnapshot) -> bool {
    let Some(r) = &data.spec.volume_snapshot_ref else { return false };
    let (ns, name) = (s.namespace().unwrap_or_default(), s.name_any());
    let r_ns = r.namespace.as_deref().unwrap_or_default();
    let r_name = r.name.as_deref().unwrap_or_default();
    let same = (r_ns == ns && r_name == name) || (r_ns.is_empty() && r_name == format!("{ns}/{name}"));
    let uid = r.uid.as_deref().unwrap_or_default();
    same && (uid.is_empty() || Some(uid) == s.metadata.uid.as_deref())
}

/// Whose deletion needs cleaning up: stork's own snapshots only, by their recorded id (also the
/// data object's name). Pre-provisioned snapshots leave the driver and the data alone.
pub fn cleanup_plan(s: &VolumeSnapshot) -> Option<String> {
    stork_id(s)
}
