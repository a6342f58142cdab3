//! The snapshot custom resources, as Rust types. `manifests/crds.yaml` is generated from them
//! (`stork crds`), and a test keeps the two equal.
//!
//! `VolumeSnapshot` and `VolumeSnapshotData` keep the shape of the legacy external-storage API
//! (`volumesnapshot.external-storage.k8s.io/v1`) that Stork users already have objects of;
//! `VolumeSnapshotRestore` keeps Stork's `stork.libopenstorage.org/v1alpha1` shape.

// Several `printcolumn(type_ = "string", …)` in one `#[kube]` look like repeated attributes to
// clippy; they are separate columns.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::{
    api::core::v1::ObjectReference, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::Time,
};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the legacy snapshot resources.
pub const SNAPSHOT_GROUP: &str = "volumesnapshot.external-storage.k8s.io";
/// API group of stork's own resources.
pub const STORK_GROUP: &str = "stork.libopenstorage.org";
/// A `*.k8s.io` group needs this annotation; the value is the API review of the original.
#[cfg(test)]
const API_APPROVED: &str = "https://github.com/kubernetes-csi/external-snapshotter/pull/419";

/// Condition type: the snapshot is being taken.
pub const CONDITION_PENDING: &str = "Pending";
/// Condition type: the snapshot can be restored.
pub const CONDITION_READY: &str = "Ready";
/// Condition type: the snapshot failed; the message says why.
pub const CONDITION_ERROR: &str = "Error";

/// What to snapshot. Name and namespace come from the object's metadata.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "volumesnapshot.external-storage.k8s.io",
    version = "v1",
    kind = "VolumeSnapshot",
    plural = "volumesnapshots",
    namespaced,
    status = "SnapshotStatus",
    shortname = "svs",
    shortname = "stork-volumesnapshot",
    shortname = "stork-volumesnapshots",
    annotation("api-approved.kubernetes.io", "https://github.com/kubernetes-csi/external-snapshotter/pull/419"),
    printcolumn(name = "PVC", type_ = "string", json_path = ".spec.persistentVolumeClaimName"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Data", type_ = "string", json_path = ".spec.snapshotDataName"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSpec {
    /// The claim to snapshot, in the snapshot's namespace.
    #[serde(default)]
    pub persistent_volume_claim_name: String,
    /// The `VolumeSnapshotData` holding the snapshot, once taken.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub snapshot_data_name: String,
}

/// Status shared by `VolumeSnapshot` and `VolumeSnapshotData`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStatus {
    /// When the driver took the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<Time>,
    /// `Pending`, `Ready` or `Error`; the newest one with status `True` is the state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<SnapshotCondition>,
}

/// One condition of a snapshot.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotCondition {
    /// `Pending`, `Ready` or `Error`. A string, so that objects written by other tools load.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// When the condition last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// One-word reason.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// What happened, or what to fix.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl SnapshotStatus {
    /// The condition of a type with status `True`, if any.
    pub fn condition(&self, type_: &str) -> Option<&SnapshotCondition> {
        self.conditions.iter().find(|c| c.type_ == type_ && c.status == "True")
    }

    /// Whether the snapshot is Ready.
    pub fn is_ready(&self) -> bool {
        self.condition(CONDITION_READY).is_some()
    }

    /// The error message, when the snapshot failed.
    pub fn error(&self) -> Option<&str> {
        self.condition(CONDITION_ERROR).map(|c| c.message.as_str())
    }
}

/// The driver's snapshot behind a `VolumeSnapshot`. Cluster-scoped.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "volumesnapshot.external-storage.k8s.io",
    version = "v1",
    kind = "VolumeSnapshotData",
    plural = "volumesnapshotdatas",
    status = "SnapshotStatus",
    shortname = "svsd",
    shortname = "stork-volumesnapshotdata",
    shortname = "stork-volumesnapshotdatas",
    annotation("api-approved.kubernetes.io", "https://github.com/kubernetes-csi/external-snapshotter/pull/419"),
    printcolumn(name = "Snapshot", type_ = "string", json_path = ".spec.volumeSnapshotRef.name"),
    printcolumn(name = "Driver", type_ = "string", json_path = ".spec.driverSnapshot.driver"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
// Sources written by Stork's drivers (portworxVolume, hostPath, …) are kept by the API server.
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct VolumeSnapshotDataSpec {
    /// The `VolumeSnapshot` this data belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_ref: Option<ObjectReference>,
    /// The PV that was snapshotted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_ref: Option<ObjectReference>,
    /// The snapshot in stork's storage driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_snapshot: Option<DriverSnapshotSource>,
}

/// Where a snapshot lives in a stork storage driver.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriverSnapshotSource {
    /// Driver name (`mock`, `csi`).
    pub driver: String,
    /// The driver's snapshot id.
    pub snapshot_id: String,
    /// The driver volume it was taken of.
    pub volume_id: String,
}

