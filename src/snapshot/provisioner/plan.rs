//! Pure decisions of the restore provisioner: is a claim ours, is it valid, what PV to create,
//! is a released PV ours to delete.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::api::{
    core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec},
    storage::v1::StorageClass,
};
use kube::{api::ObjectMeta, runtime::reflector::ObjectRef};

use super::{IDENTITY_ANNOTATION, PROVISIONED_BY, PROVISIONER_IDENTITY, STORAGE_PROVISIONER_ANNOTATIONS};
use crate::{
    knobs::{SNAPSHOT_ANNOTATION, SNAPSHOT_PROVISIONER},
    model::crd::{VolumeSnapshot, VolumeSnapshotData},
    model::restore_claim::{self, Readiness, SnapshotFacts},
};

/// Why a restore claim cannot be provisioned (yet). The message is the event the user sees and
/// says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionError {
    /// `spec.selector` is set.
    #[error(
        "claim Selector is not supported: a claim restored from a snapshot gets a new volume; remove spec.selector"
    )]
    Selector,
    /// The snapshot annotation is missing or empty.
    #[error("no snapshot to restore: annotate the claim with {SNAPSHOT_ANNOTATION}: <VolumeSnapshot name>")]
    NoSnapshotAnnotation,
    /// The named snapshot does not exist.
    #[error(
        "VolumeSnapshot {0} named by annotation {SNAPSHOT_ANNOTATION} was not found: create it or fix the annotation"
    )]
    SnapshotNotFound(SnapshotSource),
    /// The snapshot's restore-namespaces rule does not admit the claim's namespace.
    #[error("{0}")]
    CrossNamespace(String),
    /// The snapshot is being deleted.
    #[error("VolumeSnapshot {0} is being deleted: point annotation {SNAPSHOT_ANNOTATION} at another one")]
    SnapshotDeleting(SnapshotSource),
    /// The snapshot failed and will never be restorable; the message is the snapshot's error.
    #[error(
        "VolumeSnapshot {0} failed and cannot be restored ({1}): take a new snapshot and point annotation \
         {SNAPSHOT_ANNOTATION} at it"
    )]
    SnapshotFailed(SnapshotSource, String),
    /// The snapshot is still being taken: not a failure, the claim waits.
    #[error("waiting for VolumeSnapshot {0} to become ready; the claim is provisioned once it is")]
    SnapshotNotReady(SnapshotSource),
    /// The snapshot names no data object.
    #[error("VolumeSnapshot {0} is not bound to any VolumeSnapshotData (spec.snapshotDataName is empty)")]
    NotBound(SnapshotSource),
    /// The data object (named first) the snapshot names does not exist.
    #[error("VolumeSnapshotData {0} of VolumeSnapshot {1} was not found")]
    DataNotFound(String, SnapshotSource),
    /// The data object (named first) belongs to another snapshot.
    #[error("VolumeSnapshotData {0} does not belong to VolumeSnapshot {1}: fix the snapshot's spec.snapshotDataName")]
    DataMismatch(String, SnapshotSource),
    /// The data object holds a snapshot of another driver, or none stork can read.
    #[error(
        "VolumeSnapshotData {data} was not taken by storage driver {driver} (its driver: {found}): stork restores \
         only its own driver's snapshots"
    )]
    WrongDriver {
        /// Data object name.
        data: String,
        /// This stork's driver.
        driver: String,
        /// The driver the data names, or `none`.
        found: String,
    },
}

impl ProvisionError {
    /// The claim waits for the snapshot; nothing is wrong.
    pub fn is_waiting(&self) -> bool {
        matches!(self, Self::SnapshotNotReady(_))
    }

    /// Only an edit of the claim can fix it (and an edit triggers a new attempt at once).
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Selector | Self::NoSnapshotAnnotation)
    }
}

/// The snapshot a restore claim names; displayed as `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSource {
    /// Snapshot namespace (the claim's unless the source-namespace annotation says otherwise).
    pub namespace: String,
    /// Snapshot name.
    pub name: String,
}

impl std::fmt::Display for SnapshotSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What to provision for a valid restore claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionPlan {
    /// PV name and driver volume id: `pvc-<claim uid>`.
    pub pv_name: String,
    /// The snapshot restored from.
    pub snapshot: SnapshotSource,
    /// The driver's snapshot id.
    pub snapshot_id: String,
    /// The class parameters, handed to the driver (they may choose replicas).
    pub parameters: BTreeMap<String, String>,
}

/// What to do with a PV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteDecision {
    /// Not ours, or not to be deleted (yet); the reason is for logs.
    Ignore(&'static str),
    /// Made by `stork-snapshot` but without an identity: the user is told, nothing is deleted.
    MissingIdentity,
    /// Delete the driver volume, then the PV.
    Delete {
        /// Driver volume id.
        volume_id: String,
    },
}

