//! The mock driver's snapshot state file: snapshots, restored volumes and in-place restores.
//!
//! The topology file belongs to whoever runs stork; this file belongs to stork. It lives next to
//! the topology (`<dir>/<stem>.snapshots.yaml`) so that a restart, and every other stork replica
//! reading the same directory, sees what the leader did. Writes replace the file atomically
//! (temp file in the same directory + rename), so a reader never sees half a file.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::super::Error;

/// First line of the file, for whoever opens it.
const HEADER: &str =
    "# Snapshot state of the stork mock driver. Written by stork; hand edits are read, but keep it valid.\n";

/// Where the snapshot state of a topology file lives: `<dir>/<topology file stem>.snapshots.yaml`.
pub fn state_path(topology: &Path) -> PathBuf {
    let stem = topology.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "topology".into());
    topology.with_file_name(format!("{stem}.snapshots.yaml"))
}

/// Everything the snapshot side of the mock driver remembers. Maps are keyed by the caller's ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Records {
    /// Snapshots by id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub snapshots: BTreeMap<String, SnapshotRecord>,
    /// Volumes created by `restore_volume`, by volume id (= PV name).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, RestoredVolume>,
    /// Topology-file volumes whose content an in-place restore replaced, by volume id. The
    /// topology file is not ours to rewrite, so the new content is an overlay.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, Override>,
    /// In-place restores by restore id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub restores: BTreeMap<String, RestoreRecord>,
}

/// A snapshot: the source volume as it was when the snapshot was taken.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct SnapshotRecord {
    /// Source volume id.
    pub volume: String,
    /// Source replicas (storage ids).
    #[serde(default)]
    pub replicas: Vec<String>,
    /// Source volume labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The caller's labels for the snapshot itself (not applied to restored volumes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Source was a shared volume better served remotely.
    #[serde(default, skip_serializing_if = "is_false")]
    pub anti_hyperconvergence: bool,
    /// Source was a Windows volume.
    #[serde(default, skip_serializing_if = "is_false")]
    pub windows: bool,
    /// When it was taken, RFC 3339.
    pub created: String,
}

/// A volume made from a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RestoredVolume {
    /// The snapshot it was created from (what makes a repeated restore a retry).
    pub snapshot: String,
    /// Replicas (storage ids).
    #[serde(default)]
    pub replicas: Vec<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Shared volume better served remotely.
    #[serde(default, skip_serializing_if = "is_false")]
    pub anti_hyperconvergence: bool,
    /// Windows volume.
    #[serde(default, skip_serializing_if = "is_false")]
    pub windows: bool,
    /// The snapshot of the last in-place restore, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<String>,
}

/// New content of a topology-file volume after an in-place restore.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Override {
    /// Replicas (storage ids), replacing the topology's.
    #[serde(default)]
    pub replicas: Vec<String>,
    /// Labels, replacing the topology's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The snapshot restored.
    pub restored_from: String,
}

/// An in-place restore.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RestoreRecord {
    /// The volume restored.
    pub volume: String,
    /// The snapshot restored from.
    pub snapshot: String,
    /// When it started, RFC 3339.
    pub started: String,
    /// When the volume took the snapshot's content, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// Why it failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Records {
    /// Parses and validates the file's text; empty text is an empty state.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        // A file holding only the header comment is empty too.
        if text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
            return Ok(Self::default());
        }
        let records: Records = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        for (id, s) in &records.snapshots {
            check_id("snapshots", id)?;
            parse_time(&s.created).map_err(|e| format!("snapshots.{id}.created: {e}"))?;
        }
        for id in records.volumes.keys().chain(records.overrides.keys()) {
            check_id("volumes", id)?;
        }
        for (id, r) in &records.restores {
            check_id("restores", id)?;
            parse_time(&r.started).map_err(|e| format!("restores.{id}.started: {e}"))?;
            if let Some(f) = &r.finished {
                parse_time(f).map_err(|e| format!("restores.{id}.finished: {e}"))?;
            }
        }
        Ok(records)
    }

    /// The file's text.
    pub fn to_yaml(&self) -> Result<String, String> {
        let body = serde_saphyr::to_string(self).map_err(|e| e.to_string())?;
        Ok(format!("{HEADER}{body}"))
    }
}

