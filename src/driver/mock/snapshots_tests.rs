use std::{path::Path, sync::Arc, time::Duration};

use k8s_openapi::{api::core::v1::PersistentVolume, apimachinery::pkg::apis::meta::v1::ObjectMeta};

use super::*;
use crate::driver::{
    Driver,
    mock::{Topology, state_path},
};

const TOPOLOGY: &str = include_str!("../../../tests/data/mock/topology.yaml");

fn driver() -> MockDriver {
    MockDriver::from_topology(Topology::from_yaml(TOPOLOGY).unwrap()).with_in_place_restore_time(Duration::ZERO)
}

/// A topology file with the test topology in a fresh directory (kept alive by the guard).
fn topology_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.yaml");
    std::fs::write(&path, TOPOLOGY).unwrap();
    (dir, path)
}

fn load(path: &Path) -> MockDriver {
    MockDriver::load(path).unwrap().with_in_place_restore_time(Duration::ZERO)
}

fn pv(name: &str) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
        ..PersistentVolume::default()
    }
}

fn volume(d: &MockDriver, id: &str) -> Option<Arc<Volume>> {
    d.volume(&pv(id)).unwrap()
}

fn replicas(d: &MockDriver, id: &str) -> Vec<String> {
    volume(d, id).map(|v| v.replicas.clone()).unwrap_or_default()
}

