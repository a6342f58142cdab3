//! The pure restore half of the CSI snapshot driver: the helper claim's request, class and
//! state, the records of restored volumes (read from what the external-provisioner writes) and
//! the PVs built from them. No API calls.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::{
    api::core::v1::{
        CSIPersistentVolumeSource, ConfigMap, ObjectReference, PersistentVolume, PersistentVolumeClaim,
        PersistentVolumeClaimSpec, PersistentVolumeSpec, TypedLocalObjectReference, VolumeResourceRequirements,
    },
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::ObjectMeta},
    jiff::Timestamp,
};
use kube::ResourceExt;

use super::{
    ACCESS_MODES, ACCESS_MODES_PARAMETER, CSI_SNAPSHOT_GROUP, CsiVolumeSnapshotContent, DELETER_PREFIX,
    DELETION_SECRET_ANNOTATION_PREFIX, HELPER_PREFIX, HelperState, PROVISIONED_BY, RESTORED_VOLUME_LABEL,
    RESTORES_CONFIGMAP, RestoreRecord, RestoreRequest, SIZE_PARAMETER, STORAGE_CLASS_PARAMETER,
};
use crate::{cluster::ClusterView, driver::SnapshotError, knobs::is_label_value};

/// The helper claim's request, from the restore class's parameters and the snapshot.
pub fn restore_request(
    parameters: &BTreeMap<String, String>,
    restore_size: Option<&Quantity>,
    content: &CsiVolumeSnapshotContent,
) -> Result<RestoreRequest, SnapshotError> {
    let param = |k: &str| parameters.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let storage_class = param(STORAGE_CLASS_PARAMETER).ok_or_else(|| {
        SnapshotError::Invalid(format!(
            "the restore StorageClass needs parameter {STORAGE_CLASS_PARAMETER}: the CSI StorageClass to restore with"
        ))
    })?;
    let size = match param(SIZE_PARAMETER) {
        Some(s) => Quantity(s.into()),
        None => restore_size.filter(|q| !q.0.is_empty()).cloned().ok_or_else(|| {
            SnapshotError::Invalid(format!(
                "the CSI snapshot has no restoreSize: set parameter {SIZE_PARAMETER} on the restore StorageClass"
            ))
        })?,
    };
    let access_modes = match param(ACCESS_MODES_PARAMETER) {
        None => vec!["ReadWriteOnce".to_string()],
        Some(v) => {
            let modes: Vec<String> = v.split(',').map(str::trim).filter(|m| !m.is_empty()).map(Into::into).collect();
            if modes.is_empty() || modes.iter().any(|m| !ACCESS_MODES.contains(&m.as_str())) {
                return Err(SnapshotError::Invalid(format!(
                    "parameter {ACCESS_MODES_PARAMETER} must be a comma-separated list of {}, not {v:?}",
                    ACCESS_MODES.join(", ")
                )));
            }
            modes
        }
    };
    let volume_mode = content.spec.source_volume_mode.clone().filter(|m| !m.is_empty());
    Ok(RestoreRequest { storage_class: storage_class.into(), size, access_modes, volume_mode })
}

/// The restore class must be a cached CSI class of the snapshot's driver that binds at once.
pub(super) fn check_class(cluster: &ClusterView, name: &str, driver: &str) -> Result<(), SnapshotError> {
    let class = cluster.storage_class(name).ok_or_else(|| {
        SnapshotError::Invalid(format!("StorageClass {name} (parameter {STORAGE_CLASS_PARAMETER}) does not exist"))
    })?;
    class_fits(name, &class.provisioner, class.volume_binding_mode.as_deref(), driver)
}

/// Whether a StorageClass can restore a snapshot of `driver` without a consumer pod.
pub fn class_fits(
    name: &str,
    provisioner: &str,
    binding_mode: Option<&str>,
    driver: &str,
) -> Result<(), SnapshotError> {
    if !driver.is_empty() && provisioner != driver {
        return Err(SnapshotError::Invalid(format!(
            "StorageClass {name} (parameter {STORAGE_CLASS_PARAMETER}) provisions with {provisioner}, but the snapshot \
             was taken by {driver}"
        )));
    }
    if binding_mode == Some("WaitForFirstConsumer") {
        return Err(SnapshotError::Invalid(format!(
            "StorageClass {name} (parameter {STORAGE_CLASS_PARAMETER}) waits for a first consumer, and stork's helper \
             claim has none: name a class with volumeBindingMode Immediate"
        )));
    }
    Ok(())
}

