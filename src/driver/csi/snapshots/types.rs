//! The client side of the CSI snapshot API (`VolumeSnapshot`, `VolumeSnapshotContent`: only the
//! fields stork uses) and what stork keeps about a restore.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{CSIPersistentVolumeSource, ObjectReference, VolumeNodeAffinity},
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Time},
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Spec of a CSI `VolumeSnapshot` (only the fields stork uses). The CRD is installed with the
/// CSI snapshot controller, not by stork.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "snapshot.storage.k8s.io",
    version = "v1",
    kind = "VolumeSnapshot",
    root = "CsiVolumeSnapshot",
    namespaced,
    status = "CsiVolumeSnapshotStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct CsiVolumeSnapshotSpec {
    /// What to snapshot.
    pub source: CsiSnapshotSource,
    /// The VolumeSnapshotClass; unset means the driver's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
}

/// Source of a CSI `VolumeSnapshot`: exactly one of the two is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CsiSnapshotSource {
    /// A claim in the snapshot's namespace (dynamic snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim_name: Option<String>,
    /// A pre-provisioned content object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_content_name: Option<String>,
}

/// Status of a CSI `VolumeSnapshot`, written by the CSI snapshot controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CsiVolumeSnapshotStatus {
    /// The content object holding the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_volume_snapshot_content_name: Option<String>,
    /// When the storage system took the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<Time>,
    /// Whether a volume can be restored from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    /// Smallest volume it restores into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_size: Option<Quantity>,
    /// The last error taking it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CsiSnapshotError>,
}

/// An error of a CSI snapshot object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct CsiSnapshotError {
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Spec of a CSI `VolumeSnapshotContent` (cluster-scoped; only the fields stork reads).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "snapshot.storage.k8s.io",
    version = "v1",
    kind = "VolumeSnapshotContent",
    root = "CsiVolumeSnapshotContent"
)]
#[serde(rename_all = "camelCase")]
pub struct CsiVolumeSnapshotContentSpec {
    /// The CSI driver that took the snapshot.
    #[serde(default)]
    pub driver: String,
    /// The `VolumeSnapshot` this content is bound to.
    #[serde(default)]
    pub volume_snapshot_ref: ObjectReference,
    /// `Filesystem` or `Block`: a restore must ask for the same mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_volume_mode: Option<String>,
}

/// What stork keeps about a volume it restored: enough to build its PV and to delete it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRecord {
    /// The snapshot id it was restored from.
    pub snapshot: String,
    /// Namespace of the helper claim (the snapshot's).
    pub namespace: String,
    /// UID of the helper claim, so only that claim is ever deleted.
    pub helper_claim_uid: String,
    /// Name of the helper PV.
    pub helper_pv: String,
    /// The volume's CSI source, secrets references included.
    pub csi: CSIPersistentVolumeSource,
    /// The volume's node affinity (CSI topology), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_affinity: Option<VolumeNodeAffinity>,
    /// StorageClass it was provisioned with (the deleter PV names it for provisioner secrets).
    #[serde(default)]
    pub storage_class: String,
    /// The external-provisioner that provisioned it (`pv.kubernetes.io/provisioned-by`).
    #[serde(default)]
    pub provisioner: String,
    /// Capacity of the helper PV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Quantity>,
    /// Access modes of the helper PV.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_modes: Vec<String>,
    /// Volume mode of the helper PV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mode: Option<String>,
    /// The helper PV's deletion-secret annotations, which the external-provisioner reads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What the helper claim of a restore asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreRequest {
    /// CSI StorageClass.
    pub storage_class: String,
    /// Requested size.
    pub size: Quantity,
    /// Access modes.
    pub access_modes: Vec<String>,
    /// Volume mode of the snapshot's source volume, when the content says.
    pub volume_mode: Option<String>,
}

/// Where a helper claim stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperState {
    /// Bound to this PV.
    Bound(String),
    /// Not bound yet; the message says what stork waits for.
    Waiting(String),
    /// The claim restores another snapshot.
    Foreign(String),
}
