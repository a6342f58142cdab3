//! Snapshots in the mock driver: every action is a pure change to the [`Records`], applied under
//! the driver's lock to the freshest state and written to the state file before it reports
//! success. Readers then see the rebuilt volumes (restored volumes look exactly like topology
//! volumes to the extender).
//!
//! Choices the trait leaves open:
//! - a snapshot id reused for another volume, a restore id reused for other arguments, and a
//!   volume id reused for another snapshot are [`SnapshotError::Conflict`];
//! - an in-place restore restores a volume from one of its own snapshots only, and one volume has
//!   at most one in-place restore running;
//! - the status of an unknown in-place restore is [`SnapshotError::Invalid`]: asking again will
//!   not make it known (its record was cleaned up, or the state file was removed);
//! - a restore whose snapshot or volume disappeared before it finished ends
//!   [`Progress::Failed`], and stays so until it is cleaned up.

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use k8s_openapi::{
    api::core::v1::{CSIPersistentVolumeSource, PersistentVolumeSpec},
    jiff::{SignedDuration, Timestamp},
};

use super::{
    MockDriver, PROVISIONER, State,
    state::{self, Override, Records, RestoreRecord, RestoredVolume, SnapshotRecord},
};
use crate::driver::{DriverSnapshot, Progress, SnapshotDriver, SnapshotError, SnapshotState, Volume};

/// StorageClass parameter of a restore class choosing the restored volume's replicas:
/// comma-separated storage ids. Without it a restored volume has its snapshot's replicas.
pub const REPLICAS_PARAMETER: &str = "mock.stork.libopenstorage.org/replicas";

/// What an action sees besides the records it changes.
struct Current<'a> {
    state: &'a State,
    topology_volumes: &'a HashSet<String>,
    now: Timestamp,
}

impl MockDriver {
    /// Runs `action` on a copy of the records, under the lock. A driver with a state file first
    /// re-reads it (another replica or a hand edit may have changed it since the last watch
    /// event). When the copy changed, it is written to the file before memory takes it, so
    /// success is only reported for state a restart will find.
    fn act<T>(
        &self,
        action: impl FnOnce(&mut Records, &Current<'_>) -> Result<T, SnapshotError>,
    ) -> Result<T, SnapshotError> {
        let mut inner = self.lock();
        if let Some(path) = &self.state_path {
            let fresh = state::read(path).map_err(|e| SnapshotError::Failed(describe(&e)))?;
            if fresh != inner.records {
                inner.records = fresh;
                self.publish(inner.state());
            }
        }
        let state = self.state.load_full();
        let mut records = inner.records.clone();
        let current = Current { state: &state, topology_volumes: &inner.topology_volumes, now: Timestamp::now() };
        let out = action(&mut records, &current)?;
        if records != inner.records {
            if let Some(path) = &self.state_path {
                state::write(path, &records).map_err(SnapshotError::Failed)?;
            }
            inner.records = records;
            self.publish(inner.state());
        }
        Ok(out)
    }
}

/// An error with its causes, for a message that says what to fix.
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

fn require(what: &str, id: &str) -> Result<(), SnapshotError> {
    if id.is_empty() { Err(SnapshotError::Invalid(format!("a {what} id is required"))) } else { Ok(()) }
}

fn driver_snapshot(id: &str, s: &SnapshotRecord) -> DriverSnapshot {
    DriverSnapshot {
        id: id.to_string(),
        volume_id: s.volume.clone(),
        state: SnapshotState::Ready,
        created: s.created.clone(),
    }
}

fn create(
    r: &mut Records,
    cur: &Current<'_>,
    id: &str,
    volume_id: &str,
    tags: &BTreeMap<String, String>,
) -> Result<DriverSnapshot, SnapshotError> {
    require("snapshot", id)?;
    if let Some(s) = r.snapshots.get(id) {
        if s.volume != volume_id {
            return Err(SnapshotError::Conflict(format!("snapshot {id} exists already, of volume {}", s.volume)));
        }
        return Ok(driver_snapshot(id, s));
    }
    let vol = cur.state.volumes.get(volume_id).ok_or_else(|| SnapshotError::VolumeNotFound(volume_id.to_string()))?;
    let s = SnapshotRecord {
        volume: volume_id.to_string(),
        replicas: vol.replicas.clone(),
        labels: vol.labels.clone(),
        tags: tags.clone(),
        anti_hyperconvergence: vol.anti_hyperconvergence,
        windows: vol.windows,
        created: cur.now.to_string(),
    };
    let out = driver_snapshot(id, &s);
    r.snapshots.insert(id.to_string(), s);
    Ok(out)
}

/// The storage ids a restore class's [`REPLICAS_PARAMETER`] names, all known to the driver.
fn parameter_replicas(value: &str, state: &State) -> Result<Vec<String>, SnapshotError> {
    let mut ids: Vec<String> = Vec::new();
    for id in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !ids.iter().any(|known| known == id) {
            ids.push(id.to_string());
        }
    }
    if ids.is_empty() {
        return Err(SnapshotError::Invalid(format!(
            "StorageClass parameter {REPLICAS_PARAMETER} names no storage ids"
        )));
    }
    let unknown: Vec<&str> = ids.iter().map(String::as_str).filter(|id| state.inventory.by_id(id).is_none()).collect();
    if !unknown.is_empty() {
        return Err(SnapshotError::Invalid(format!(
            "StorageClass parameter {REPLICAS_PARAMETER} names storage ids the driver does not know: {}",
            unknown.join(", ")
        )));
    }
    Ok(ids)
}