/// Whether the PV controller has handed this claim to `stork-snapshot` (either annotation) and
/// it still needs a volume: not bound, not being deleted.
pub fn assigned_to_us(pvc: &PersistentVolumeClaim) -> bool {
    let annotations = pvc.metadata.annotations.as_ref();
    let assigned = STORAGE_PROVISIONER_ANNOTATIONS
        .iter()
        .any(|k| annotations.and_then(|a| a.get(*k)).is_some_and(|p| p == SNAPSHOT_PROVISIONER));
    let bound = pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()).is_some_and(|v| !v.is_empty());
    assigned && !bound && pvc.metadata.deletion_timestamp.is_none()
}

/// Whether a StorageClass restores from stork snapshots.
pub fn class_is_ours(class: &StorageClass) -> bool {
    class.provisioner == SNAPSHOT_PROVISIONER
}

/// The PV (and driver volume) name of a claim, as external-provisioner names it.
pub fn pv_name(pvc: &PersistentVolumeClaim) -> Option<String> {
    pvc.metadata.uid.as_deref().filter(|u| !u.is_empty()).map(|u| format!("pvc-{u}"))
}

/// What a claim needs, before its snapshot is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimStep {
    /// Not a restore claim waiting for `stork-snapshot` (or its class is gone).
    Ignore,
    /// Its PV exists already: the PV controller binds it; nothing to do.
    Provisioned,
    /// Validate and provision PV `pv_name`.
    Provision {
        /// `pvc-<claim uid>`.
        pv_name: String,
    },
}

/// The first decision on a claim: is it ours (handed over, class with our provisioner) and is
/// its PV (`pv_exists`: the PV named by [`pv_name`]) still to be made.
pub fn claim_step(pvc: &PersistentVolumeClaim, class: Option<&StorageClass>, pv_exists: bool) -> ClaimStep {
    let Some(pv_name) = pv_name(pvc) else { return ClaimStep::Ignore };
    if !assigned_to_us(pvc) || !class.is_some_and(class_is_ours) {
        ClaimStep::Ignore
    } else if pv_exists {
        ClaimStep::Provisioned
    } else {
        ClaimStep::Provision { pv_name }
    }
}

/// The snapshot a claim names (Stork's checks 1–3: no selector, the annotation, its namespace).
pub fn snapshot_source(pvc: &PersistentVolumeClaim) -> Result<SnapshotSource, ProvisionError> {
    if pvc.spec.as_ref().is_some_and(|s| s.selector.is_some()) {
        return Err(ProvisionError::Selector);
    }
    let empty = BTreeMap::new();
    let annotations = pvc.metadata.annotations.as_ref().unwrap_or(&empty);
    let name = annotations.get(SNAPSHOT_ANNOTATION).map(|s| s.trim()).filter(|s| !s.is_empty());
    let name = name.ok_or(ProvisionError::NoSnapshotAnnotation)?;
    let claim_ns = pvc.metadata.namespace.as_deref().unwrap_or_default();
    let namespace = restore_claim::source_namespace(claim_ns, annotations).to_string();
    Ok(SnapshotSource { namespace, name: name.to_string() })
}

/// Validates a restore claim in Stork's order. `snapshot` and `data` are what the API returned
/// for the names the claim and the snapshot give (`None`: not found).
pub fn plan_provision(
    pvc: &PersistentVolumeClaim,
    class: &StorageClass,
    snapshot: Option<&VolumeSnapshot>,
    data: Option<&VolumeSnapshotData>,
    driver_name: &str,
) -> Result<ProvisionPlan, ProvisionError> {
    let source = snapshot_source(pvc)?;
    let Some(snap) = snapshot else { return Err(ProvisionError::SnapshotNotFound(source)) };
    let facts = SnapshotFacts::of(snap);
    let claim_ns = pvc.metadata.namespace.as_deref().unwrap_or_default();
    restore_claim::cross_namespace_allowed(&source.namespace, &source.name, &facts.annotations, claim_ns)
        .map_err(ProvisionError::CrossNamespace)?;
    if snap.metadata.deletion_timestamp.is_some() {
        return Err(ProvisionError::SnapshotDeleting(source));
    }
    match facts.readiness {
        Readiness::Ready => {}
        Readiness::Pending => return Err(ProvisionError::SnapshotNotReady(source)),
        Readiness::Error(message) => return Err(ProvisionError::SnapshotFailed(source, message)),
    }
    let data_name = snap.spec.snapshot_data_name.trim().to_string();
    if data_name.is_empty() {
        return Err(ProvisionError::NotBound(source));
    }
    let Some(data) = data else { return Err(ProvisionError::DataNotFound(data_name, source)) };
    let driver_snapshot = data.spec.driver_snapshot.as_ref();
    let Some(ds) = driver_snapshot.filter(|d| d.driver == driver_name && !d.snapshot_id.is_empty()) else {
        let found = match driver_snapshot {
            None => "none".to_string(),
            Some(d) if d.driver == driver_name => format!("{driver_name}, but no snapshot id"),
            Some(d) => d.driver.clone(),
        };
        return Err(ProvisionError::WrongDriver { data: data_name, driver: driver_name.to_string(), found });
    };
    // The data object is cluster-scoped and the snapshot names it freely: without this check a
    // snapshot in one namespace could restore another namespace's data.
    if !belongs_to(data, snap) {
        return Err(ProvisionError::DataMismatch(data_name, source));
    }
    let pv_name = pv_name(pvc).unwrap_or_default();
    let parameters = class.parameters.clone().unwrap_or_default();
    Ok(ProvisionPlan { pv_name, snapshot: source, snapshot_id: ds.snapshot_id.clone(), parameters })
}