fn none() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn param(value: &str) -> BTreeMap<String, String> {
    [(REPLICAS_PARAMETER.to_string(), value.to_string())].into()
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn a_snapshot_records_the_volume_and_is_ready_at_once() {
    let d = driver();
    let s = d.create_snapshot("s1", "pv-a", &[("k".into(), "v".into())].into()).await.unwrap();
    assert_eq!((s.id.as_str(), s.volume_id.as_str(), &s.state), ("s1", "pv-a", &SnapshotState::Ready));
    assert!(state::parse_time(&s.created).is_ok(), "{}", s.created);
    assert_eq!(d.snapshot("s1").await.unwrap(), Some(s));
    assert_eq!(d.snapshot("s2").await.unwrap(), None);
}

#[tokio::test]
async fn taking_a_snapshot_again_returns_the_first_one_unchanged() {
    let d = driver();
    let first = d.create_snapshot("s1", "pv-a", &none()).await.unwrap();
    let again = d.create_snapshot("s1", "pv-a", &[("k".into(), "v".into())].into()).await.unwrap();
    assert_eq!(again, first);
    let err = d.create_snapshot("s1", "pv-b", &none()).await.unwrap_err();
    assert!(matches!(&err, SnapshotError::Conflict(m) if m.contains("pv-a")), "{err}");
}

#[tokio::test]
async fn a_snapshot_of_an_unknown_volume_is_volume_not_found() {
    let err = driver().create_snapshot("s1", "pv-zz", &none()).await.unwrap_err();
    assert_eq!(err, SnapshotError::VolumeNotFound("pv-zz".into()));
    assert!(matches!(driver().create_snapshot("", "pv-a", &none()).await, Err(SnapshotError::Invalid(_))));
}

#[tokio::test]
async fn deleting_a_snapshot_forgets_it_and_a_missing_one_is_already_deleted() {
    let d = driver();
    d.create_snapshot("s1", "pv-a", &none()).await.unwrap();
    d.delete_snapshot("s1").await.unwrap();
    d.delete_snapshot("s1").await.unwrap();
    assert_eq!(d.snapshot("s1").await.unwrap(), None);
}

#[tokio::test]
async fn a_restored_volume_has_the_snapshot_replicas_and_labels_and_is_found_by_pv_name() {
    let d = driver();
    d.create_snapshot("s1", "pv-a", &none()).await.unwrap();
    let v = d.restore_volume("s1", "pvc-1", &none()).await.unwrap();
    assert_eq!(v.replicas, ids(&["n1", "n2"]));
    assert_eq!(v.labels.get("app").map(String::as_str), Some("db"));
    assert_eq!(volume(&d, "pvc-1").as_deref(), Some(&v));
}

#[tokio::test]
async fn the_replicas_parameter_chooses_the_restored_replicas() {
    let d = driver();
    d.create_snapshot("s1", "pv-a", &none()).await.unwrap();
    let v = d.restore_volume("s1", "pvc-1", &param(" n3 , n1,n3,")).await.unwrap();
    assert_eq!(v.replicas, ids(&["n3", "n1"]));
    assert_eq!(replicas(&d, "pvc-1"), ids(&["n3", "n1"]));
}

#[tokio::test]
async fn unknown_storage_ids_in_the_replicas_parameter_are_invalid_and_named() {
    let d = driver();
    d.create_snapshot("s1", "pv-a", &none()).await.unwrap();
    let err = d.restore_volume("s1", "pvc-1", &param("n1, nx,ny")).await.unwrap_err();
    assert!(matches!(&err, SnapshotError::Invalid(m) if m.ends_with("nx, ny")), "{err}");
    assert!(matches!(d.restore_volume("s1", "pvc-1", &param(" , ")).await, Err(SnapshotError::Invalid(_))));
    assert_eq!(volume(&d, "pvc-1"), None, "a refused restore creates nothing");
}

#[tokio::test]
async fn restoring_again_returns_the_volume_and_reusing_its_id_conflicts() {
    let d = driver();
    d.create_snapshot("s1", "pv-a", &none()).await.unwrap();
    d.create_snapshot("s2", "pv-b", &none()).await.unwrap();
    let first = d.restore_volume("s1", "pvc-1", &param("n3")).await.unwrap();
    // A retry returns what was made, whatever the parameters say now.
    assert_eq!(d.restore_volume("s1", "pvc-1", &none()).await.unwrap(), first);
    let err = d.restore_volume("s2", "pvc-1", &none()).await.unwrap_err();
    assert!(matches!(&err, SnapshotError::Conflict(m) if m.contains("s1")), "{err}");
    let err = d.restore_volume("s1", "pv-b", &none()).await.unwrap_err();
    assert!(matches!(&err, SnapshotError::Conflict(m) if m.contains("topology")), "{err}");
}

#[tokio::test]
async fn a_retried_restore_succeeds_after_its_snapshot_is_deleted_but_a_new_one_does_not() {
    let d = driver();
    d.create_snapshot("s1", "pv-a", &none()).await.unwrap();
    d.restore_volume("s1", "pvc-1", &none()).await.unwrap();
    d.delete_snapshot("s1").await.unwrap();
    assert!(d.restore_volume("s1", "pvc-1", &none()).await.is_ok());
    let err = d.restore_volume("s1", "pvc-2", &none()).await.unwrap_err();
    assert_eq!(err, SnapshotError::SnapshotNotFound("s1".into()));
}

#[tokio::test]
async fn deleting_a_restored_volume_removes_it_but_a_topology_volume_is_refused() {
    let d = driver();
    d.create_snapshot("s1", "pv-a", &none()).await.unwrap();
    d.restore_volume("s1", "pvc-1", &none()).await.unwrap();
    d.delete_volume("pvc-1").await.unwrap();
    assert_eq!(volume(&d, "pvc-1"), None);
    d.delete_volume("pvc-1").await.unwrap();
    let err = d.delete_volume("pv-a").await.unwrap_err();
    assert!(matches!(&err, SnapshotError::Invalid(m) if m.contains("remove it there")), "{err}");
    assert!(volume(&d, "pv-a").is_some());
}

fn at(
    d: &MockDriver,
    now: Timestamp,
    action: impl FnOnce(&mut Records, &Current<'_>) -> Result<Progress, SnapshotError>,
) -> Progress {
    let inner = d.lock();
    let state = d.state.load_full();
    let mut records = inner.records.clone();
    let cur = Current { state: &state, topology_volumes: &inner.topology_volumes, now };
    action(&mut records, &cur).unwrap()
}

#[tokio::test]
async fn an_in_place_restore_is_in_progress_until_the_restore_time_has_passed() {
    let d = driver();
    d.create_snapshot("s1", "pv-a", &none()).await.unwrap();
    d.start_in_place_restore("r1", "pv-a", "s1").await.unwrap();
    let started = state::parse_time(&d.lock().records.restores["r1"].started).unwrap();
    let time = Duration::from_secs(3);
    let after = |secs: i64| started + SignedDuration::from_secs(secs);
    assert_eq!(at(&d, after(2), |r, cur| progress(r, cur, "r1", time)), Progress::InProgress);
    assert_eq!(at(&d, after(3), |r, cur| progress(r, cur, "r1", time)), Progress::Done);
    assert_eq!(at(&d, after(-5), |r, cur| progress(r, cur, "r1", time)), Progress::InProgress, "clock stepped back");
}

#[tokio::test]
async fn a_finished_in_place_restore_gives_a_topology_volume_the_snapshot_content() {
    let (_dir, path) = topology_file();
    let d = load(&path);
    d.create_snapshot("s1", "pv-a", &none()).await.unwrap();
    // The volume moves on after the snapshot.
    std::fs::write(&path, TOPOLOGY.replace("[n1, n2]", "[n3]").replace("{app: db}", "{app: web}")).unwrap();
    d.reload().unwrap();
    assert_eq!(replicas(&d, "pv-a"), ids(&["n3"]));

    d.start_in_place_restore("r1", "pv-a", "s1").await.unwrap();
    assert_eq!(d.in_place_restore_status("r1").await.unwrap(), Progress::Done);
    let v = volume(&d, "pv-a").unwrap();
    assert_eq!((v.replicas.clone(), v.labels["app"].as_str()), (ids(&["n1", "n2"]), "db"));
    let file = std::fs::read_to_string(d.state_file().unwrap()).unwrap();
    assert!(file.contains("restoredFrom: s1"), "{file}");
    assert_eq!(d.in_place_restore_status("r1").await.unwrap(), Progress::Done, "done stays done");
}

#[tokio::test]
async fn a_finished_in_place_restore_gives_a_restored_volume_the_snapshot_content() {
    let d = driver();
    d.create_snapshot("s1", "pv-a", &none()).await.unwrap();
    d.restore_volume("s1", "pvc-1", &none()).await.unwrap();
    d.create_snapshot("s2", "pvc-1", &none()).await.unwrap();
    d.delete_volume("pvc-1").await.unwrap();
    d.restore_volume("s1", "pvc-1", &param("n3")).await.unwrap();

    d.start_in_place_restore("r1", "pvc-1", "s2").await.unwrap();
    assert_eq!(d.in_place_restore_status("r1").await.unwrap(), Progress::Done);
    assert_eq!(replicas(&d, "pvc-1"), ids(&["n1", "n2"]));
    assert_eq!(d.lock().records.volumes["pvc-1"].restored_from.as_deref(), Some("s2"));
}

#[tokio::test]
async fn starting_an_in_place_restore_is_idempotent_by_restore_id_and_checks_its_arguments() {
    let d = driver();
    d.create_snapshot("s1", "pv-a", &none()).await.unwrap();
    d.create_snapshot("s2", "pv-b", &none()).await.unwrap();
    let d = d.with_in_place_restore_time(Duration::from_secs(3600));
    d.start_in_place_restore("r1", "pv-a", "s1").await.unwrap();
    d.start_in_place_restore("r1", "pv-a", "s1").await.unwrap();
    let conflict = |r: Result<(), SnapshotError>| matches!(r, Err(SnapshotError::Conflict(_)));
    assert!(conflict(d.start_in_place_restore("r1", "pv-b", "s2").await), "same id, other arguments");
    assert!(conflict(d.start_in_place_restore("r2", "pv-a", "s1").await), "the volume is being restored");
    assert!(matches!(d.start_in_place_restore("r3", "pv-a", "s2").await, Err(SnapshotError::Invalid(_))));
    assert_eq!(d.start_in_place_restore("r3", "pv-zz", "s1").await, Err(SnapshotError::VolumeNotFound("pv-zz".into())));
    assert_eq!(d.start_in_place_restore("r3", "pv-b", "s9").await, Err(SnapshotError::SnapshotNotFound("s9".into())));
    assert_eq!(d.in_place_restore_status("r1").await.unwrap(), Progress::InProgress);
}

#[tokio::test]
async fn an_unknown_or_cleaned_up_restore_is_invalid_and_cleanup_is_idempotent() {
    let d = driver();
    d.create_snapshot("s1", "pv-a", &none()).await.unwrap();
    assert!(matches!(d.in_place_restore_status("r1").await, Err(SnapshotError::Invalid(_))));
    d.start_in_place_restore("r1", "pv-a", "s1").await.unwrap();
    d.cleanup_in_place_restore("r1").await.unwrap();
    d.cleanup_in_place_restore("r1").await.unwrap();
    assert!(matches!(d.in_place_restore_status("r1").await, Err(SnapshotError::Invalid(_))));
}

#[tokio::test]
async fn an_in_place_restore_whose_snapshot_was_deleted_fails_and_stays_failed() {
    let d = driver();
    d.create_snapshot("s1", "pv-a", &none()).await.unwrap();
    d.start_in_place_restore("r1", "pv-a", "s1").await.unwrap();
    d.delete_snapshot("s1").await.unwrap();
    let p = d.in_place_restore_status("r1").await.unwrap();
    assert!(matches!(&p, Progress::Failed(m) if m.contains("s1")), "{p:?}");
    assert_eq!(d.in_place_restore_status("r1").await.unwrap(), p);
    assert_eq!(replicas(&d, "pv-a"), ids(&["n1", "n2"]));
}

#[test]
fn the_pv_source_is_only_the_csi_volume_handle() {
    let spec = driver().pv_source("pvc-1");
    let csi = spec.csi.clone().unwrap();
    assert_eq!((csi.driver.as_str(), csi.volume_handle.as_str()), (PROVISIONER, "pvc-1"));
    assert_eq!(PersistentVolumeSpec { csi: None, ..spec }, PersistentVolumeSpec::default());
}

#[tokio::test]
async fn snapshots_restored_volumes_and_restores_survive_a_restart() {
    let (_dir, path) = topology_file();
    let d = load(&path).with_in_place_restore_time(Duration::from_secs(3600));
    assert_eq!(d.state_file(), Some(path.with_file_name("topology.snapshots.yaml").as_path()));
    let s = d.create_snapshot("s1", "pv-a", &none()).await.unwrap();
    d.restore_volume("s1", "pvc-1", &param("n3")).await.unwrap();
    d.start_in_place_restore("r1", "pv-a", "s1").await.unwrap();
    assert_eq!(d.in_place_restore_status("r1").await.unwrap(), Progress::InProgress);
    drop(d);

    let d = load(&path);
    assert_eq!(d.snapshot("s1").await.unwrap(), Some(s));
    assert_eq!(replicas(&d, "pvc-1"), ids(&["n3"]));
    assert_eq!(d.in_place_restore_status("r1").await.unwrap(), Progress::Done, "the restore went on meanwhile");
}

#[tokio::test]
async fn a_corrupt_state_file_fails_load_and_keeps_the_previous_state_on_reload() {
    let (_dir, path) = topology_file();
    let d = load(&path);
    d.create_snapshot("s1", "pv-a", &none()).await.unwrap();
    d.restore_volume("s1", "pvc-1", &none()).await.unwrap();
    let state_file = d.state_file().unwrap().to_path_buf();
    std::fs::write(&state_file, "volumes: [").unwrap();

    let err = MockDriver::load(&path).err().unwrap().to_string();
    assert!(err.contains("topology.snapshots.yaml"), "{err}");
    assert!(d.reload().is_err());
    assert!(volume(&d, "pvc-1").is_some());
    assert!(d.snapshot("s1").await.unwrap().is_some());
    // Actions refuse to overwrite a file they cannot read, and say why.
    let err = d.create_snapshot("s2", "pv-a", &none()).await.unwrap_err();
    assert!(err.is_retryable() && err.to_string().contains("topology.snapshots.yaml"), "{err}");
}

#[tokio::test]
async fn another_replica_sees_restored_volumes_and_builds_on_them() {
    let (_dir, path) = topology_file();
    let (leader, other) = (load(&path), load(&path));
    leader.create_snapshot("s1", "pv-a", &none()).await.unwrap();
    leader.restore_volume("s1", "pvc-1", &none()).await.unwrap();
    other.reload().unwrap();
    assert_eq!(replicas(&other, "pvc-1"), ids(&["n1", "n2"]));
    // An action starts from the file, so the other replica never drops what the first wrote.
    leader.restore_volume("s1", "pvc-2", &none()).await.unwrap();
    other.create_snapshot("s2", "pv-b", &none()).await.unwrap();
    leader.reload().unwrap();
    assert!(volume(&leader, "pvc-2").is_some() && leader.snapshot("s2").await.unwrap().is_some());
}

#[tokio::test]
async fn a_state_file_written_elsewhere_is_picked_up_by_the_watch() {
    let (_dir, path) = topology_file();
    let watched = Arc::new(load(&path));
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(watched.clone().watch(cancel.clone()));
    // Lets the watch task set up its watcher before the file changes (single-threaded runtime).
    tokio::task::yield_now().await;
    let writer = load(&path);
    writer.create_snapshot("s1", "pv-a", &none()).await.unwrap();
    writer.restore_volume("s1", "pvc-1", &none()).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while volume(&watched, "pvc-1").is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await; // poll until the timeout
        }
    })
    .await;
    cancel.cancel();
    task.await.unwrap();
    assert!(seen.is_ok(), "the watch did not pick up the restored volume");
}