fn restore(
    r: &mut Records,
    cur: &Current<'_>,
    snapshot_id: &str,
    volume_id: &str,
    parameters: &BTreeMap<String, String>,
) -> Result<Volume, SnapshotError> {
    require("snapshot", snapshot_id)?;
    require("volume", volume_id)?;
    if let Some(v) = r.volumes.get(volume_id) {
        if v.snapshot != snapshot_id {
            return Err(SnapshotError::Conflict(format!(
                "volume {volume_id} exists already, restored from snapshot {}",
                v.snapshot
            )));
        }
        return Ok(v.volume(volume_id));
    }
    if cur.topology_volumes.contains(volume_id) {
        return Err(SnapshotError::Conflict(format!("volume {volume_id} is defined in the topology file")));
    }
    let s = r.snapshots.get(snapshot_id).ok_or_else(|| SnapshotError::SnapshotNotFound(snapshot_id.to_string()))?;
    let replicas = match parameters.get(REPLICAS_PARAMETER) {
        Some(value) => parameter_replicas(value, cur.state)?,
        None => s.replicas.clone(),
    };
    let v = RestoredVolume {
        snapshot: snapshot_id.to_string(),
        replicas,
        labels: s.labels.clone(),
        anti_hyperconvergence: s.anti_hyperconvergence,
        windows: s.windows,
        restored_from: None,
    };
    let out = v.volume(volume_id);
    r.volumes.insert(volume_id.to_string(), v);
    Ok(out)
}

fn delete_volume(r: &mut Records, cur: &Current<'_>, volume_id: &str) -> Result<(), SnapshotError> {
    if r.volumes.remove(volume_id).is_none() && cur.topology_volumes.contains(volume_id) {
        return Err(SnapshotError::Invalid(format!(
            "volume {volume_id} is defined in the topology file; remove it there"
        )));
    }
    Ok(())
}

fn start_in_place(
    r: &mut Records,
    cur: &Current<'_>,
    restore_id: &str,
    volume_id: &str,
    snapshot_id: &str,
) -> Result<(), SnapshotError> {
    require("restore", restore_id)?;
    if let Some(x) = r.restores.get(restore_id) {
        if x.volume != volume_id || x.snapshot != snapshot_id {
            return Err(SnapshotError::Conflict(format!(
                "in-place restore {restore_id} exists already, of volume {} from snapshot {}",
                x.volume, x.snapshot
            )));
        }
        return Ok(());
    }
    if !cur.state.volumes.contains_key(volume_id) {
        return Err(SnapshotError::VolumeNotFound(volume_id.to_string()));
    }
    let s = r.snapshots.get(snapshot_id).ok_or_else(|| SnapshotError::SnapshotNotFound(snapshot_id.to_string()))?;
    if s.volume != volume_id {
        return Err(SnapshotError::Invalid(format!(
            "snapshot {snapshot_id} was taken of volume {}; it cannot restore volume {volume_id} in place",
            s.volume
        )));
    }
    if let Some((other, _)) = r.restores.iter().find(|(_, x)| x.volume == volume_id && is_running(x)) {
        return Err(SnapshotError::Conflict(format!(
            "volume {volume_id} is being restored in place by restore {other}"
        )));
    }
    let x = RestoreRecord {
        volume: volume_id.to_string(),
        snapshot: snapshot_id.to_string(),
        started: cur.now.to_string(),
        finished: None,
        failed: None,
    };
    r.restores.insert(restore_id.to_string(), x);
    Ok(())
}

fn is_running(x: &RestoreRecord) -> bool {
    x.finished.is_none() && x.failed.is_none()
}

/// Progress of an in-place restore at `cur.now`. The first call after `restore_time` has passed
/// gives the volume the snapshot's replicas and labels.
fn progress(
    r: &mut Records,
    cur: &Current<'_>,
    restore_id: &str,
    restore_time: std::time::Duration,
) -> Result<Progress, SnapshotError> {
    let Some(x) = r.restores.get(restore_id).cloned() else {
        return Err(SnapshotError::Invalid(format!(
            "in-place restore {restore_id} is not known to the storage driver"
        )));
    };
    if let Some(why) = &x.failed {
        return Ok(Progress::Failed(why.clone()));
    }
    if x.finished.is_some() {
        return Ok(Progress::Done);
    }
    let started = state::parse_time(&x.started).map_err(SnapshotError::Failed)?;
    // A clock that stepped back counts as no time elapsed; an absurdly long restore time as never.
    let elapsed = cur.now.duration_since(started);
    let due = restore_time.is_zero() || SignedDuration::try_from(restore_time).is_ok_and(|t| elapsed >= t);
    if !due {
        return Ok(Progress::InProgress);
    }
    let (finished, failed, progress) = match finish(r, cur, &x) {
        Ok(()) => (Some(cur.now.to_string()), None, Progress::Done),
        Err(why) => (None, Some(why.clone()), Progress::Failed(why)),
    };
    if let Some(record) = r.restores.get_mut(restore_id) {
        record.finished = finished;
        record.failed = failed;
    }
    Ok(progress)
}