fn check_id(section: &str, id: &str) -> Result<(), String> {
    if id.is_empty() { Err(format!("{section}: an id is empty")) } else { Ok(()) }
}

/// Parses an RFC 3339 time as the file stores it.
pub(super) fn parse_time(text: &str) -> Result<Timestamp, String> {
    text.parse::<Timestamp>().map_err(|e| format!("{text:?} is not an RFC 3339 time: {e}"))
}

/// Whether the file at `path` holds no document (empty or comments only).
pub(super) fn is_blank(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .is_ok_and(|t| t.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')))
}

/// Reads the state file: missing is empty; unreadable or invalid fails with the path.
pub(super) fn read(path: &Path) -> Result<Records, Error> {
    let display = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Records::default()),
        Err(source) => return Err(Error::ReadState { path: display, source }),
    };
    Records::from_yaml(&text).map_err(|message| Error::State { path: display, message })
}

/// Replaces the state file atomically: a temp file in the same directory, synced, renamed over.
pub(super) fn write(path: &Path, records: &Records) -> Result<(), String> {
    // Distinct per process and per call, so two writers never share a temp file.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let text = records.to_yaml()?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp =
        path.with_file_name(format!(".{name}.{}.{}.tmp", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        // Best effort: a failed write must not leave litter next to the topology.
        let _ = std::fs::remove_file(&tmp);
        format!("failed to write {}: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> String {
        Timestamp::now().to_string()
    }

    #[test]
    fn the_state_file_sits_next_to_the_topology_named_after_its_stem() {
        assert_eq!(state_path(Path::new("/etc/stork/topology.yaml")), Path::new("/etc/stork/topology.snapshots.yaml"));
        assert_eq!(state_path(Path::new("cluster")), Path::new("cluster.snapshots.yaml"));
    }

    #[test]
    fn empty_and_comment_only_files_are_an_empty_state() {
        assert_eq!(Records::from_yaml("").unwrap(), Records::default());
        assert_eq!(Records::from_yaml(HEADER).unwrap(), Records::default());
    }

    #[test]
    fn written_records_read_back_equal() {
        let mut r = Records::default();
        r.snapshots.insert(
            "s1".into(),
            SnapshotRecord {
                volume: "v1".into(),
                replicas: vec!["n1".into()],
                labels: [("a/b".into(), "c".into())].into(),
                created: now(),
                ..SnapshotRecord::default()
            },
        );
        r.volumes.insert("pv-2".into(), RestoredVolume { snapshot: "s1".into(), ..RestoredVolume::default() });
        r.restores.insert(
            "r1".into(),
            RestoreRecord { volume: "v1".into(), snapshot: "s1".into(), started: now(), ..RestoreRecord::default() },
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.snapshots.yaml");
        write(&path, &r).unwrap();
        assert_eq!(read(&path).unwrap(), r);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file is left behind");
    }

    #[test]
    fn bad_times_and_unknown_fields_are_rejected_with_the_location() {
        let err = Records::from_yaml("snapshots:\n  s1:\n    volume: v\n    created: yesterday\n").unwrap_err();
        assert!(err.contains("snapshots.s1.created"), "{err}");
        assert!(Records::from_yaml("snapshots:\n  s1:\n    volume: v\n    created: x\n    size: 3\n").is_err());
    }

    #[test]
    fn a_missing_file_is_empty_and_a_corrupt_one_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.snapshots.yaml");
        assert_eq!(read(&path).unwrap(), Records::default());
        std::fs::write(&path, "snapshots: [").unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("t.snapshots.yaml"));
    }
}