/// Whether a data object's `volumeSnapshotRef` names this snapshot: the snapshot controller's
/// rule, so a binding it accepts (Go Stork's `ns/name` form included) restores, and one it
/// refuses does not.
fn belongs_to(data: &VolumeSnapshotData, snap: &VolumeSnapshot) -> bool {
    crate::snapshot::controller::points_at(data, snap)
}

/// The PV for a planned restore: the driver's volume source, pre-bound to the claim (`claimRef`
/// with its uid) so that the PV controller binds exactly this claim to it, with the class,
/// the class's reclaim policy (default `Delete`) and mount options, and the claim's size,
/// access modes and volume mode. Node affinity is whatever the driver's source has (none for
/// now; see the module docs).
pub fn build_pv(
    plan: &ProvisionPlan,
    pvc: &PersistentVolumeClaim,
    class: &StorageClass,
    source: PersistentVolumeSpec,
) -> PersistentVolume {
    let claim = pvc.spec.clone().unwrap_or_default();
    let size = claim.resources.and_then(|r| r.requests).and_then(|r| r.get("storage").cloned());
    let spec = PersistentVolumeSpec {
        claim_ref: Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("PersistentVolumeClaim".into()),
            namespace: pvc.metadata.namespace.clone(),
            name: pvc.metadata.name.clone(),
            uid: pvc.metadata.uid.clone(),
            ..ObjectReference::default()
        }),
        storage_class_name: class.metadata.name.clone(),
        persistent_volume_reclaim_policy: Some(class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into())),
        mount_options: class.mount_options.clone().or(source.mount_options.clone()),
        capacity: size.map(|q| BTreeMap::from([("storage".to_string(), q)])),
        access_modes: claim.access_modes,
        volume_mode: claim.volume_mode,
        ..source
    };
    let annotations = BTreeMap::from([
        (PROVISIONED_BY.to_string(), SNAPSHOT_PROVISIONER.to_string()),
        (IDENTITY_ANNOTATION.to_string(), PROVISIONER_IDENTITY.to_string()),
    ]);
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(plan.pv_name.clone()),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Whether a PV is to be deleted by this provisioner, as Stork's `Delete`: made by
/// `stork-snapshot`, released, reclaim policy `Delete`, and carrying stork's identity.
pub fn delete_decision(pv: &PersistentVolume) -> DeleteDecision {
    let annotations = pv.metadata.annotations.as_ref();
    let get = |k: &str| annotations.and_then(|a| a.get(k)).map(String::as_str);
    if get(PROVISIONED_BY) != Some(SNAPSHOT_PROVISIONER) {
        return DeleteDecision::Ignore("not provisioned by stork-snapshot");
    }
    if pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Released") {
        return DeleteDecision::Ignore("not released");
    }
    let spec = pv.spec.as_ref();
    // An unset policy is the API default, Retain.
    if spec.and_then(|s| s.persistent_volume_reclaim_policy.as_deref()) != Some("Delete") {
        return DeleteDecision::Ignore("reclaim policy is not Delete");
    }
    match get(IDENTITY_ANNOTATION) {
        None => return DeleteDecision::MissingIdentity,
        Some(id) if id != PROVISIONER_IDENTITY => {
            return DeleteDecision::Ignore("made by another provisioner identity");
        }
        Some(_) => {}
    }
    let handle = spec.and_then(|s| s.csi.as_ref()).map(|c| c.volume_handle.as_str()).filter(|h| !h.is_empty());
    let volume_id = handle.or(pv.metadata.name.as_deref()).unwrap_or_default().to_string();
    DeleteDecision::Delete { volume_id }
}

/// The cached claims that name a snapshot and still wait for a volume: a change of the
/// snapshot (Ready, new annotations) re-checks them at once instead of at the next retry.
pub fn claims_naming(
    claims: &[Arc<PersistentVolumeClaim>],
    snap: &VolumeSnapshot,
) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    let (ns, name) = (snap.metadata.namespace.as_deref(), snap.metadata.name.as_deref());
    claims
        .iter()
        .filter(|c| assigned_to_us(c))
        .filter(|c| snapshot_source(c).is_ok_and(|s| Some(s.namespace.as_str()) == ns && Some(s.name.as_str()) == name))
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}
