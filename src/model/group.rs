//! Stork's `GroupVolumeSnapshot` (`stork.libopenstorage.org/v1alpha1`): one snapshot of every
//! claim a selector picks, all taken between one pre-snapshot rule and one post-snapshot rule.

// Several `printcolumn(type_ = "string", …)` in one `#[kube]` look like repeated attributes to
// clippy; they are separate columns.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::crd::SnapshotCondition;

/// Stage: the group was just created.
pub const STAGE_INITIAL: &str = "";
/// Stage: checking that every selected claim can be snapshotted.
pub const STAGE_PRE_CHECKS: &str = "PreChecks";
/// Stage: the pre-snapshot rule runs.
pub const STAGE_PRE_SNAPSHOT: &str = "PreSnapshot";
/// Stage: the snapshots are taken.
pub const STAGE_SNAPSHOT: &str = "Snapshot";
/// Stage: the post-snapshot rule runs.
pub const STAGE_POST_SNAPSHOT: &str = "PostSnapshot";
/// Stage: everything is done.
pub const STAGE_FINAL: &str = "Final";

/// Status: nothing done yet.
pub const STATUS_INITIAL: &str = "";
/// Status: waiting to start the stage.
pub const STATUS_PENDING: &str = "Pending";
/// Status: the stage is running.
pub const STATUS_IN_PROGRESS: &str = "InProgress";
/// Status: the group failed; `message` says why.
pub const STATUS_FAILED: &str = "Failed";
/// Status: every snapshot is taken and bound.
pub const STATUS_SUCCESSFUL: &str = "Successful";

/// What to snapshot together.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "stork.libopenstorage.org",
    version = "v1alpha1",
    kind = "GroupVolumeSnapshot",
    plural = "groupvolumesnapshots",
    namespaced,
    status = "GroupVolumeSnapshotStatus",
    shortname = "groupsnapshot",
    shortname = "groupsnapshots",
    shortname = "gs",
    printcolumn(name = "Stage", type_ = "string", json_path = ".status.stage"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
// Fields of later Stork versions (restoreNamespaces, maxRetries) are kept by the API server.
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct GroupVolumeSnapshotSpec {
    /// Rule run before the snapshots, in the group's namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pre_exec_rule: String,
    /// Rule run after the snapshots, in the group's namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub post_exec_rule: String,
    /// The claims of the group, in its namespace (a label selector, inlined as Stork has it).
    #[serde(default)]
    pub pvc_selector: LabelSelector,
    /// Passed to the storage driver.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// Progress of a group snapshot, with Stork's stage and status values.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupVolumeSnapshotStatus {
    /// `""`, `PreChecks`, `PreSnapshot`, `Snapshot`, `PostSnapshot` or `Final`.
    #[serde(default)]
    pub stage: String,
    /// `""`, `Pending`, `InProgress`, `Failed` or `Successful`.
    #[serde(default)]
    pub status: String,
    /// One entry per claim, once the snapshots are taken.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_snapshots: Vec<GroupMemberStatus>,
    /// What the group is doing, or why it failed (stork's addition).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// One snapshot of a group; keys as Stork writes them (Go field names, no JSON tags).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct GroupMemberStatus {
    /// The `VolumeSnapshot` made for the claim.
    #[serde(rename = "VolumeSnapshotName", default)]
    pub volume_snapshot_name: String,
    /// The driver's snapshot id.
    #[serde(rename = "TaskID", default)]
    pub task_id: String,
    /// The driver volume snapshotted.
    #[serde(rename = "ParentVolumeID", default)]
    pub parent_volume_id: String,
    /// Where the snapshot lives (driver-specific).
    #[serde(rename = "DataSource", default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("type" = "object", "x-kubernetes-preserve-unknown-fields" = true))]
    pub data_source: Option<serde_json::Value>,
    /// The snapshot's conditions.
    #[serde(rename = "Conditions", default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<SnapshotCondition>,
}