/// An in-place restore of a snapshot into the claim it was taken of.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "stork.libopenstorage.org",
    version = "v1alpha1",
    kind = "VolumeSnapshotRestore",
    plural = "volumesnapshotrestores",
    namespaced,
    status = "VolumeSnapshotRestoreStatus",
    shortname = "snapshotrestore",
    shortname = "snapshotrestores",
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.sourceName"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
// Fields of Stork's spec that stork does not read (e.g. `pvcs`) are kept by the API server.
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct VolumeSnapshotRestoreSpec {
    /// The `VolumeSnapshot` to restore.
    #[serde(default)]
    pub source_name: String,
    /// Its namespace; default: the restore's.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_namespace: String,
    /// Restore a group snapshot (not supported: the restore fails saying so).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub group_snapshot: bool,
}

/// Progress of an in-place restore.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotRestoreStatus {
    /// `""`, `Pending`, `InProgress`, `Staged`, `Successful` or `Failed`.
    #[serde(default)]
    pub status: String,
    /// The volumes being restored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<RestoreVolumeInfo>,
    /// What the restore is doing or waiting for, or why it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// When the current stage began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_started_at: Option<Time>,
}

/// One volume of an in-place restore.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreVolumeInfo {
    /// Driver volume id.
    pub volume: String,
    /// Claim name.
    pub pvc: String,
    /// Claim namespace.
    pub namespace: String,
    /// Driver snapshot id.
    pub snapshot: String,
    /// Stage of this volume.
    #[serde(default)]
    pub status: String,
    /// Why this volume is in its stage.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// Every CRD stork serves, in manifest order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        VolumeSnapshot::crd(),
        VolumeSnapshotData::crd(),
        VolumeSnapshotRestore::crd(),
        super::rule::crd(),
        super::group::GroupVolumeSnapshot::crd(),
        super::schedule::SchedulePolicy::crd(),
        super::schedule::VolumeSnapshotSchedule::crd(),
    ]
}

/// The CRDs as one multi-document YAML file, as checked in at `manifests/crds.yaml`.
pub fn crds_yaml() -> String {
    let mut out = String::from("# Generated by `stork crds` from src/model/crd.rs; do not edit.\n");
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd).expect("a CRD serializes to YAML"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crds_carry_the_names_and_scopes_stork_users_already_have() {
        let [snap, data, restore, rule, group, policy, schedule] = crds().try_into().unwrap();
        assert_eq!(snap.metadata.name.as_deref(), Some("volumesnapshots.volumesnapshot.external-storage.k8s.io"));
        assert_eq!(snap.spec.scope, "Namespaced");
        assert_eq!(data.spec.scope, "Cluster");
        assert_eq!(data.spec.names.short_names.as_deref().unwrap()[0], "svsd");
        assert_eq!(restore.metadata.name.as_deref(), Some("volumesnapshotrestores.stork.libopenstorage.org"));
        assert_eq!(rule.metadata.name.as_deref(), Some("rules.stork.libopenstorage.org"));
        assert_eq!(group.metadata.name.as_deref(), Some("groupvolumesnapshots.stork.libopenstorage.org"));
        assert_eq!(group.spec.scope, "Namespaced");
        assert_eq!(policy.metadata.name.as_deref(), Some("schedulepolicies.stork.libopenstorage.org"));
        assert_eq!(policy.spec.scope, "Cluster");
        assert_eq!(schedule.metadata.name.as_deref(), Some("volumesnapshotschedules.stork.libopenstorage.org"));
        let approved = snap.metadata.annotations.unwrap();
        assert_eq!(approved["api-approved.kubernetes.io"], API_APPROVED);
    }

    #[test]
    fn the_checked_in_crds_match_the_rust_types() {
        let checked_in = include_str!("../../manifests/crds.yaml");
        assert!(
            checked_in == crds_yaml(),
            "manifests/crds.yaml is out of date with src/model/crd.rs: run `just crds` and commit the result"
        );
    }

    #[test]
    fn a_snapshot_written_by_stork_in_go_decodes() {
        let v: VolumeSnapshot =
            serde_json::from_str(include_str!("../../tests/data/snapshot/go-volumesnapshot.json")).expect("decodes");
        let status = v.status.unwrap();
        assert!(status.is_ready());
        assert_eq!(v.spec.snapshot_data_name, "k8s-volume-snapshot-2f3c5e1a");
    }
}