/// The helper claim restoring snapshot `snapshot_id` (a CSI VolumeSnapshot in `namespace`).
pub fn helper_pvc(volume_id: &str, namespace: &str, snapshot_id: &str, req: &RestoreRequest) -> PersistentVolumeClaim {
    let labels = is_label_value(volume_id).then(|| BTreeMap::from([(RESTORED_VOLUME_LABEL.into(), volume_id.into())]));
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(format!("{HELPER_PREFIX}{volume_id}")),
            namespace: Some(namespace.into()),
            labels,
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(req.access_modes.clone()),
            data_source: Some(TypedLocalObjectReference {
                api_group: Some(CSI_SNAPSHOT_GROUP.into()),
                kind: "VolumeSnapshot".into(),
                name: snapshot_id.into(),
            }),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".into(), req.size.clone())])),
                ..VolumeResourceRequirements::default()
            }),
            storage_class_name: Some(req.storage_class.clone()),
            volume_mode: req.volume_mode.clone(),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// Where a helper claim stands; one unbound past `timeout` says where to look.
pub fn helper_state(pvc: &PersistentVolumeClaim, snapshot_id: &str, now: Timestamp, timeout: Duration) -> HelperState {
    let (ns, name) = (pvc.namespace().unwrap_or_default(), pvc.name_any());
    let spec = pvc.spec.as_ref();
    let source = spec.and_then(|s| s.data_source.as_ref());
    let ours = source.is_some_and(|d| {
        d.name == snapshot_id && d.kind == "VolumeSnapshot" && d.api_group.as_deref() == Some(CSI_SNAPSHOT_GROUP)
    });
    if !ours {
        let from = source.map_or_else(|| "no snapshot".to_string(), |d| format!("{} {}", d.kind, d.name));
        return HelperState::Foreign(format!(
            "claim {ns}/{name} exists already and restores {from}, not {snapshot_id}"
        ));
    }
    if pvc.metadata.deletion_timestamp.is_some() {
        return HelperState::Waiting(format!("restore in progress: waiting for the deleted claim {ns}/{name} to go"));
    }
    let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let volume = spec.and_then(|s| s.volume_name.as_deref()).filter(|v| !v.is_empty());
    match (phase, volume) {
        ("Bound", Some(pv)) => HelperState::Bound(pv.to_string()),
        ("Lost", _) => HelperState::Waiting(format!(
            "claim {ns}/{name} lost its volume: delete the claim so that stork restores again"
        )),
        _ => {
            let age = pvc.metadata.creation_timestamp.as_ref().map(|t| now.duration_since(t.0).as_secs());
            let class = spec.and_then(|s| s.storage_class_name.as_deref()).unwrap_or_default();
            match age.filter(|a| u64::try_from(*a).is_ok_and(|a| a >= timeout.as_secs())) {
                Some(age) => HelperState::Waiting(format!(
                    "restore in progress: claim {ns}/{name} (StorageClass {class}) is still not bound after {age}s; \
                     see its events (kubectl describe pvc -n {ns} {name}) and the CSI driver's provisioner"
                )),
                None => HelperState::Waiting(format!(
                    "restore in progress: waiting for claim {ns}/{name} (StorageClass {class}) to be bound by the CSI \
                     provisioner"
                )),
            }
        }
    }
}