/// Gives the restored volume its snapshot's content.
fn finish(r: &mut Records, cur: &Current<'_>, x: &RestoreRecord) -> Result<(), String> {
    let Some(s) = r.snapshots.get(&x.snapshot).cloned() else {
        return Err(format!("snapshot {} was deleted before the restore finished", x.snapshot));
    };
    if let Some(v) = r.volumes.get_mut(&x.volume) {
        v.replicas = s.replicas;
        v.labels = s.labels;
        v.restored_from = Some(x.snapshot.clone());
    } else if cur.topology_volumes.contains(&x.volume) {
        let o = Override { replicas: s.replicas, labels: s.labels, restored_from: x.snapshot.clone() };
        r.overrides.insert(x.volume.clone(), o);
    } else {
        return Err(format!("volume {} was deleted before the restore finished", x.volume));
    }
    Ok(())
}

#[async_trait]
impl SnapshotDriver for MockDriver {
    async fn create_snapshot(
        &self,
        id: &str,
        volume_id: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<DriverSnapshot, SnapshotError> {
        let s = self.act(|r, cur| create(r, cur, id, volume_id, labels))?;
        tracing::info!(snapshot = id, volume = volume_id, "mock snapshot ready");
        Ok(s)
    }

    /// All or nothing, in one write of the state file: the group exists at one instant.
    async fn create_group_snapshot(
        &self,
        members: &[(String, String)],
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<DriverSnapshot>, SnapshotError> {
        let out = self.act(|r, cur| {
            members.iter().map(|(id, volume_id)| create(r, cur, id, volume_id, labels)).collect::<Result<Vec<_>, _>>()
        })?;
        tracing::info!(snapshots = out.len(), "mock group snapshot ready");
        Ok(out)
    }

    fn group_consistent(&self) -> bool {
        true
    }

    async fn snapshot(&self, id: &str) -> Result<Option<DriverSnapshot>, SnapshotError> {
        Ok(self.lock().records.snapshots.get(id).map(|s| driver_snapshot(id, s)))
    }

    async fn delete_snapshot(&self, id: &str) -> Result<(), SnapshotError> {
        self.act(|r, _| {
            r.snapshots.remove(id);
            Ok(())
        })?;
        tracing::info!(snapshot = id, "mock snapshot deleted");
        Ok(())
    }

    async fn restore_volume(
        &self,
        snapshot_id: &str,
        volume_id: &str,
        parameters: &BTreeMap<String, String>,
    ) -> Result<Volume, SnapshotError> {
        let v = self.act(|r, cur| restore(r, cur, snapshot_id, volume_id, parameters))?;
        tracing::info!(snapshot = snapshot_id, volume = volume_id, replicas = ?v.replicas, "mock volume restored");
        Ok(v)
    }

    async fn delete_volume(&self, volume_id: &str) -> Result<(), SnapshotError> {
        self.act(|r, cur| delete_volume(r, cur, volume_id))?;
        tracing::info!(volume = volume_id, "mock restored volume deleted");
        Ok(())
    }

    async fn start_in_place_restore(
        &self,
        restore_id: &str,
        volume_id: &str,
        snapshot_id: &str,
    ) -> Result<(), SnapshotError> {
        self.act(|r, cur| start_in_place(r, cur, restore_id, volume_id, snapshot_id))?;
        tracing::info!(
            restore = restore_id,
            volume = volume_id,
            snapshot = snapshot_id,
            "mock in-place restore started"
        );
        Ok(())
    }

    async fn in_place_restore_status(&self, restore_id: &str) -> Result<Progress, SnapshotError> {
        self.act(|r, cur| progress(r, cur, restore_id, self.restore_time))
    }

    async fn cleanup_in_place_restore(&self, restore_id: &str) -> Result<(), SnapshotError> {
        self.act(|r, _| {
            r.restores.remove(restore_id);
            Ok(())
        })
    }

    fn pv_source(&self, volume_id: &str) -> PersistentVolumeSpec {
        PersistentVolumeSpec {
            csi: Some(CSIPersistentVolumeSource {
                driver: PROVISIONER.to_string(),
                volume_handle: volume_id.to_string(),
                ..CSIPersistentVolumeSource::default()
            }),
            ..PersistentVolumeSpec::default()
        }
    }
}

#[cfg(test)]
#[path = "snapshots_tests.rs"]
mod tests;
