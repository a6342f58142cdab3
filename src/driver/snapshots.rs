//! The snapshot side of a storage driver: take, restore and delete snapshots.
//!
//! Unlike [`super::Driver`], these are actions, called from the leader's controllers, never on a
//! request path. Every action is keyed by an id the caller chooses and records before acting, so
//! a retry after a crash finds the earlier result instead of doing the work twice.

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::PersistentVolumeSpec;

use super::Volume;

/// Errors from snapshot actions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The driver does not know the volume.
    #[error("volume {0} is not known to the storage driver")]
    VolumeNotFound(String),
    /// The driver does not know the snapshot.
    #[error("snapshot {0} is not known to the storage driver")]
    SnapshotNotFound(String),
    /// The id is taken by something else (e.g. a restore id reused for another snapshot).
    #[error("{0}")]
    Conflict(String),
    /// The request cannot work as given (bad parameter); retrying will not help.
    #[error("{0}")]
    Invalid(String),
    /// The driver failed; a retry may succeed.
    #[error("storage driver failed: {0}")]
    Failed(String),
}

impl SnapshotError {
    /// Whether retrying the same call can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Failed(_))
    }
}

/// State of a driver snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotState {
    /// Being taken.
    Creating,
    /// Restorable.
    Ready,
    /// Failed; the message says why.
    Failed(String),
}

/// A snapshot as the driver reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverSnapshot {
    /// Snapshot id (the one the caller chose).
    pub id: String,
    /// The volume it was taken of.
    pub volume_id: String,
    /// State.
    pub state: SnapshotState,
    /// When it was taken, RFC 3339.
    pub created: String,
}

/// Progress of a long-running action (an in-place restore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Still running.
    InProgress,
    /// Finished.
    Done,
    /// Failed; the message says why.
    Failed(String),
}

/// Snapshot actions of a driver. Every method is idempotent for the same arguments.
#[async_trait]
pub trait SnapshotDriver: Send + Sync {
    /// Takes snapshot `id` of `volume_id`. If `id` exists already (a retry), returns it as it is.
    async fn create_snapshot(
        &self,
        id: &str,
        volume_id: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<DriverSnapshot, SnapshotError>;

    /// Takes one snapshot of each `(id, volume_id)` pair as a group. A driver that can take them
    /// at one instant does (see [`Self::group_consistent`]); the default takes them one after
    /// another, which is consistent only inside the quiesce window a pre-snapshot rule holds.
    /// Idempotent like [`Self::create_snapshot`]; on an error some may exist, and the caller
    /// deletes them by id.
    async fn create_group_snapshot(
        &self,
        members: &[(String, String)],
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<DriverSnapshot>, SnapshotError> {
        let mut out = Vec::with_capacity(members.len());
        for (id, volume_id) in members {
            out.push(self.create_snapshot(id, volume_id, labels).await?);
        }
        Ok(out)
    }

    /// Whether [`Self::create_group_snapshot`] takes every snapshot at one instant.
    fn group_consistent(&self) -> bool {
        false
    }

    /// The snapshot, or `None` if the driver does not have it.
    async fn snapshot(&self, id: &str) -> Result<Option<DriverSnapshot>, SnapshotError>;

    /// Deletes a snapshot; one that does not exist is already deleted.
    async fn delete_snapshot(&self, id: &str) -> Result<(), SnapshotError>;

    /// Creates volume `volume_id` from snapshot `snapshot_id`. `parameters` are the restore
    /// StorageClass's (they may choose replicas). If the volume exists from the same snapshot
    /// (a retry), returns it.
    async fn restore_volume(
        &self,
        snapshot_id: &str,
        volume_id: &str,
        parameters: &BTreeMap<String, String>,
    ) -> Result<Volume, SnapshotError>;

    /// Deletes a volume made by [`Self::restore_volume`]; one that does not exist is deleted.
    async fn delete_volume(&self, volume_id: &str) -> Result<(), SnapshotError>;

    /// Starts restoring `volume_id` in place from `snapshot_id`, as restore `restore_id`.
    async fn start_in_place_restore(
        &self,
        restore_id: &str,
        volume_id: &str,
        snapshot_id: &str,
    ) -> Result<(), SnapshotError>;

    /// Progress of in-place restore `restore_id`.
    async fn in_place_restore_status(&self, restore_id: &str) -> Result<Progress, SnapshotError>;

    /// Forgets in-place restore `restore_id` (after it finished, failed or was cancelled).
    async fn cleanup_in_place_restore(&self, restore_id: &str) -> Result<(), SnapshotError>;

    /// How a PV reaches a volume of this driver: a PV spec with only the volume source set
    /// (e.g. `csi`); the provisioner fills in the rest.
    fn pv_source(&self, volume_id: &str) -> PersistentVolumeSpec;
}
