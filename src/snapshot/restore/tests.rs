//! In-place restore tests: shared fixtures, validation of a new restore (the "" stage) and the
//! executor's helpers. The later stages (Pending, InProgress, Staged, deletion) are in
//! `tests_stages.rs`.

use std::time::Duration;

use k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::apis::meta::v1::Time};
use serde_json::json;

use super::*;
use crate::{
    events::Severity,
    knobs::{RESTORE_IN_PROGRESS, RESTORE_OWNER_ANNOTATION},
    model::crd::{RestoreVolumeInfo, VolumeSnapshotRestoreStatus},
};

#[path = "tests_stages.rs"]
mod stages;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

/// A new restore `app/undo` of snapshot `app/snap`.
fn restore() -> VolumeSnapshotRestore {
    serde_json::from_value(json!({
        "apiVersion": "stork.libopenstorage.org/v1alpha1", "kind": "VolumeSnapshotRestore",
        "metadata": {"name": "undo", "namespace": "app", "uid": "r-uid"},
        "spec": {"sourceName": "snap"}
    }))
    .unwrap()
}

/// The restore in `stage`, its volume in `volume_status`, the stage begun at `at(0)`.
fn staged(stage: &str, volume_status: &str) -> VolumeSnapshotRestore {
    let mut r = restore();
    r.status = Some(VolumeSnapshotRestoreStatus {
        status: stage.into(),
        volumes: vec![RestoreVolumeInfo {
            volume: "pv-data".into(),
            pvc: "data".into(),
            namespace: "app".into(),
            snapshot: "snap-1".into(),
            status: volume_status.into(),
            reason: String::new(),
        }],
        reason: if stage == IN_PROGRESS { "waiting for pods using data to stop".into() } else { String::new() },
        stage_started_at: Some(Time(at(0))),
    });
    r
}

fn snapshot(conditions: serde_json::Value) -> VolumeSnapshot {
    serde_json::from_value(json!({
        "apiVersion": "volumesnapshot.external-storage.k8s.io/v1", "kind": "VolumeSnapshot",
        "metadata": {"name": "snap", "namespace": "app"},
        "spec": {"persistentVolumeClaimName": "data", "snapshotDataName": "k8s-volume-snapshot-1"},
        "status": {"conditions": conditions}
    }))
    .unwrap()
}

fn ready() -> serde_json::Value {
    json!([{"type": "Ready", "status": "True", "message": "Snapshot created successfully and it is ready"}])
}

fn data(volume_id: &str) -> VolumeSnapshotData {
    serde_json::from_value(json!({
        "apiVersion": "volumesnapshot.external-storage.k8s.io/v1", "kind": "VolumeSnapshotData",
        "metadata": {"name": "k8s-volume-snapshot-1"},
        "spec": {"driverSnapshot": {"driver": "mock", "snapshotId": "snap-1", "volumeId": volume_id}}
    }))
    .unwrap()
}

/// Claim `app/data`, bound, resourceVersion 7, with `annotations`.
fn pvc(annotations: serde_json::Value) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": {"name": "data", "namespace": "app", "resourceVersion": "7", "annotations": annotations},
        "spec": {"volumeName": "pv-data"},
        "status": {"phase": "Bound"}
    }))
    .unwrap()
}

fn held_by(owner: &str) -> PersistentVolumeClaim {
    pvc(json!({RESTORE_IN_PROGRESS: "true", RESTORE_OWNER_ANNOTATION: owner}))
}

fn pod(name: &str, scheduler: &str, node: &str) -> PodUse {
    PodUse {
        namespace: "app".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        scheduler: scheduler.into(),
        node: node.into(),
        ..PodUse::default()
    }
}

/// Everything a new restore needs, valid: a Ready snapshot of `app/data`, one stork pod on a node.
fn valid() -> Facts {
    Facts {
        snapshot: Some(snapshot(ready())),
        data: Some(data("pv-data")),
        pvc: Some(pvc(json!({}))),
        volume_id: Some("pv-data".into()),
        pods: vec![pod("db-0", "stork", "node-1")],
        ..Facts::default()
    }
}

fn claim() -> ClaimRef {
    ClaimRef { namespace: "app".into(), name: "data".into(), resource_version: "7".into() }
}