/// The record of a volume restored into a bound helper claim's PV.
pub fn record_from_pv(
    snapshot_id: &str,
    claim: &PersistentVolumeClaim,
    pv: &PersistentVolume,
) -> Result<RestoreRecord, SnapshotError> {
    let pv_name = pv.name_any();
    let spec = pv.spec.clone().unwrap_or_default();
    let csi = spec.csi.filter(|c| !c.driver.is_empty() && !c.volume_handle.is_empty()).ok_or_else(|| {
        SnapshotError::Invalid(format!(
            "PV {pv_name} of the restore is not a CSI volume (no spec.csi driver and handle)"
        ))
    })?;
    let claim_uid = claim.metadata.uid.clone().unwrap_or_default();
    if spec.claim_ref.as_ref().and_then(|r| r.uid.as_deref()) != Some(claim_uid.as_str()) {
        return Err(SnapshotError::Failed(format!("PV {pv_name} is not bound to the restore claim yet")));
    }
    let annotations = pv.annotations();
    Ok(RestoreRecord {
        snapshot: snapshot_id.into(),
        namespace: claim.namespace().unwrap_or_default(),
        helper_claim_uid: claim_uid,
        helper_pv: pv_name,
        provisioner: annotations.get(PROVISIONED_BY).cloned().unwrap_or_else(|| csi.driver.clone()),
        csi,
        node_affinity: spec.node_affinity,
        storage_class: spec.storage_class_name.unwrap_or_default(),
        capacity: spec.capacity.and_then(|c| c.get("storage").cloned()),
        access_modes: spec.access_modes.unwrap_or_default(),
        volume_mode: spec.volume_mode,
        annotations: annotations
            .iter()
            .filter(|(k, _)| k.starts_with(DELETION_SECRET_ANNOTATION_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

/// The volume source stork's provisioner puts into the restored volume's PV.
pub fn pv_source_of(volume_id: &str, rec: Option<&RestoreRecord>) -> PersistentVolumeSpec {
    match rec {
        Some(r) => PersistentVolumeSpec {
            csi: Some(r.csi.clone()),
            node_affinity: r.node_affinity.clone(),
            ..PersistentVolumeSpec::default()
        },
        None => PersistentVolumeSpec {
            csi: Some(CSIPersistentVolumeSource { volume_handle: volume_id.into(), ..Default::default() }),
            ..PersistentVolumeSpec::default()
        },
    }
}

/// A released PV holding a restored volume, made for the CSI driver's external-provisioner to
/// delete it: reclaim `Delete`, `provisioned-by` the driver, and a claim reference no claim
/// matches (its uid is not a real one), so the PV controller marks it `Released` at once.
pub fn deleter_pv(volume_id: &str, rec: &RestoreRecord) -> PersistentVolume {
    let mut annotations = rec.annotations.clone();
    let provisioner = if rec.provisioner.is_empty() { &rec.csi.driver } else { &rec.provisioner };
    annotations.insert(PROVISIONED_BY.into(), provisioner.clone());
    let labels = is_label_value(volume_id).then(|| BTreeMap::from([(RESTORED_VOLUME_LABEL.into(), volume_id.into())]));
    let modes = if rec.access_modes.is_empty() { vec!["ReadWriteOnce".into()] } else { rec.access_modes.clone() };
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(format!("{DELETER_PREFIX}{volume_id}")),
            annotations: Some(annotations),
            labels,
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            csi: Some(rec.csi.clone()),
            node_affinity: rec.node_affinity.clone(),
            // PVs must state a capacity; the provisioner ignores it when deleting.
            capacity: Some(BTreeMap::from([(
                "storage".into(),
                rec.capacity.clone().unwrap_or_else(|| Quantity("1".into())),
            )])),
            access_modes: Some(modes),
            volume_mode: rec.volume_mode.clone(),
            storage_class_name: Some(rec.storage_class.clone()).filter(|c| !c.is_empty()),
            persistent_volume_reclaim_policy: Some("Delete".into()),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(rec.namespace.clone()),
                name: Some(format!("{HELPER_PREFIX}{volume_id}")),
                uid: Some(format!("stork-deleted-{volume_id}")),
                ..ObjectReference::default()
            }),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    }
}

/// Whether a PV is still the helper PV of a record (bound to its claim, holding its volume).
pub(super) fn is_helper_pv(pv: &PersistentVolume, rec: &RestoreRecord) -> bool {
    let spec = pv.spec.as_ref();
    spec.and_then(|s| s.claim_ref.as_ref()?.uid.as_deref()) == Some(rec.helper_claim_uid.as_str())
        && spec.and_then(|s| s.csi.as_ref()).is_some_and(|c| c.volume_handle == rec.csi.volume_handle)
}

pub(super) fn reclaim_policy(pv: &PersistentVolume) -> &str {
    // An unset policy is the API default for a PV created directly, Retain.
    pv.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()).unwrap_or("Retain")
}

/// The records in the restores ConfigMap; an entry that does not parse is skipped with a warning.
pub fn parse_records(cm: Option<&ConfigMap>) -> BTreeMap<String, RestoreRecord> {
    let data = cm.and_then(|c| c.data.as_ref());
    data.into_iter()
        .flatten()
        .filter_map(|(k, v)| match serde_json::from_str(v) {
            Ok(r) => Some((k.clone(), r)),
            Err(e) => {
                tracing::warn!(volume = %k, error = %e, "unreadable CSI restore record in {RESTORES_CONFIGMAP}; ignored");
                None
            }
        })
        .collect()
}

/// A record by volume id, or (with `by_handle`) by its CSI volume handle.
pub(super) fn lookup(
    records: &BTreeMap<String, RestoreRecord>,
    key: &str,
    by_handle: bool,
) -> Option<(String, RestoreRecord)> {
    records
        .get_key_value(key)
        .or_else(|| by_handle.then(|| records.iter().find(|(_, r)| r.csi.volume_handle == key)).flatten())
        .map(|(k, r)| (k.clone(), r.clone()))
}