#[test]
fn in_memory_drivers_have_no_state_file() {
    assert_eq!(driver().state_file(), None);
}

#[tokio::test]
async fn the_state_file_can_live_away_from_a_read_only_topology() {
    let (_dir, path) = topology_file();
    let elsewhere = tempfile::tempdir().unwrap();
    let state = elsewhere.path().join("state.yaml");
    let d = MockDriver::load_with_state_file(&path, &state).unwrap();
    d.create_snapshot("s1", "pv-a", &none()).await.unwrap();
    assert_eq!(d.state_file(), Some(state.as_path()));
    assert!(state.exists() && !state_path(&path).exists());
}

#[tokio::test]
async fn a_group_snapshot_is_all_or_nothing_in_one_state_write() {
    let (_dir, path) = topology_file();
    let d = load(&path);
    let pairs = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
    let err = d.create_group_snapshot(&pairs(&[("g1", "pv-a"), ("g2", "pv-zz")]), &none()).await.unwrap_err();
    assert_eq!(err, SnapshotError::VolumeNotFound("pv-zz".into()));
    assert_eq!(d.snapshot("g1").await.unwrap(), None, "nothing taken when one member fails");
    let taken = d.create_group_snapshot(&pairs(&[("g1", "pv-a"), ("g2", "pv-b")]), &none()).await.unwrap();
    assert_eq!(taken.len(), 2);
    assert_eq!(taken[0].created, taken[1].created, "one instant");
    assert!(d.group_consistent());
    let reloaded = load(&path);
    assert!(reloaded.snapshot("g2").await.unwrap().is_some(), "written to the state file");
}