fn statuses(step: &Step) -> Vec<&VolumeSnapshotRestoreStatus> {
    step.actions.iter().filter_map(|a| if let Act::SetStatus(s) = a { Some(s) } else { None }).collect()
}

fn only_status(step: &Step) -> &VolumeSnapshotRestoreStatus {
    let all = statuses(step);
    assert_eq!(all.len(), 1, "{step:#?}");
    all[0]
}

fn events(step: &Step) -> Vec<&PodEvent> {
    step.actions.iter().filter_map(|a| if let Act::Event(e) = a { Some(e) } else { None }).collect()
}

/// Asserts the step fails the restore, touching nothing, and returns the reason.
fn failure(step: &Step) -> String {
    assert!(
        step.actions.iter().all(|a| matches!(a, Act::SetStatus(_) | Act::Event(_))),
        "a failing step touches nothing: {step:#?}"
    );
    let status = only_status(step);
    assert_eq!(status.status, FAILED);
    let [event] = events(step)[..] else { panic!("one event: {step:#?}") };
    assert_eq!((event.severity, event.reason), (Severity::Warning, "Failed"));
    assert!(event.message.starts_with(&status.reason), "{event:?}");
    status.reason.clone()
}

// --- "": validation ---

#[test]
fn a_new_restore_of_a_ready_snapshot_records_the_claim_and_becomes_pending() {
    let step = next_step(&restore(), &valid(), at(5));
    let status = only_status(&step);
    assert_eq!(status.status, PENDING);
    assert_eq!(
        status.volumes,
        [RestoreVolumeInfo {
            volume: "pv-data".into(),
            pvc: "data".into(),
            namespace: "app".into(),
            snapshot: "snap-1".into(),
            status: PENDING.into(),
            reason: String::new(),
        }]
    );
    assert_eq!(status.stage_started_at, Some(Time(at(5))));
    assert_eq!(step.actions.len(), 1, "validation touches nothing: {step:#?}");
    assert_eq!(step.requeue, Requeue::Retry);
}

#[test]
fn a_group_snapshot_restore_fails_saying_it_is_unsupported() {
    let mut r = restore();
    r.spec.group_snapshot = true;
    assert_eq!(failure(&next_step(&r, &valid(), at(0))), "group snapshots are not supported");
}

#[test]
fn a_snapshot_in_another_namespace_restores_the_claim_in_that_namespace() {
    let mut r = restore();
    r.spec.source_namespace = "prod".into();
    let step = next_step(&r, &valid(), at(0));
    assert_eq!(only_status(&step).volumes[0].namespace, "prod");
}

#[test]
fn a_missing_snapshot_waits_and_says_so_once() {
    let facts = Facts { snapshot: None, ..valid() };
    let step = next_step(&restore(), &facts, at(0));
    let status = only_status(&step);
    assert_eq!(
        (status.status.as_str(), status.reason.as_str()),
        ("", "waiting for VolumeSnapshot app/snap: not found")
    );
    assert_eq!(step.requeue, Requeue::Retry);

    let mut r = restore();
    r.status = Some(status.clone());
    let again = next_step(&r, &facts, at(2));
    assert_eq!(again, Step { actions: vec![], requeue: Requeue::Retry }, "the same reason is not rewritten");
}

#[test]
fn a_snapshot_that_errored_fails_the_restore_with_its_message() {
    let errored = json!([{"type": "Error", "status": "True", "message": "disk on fire"}]);
    let facts = Facts { snapshot: Some(snapshot(errored)), ..valid() };
    assert_eq!(failure(&next_step(&restore(), &facts, at(0))), "VolumeSnapshot app/snap failed: disk on fire");
}

#[test]
fn a_snapshot_not_ready_yet_waits() {
    let pending = json!([{"type": "Pending", "status": "True"}]);
    let facts = Facts { snapshot: Some(snapshot(pending)), ..valid() };
    let step = next_step(&restore(), &facts, at(0));
    assert_eq!(only_status(&step).reason, "waiting for VolumeSnapshot app/snap to be ready");
    assert_eq!(only_status(&step).status, "");
}

#[test]
fn an_unbound_claim_waits_and_a_missing_one_fails() {
    let mut unbound = pvc(json!({}));
    unbound.status = None;
    let step = next_step(&restore(), &Facts { pvc: Some(unbound), ..valid() }, at(0));
    assert_eq!(only_status(&step).reason, "waiting for pvc app/data to be bound");

    let reason = failure(&next_step(&restore(), &Facts { pvc: None, ..valid() }, at(0)));
    assert!(reason.contains("pvc app/data, which the snapshot was taken of, does not exist"), "{reason}");
}

#[test]
fn a_snapshot_of_another_volume_than_the_claim_now_has_fails() {
    let facts = Facts { data: Some(data("pv-old")), ..valid() };
    let reason = failure(&next_step(&restore(), &facts, at(0)));
    assert!(reason.contains("taken of volume pv-old, but pvc app/data now uses volume pv-data"), "{reason}");
}

#[test]
fn data_without_a_driver_snapshot_fails() {
    let mut d = data("pv-data");
    d.spec.driver_snapshot = None;
    let reason = failure(&next_step(&restore(), &Facts { data: Some(d), ..valid() }, at(0)));
    assert_eq!(reason, "VolumeSnapshotData k8s-volume-snapshot-1 names no snapshot of stork's storage driver");
}

#[test]
fn a_pod_on_the_default_scheduler_fails_the_restore_before_anything_is_touched() {
    let facts = Facts { pods: vec![pod("db-0", "stork", "node-1"), pod("db-1", "", "node-2")], ..valid() };
    let reason = failure(&next_step(&restore(), &facts, at(0)));
    assert_eq!(
        reason,
        "application not scheduled by stork scheduler: pod app/db-1 uses scheduler default-scheduler; \
         only pods scheduled by stork can be held back during a restore"
    );
    // Also when the pod appears after validation: still nothing is marked or deleted.
    failure(&next_step(&staged(PENDING, PENDING), &facts, at(0)));
}

#[test]
fn a_finished_pod_of_another_scheduler_does_not_block_the_restore() {
    let done = PodUse { finished: true, ..pod("backup", "default-scheduler", "node-2") };
    let facts = Facts { pods: vec![pod("db-0", "stork", "node-1"), done], ..valid() };
    assert_eq!(only_status(&next_step(&restore(), &facts, at(0))).status, PENDING);
}

#[test]
fn a_claim_held_by_another_restore_or_by_hand_waits() {
    let facts = Facts { pvc: Some(held_by("app/other")), ..valid() };
    let step = next_step(&restore(), &facts, at(0));
    assert_eq!(
        only_status(&step).reason,
        "pvc app/data is being restored in place by VolumeSnapshotRestore app/other; waiting for it to finish"
    );
    let by_hand = Facts { pvc: Some(pvc(json!({RESTORE_IN_PROGRESS: "true"}))), ..valid() };
    let step = next_step(&restore(), &by_hand, at(0));
    assert!(only_status(&step).reason.contains("set by someone else"), "{step:#?}");
}

// --- helpers of the executor ---

#[test]
fn pods_using_the_claim_are_found_with_their_scheduler_node_and_state() {
    let list: k8s_openapi::List<Pod> =
        serde_json::from_str(include_str!("../../../tests/data/snapshot/restore/pods.json")).unwrap();
    let pods = pods_using(&list.items, "data");
    let got: Vec<_> = pods.iter().map(|p| (p.name.as_str(), p.scheduler.as_str(), p.on_node(), p.deleting)).collect();
    assert_eq!(
        got,
        [
            ("db-7d9f8-abcde", "stork", true, false),
            ("db-7d9f8-fghij", "stork", false, false),
            ("backup-28391", "default-scheduler", false, false),
            ("db-old", "", true, true),
        ]
    );
    assert_eq!(pods[0].uid, "u-running");
    assert!(pods[2].finished);
}

#[test]
fn the_status_patch_clears_what_the_new_status_leaves_empty() {
    let status = VolumeSnapshotRestoreStatus { status: SUCCESSFUL.into(), ..Default::default() };
    assert_eq!(
        status_patch(&status),
        json!({"status": {"status": "Successful", "volumes": [], "reason": "", "stageStartedAt": null}})
    );
}

#[test]
fn retries_back_off_from_the_retry_period_up_to_the_resync_period() {
    let (base, cap) = (Duration::from_secs(2), Duration::from_secs(60));
    let delays: Vec<u64> = (1..=7).map(|n| backoff(base, cap, n).as_secs()).collect();
    assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60]);
    assert_eq!(backoff(base, cap, u32::MAX), cap);
}
