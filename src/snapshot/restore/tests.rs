use std::time::Duration;

use k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::apis::meta::v1::Time};
use serde_json::json;

use super::*;
use crate::{
    driver::Progress,
    events::Severity,
    knobs::{RESTORE_IN_PROGRESS, RESTORE_OWNER_ANNOTATION},
    model::crd::{RestoreVolumeInfo, VolumeSnapshotRestoreStatus},
};

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

// --- Pending: hold and stop ---

#[test]
fn pending_marks_the_claim_then_deletes_pods_on_nodes_then_waits_for_them() {
    let unscheduled = pod("db-1", "stork", "");
    let deleting = PodUse { deleting: true, ..pod("db-2", "stork", "node-2") };
    let facts = Facts { pods: vec![pod("db-0", "stork", "node-1"), unscheduled, deleting], ..valid() };
    let step = next_step(&staged(PENDING, PENDING), &facts, at(30));
    let [Act::Hold(held), Act::DeletePods { pods, force: false }, Act::SetStatus(status)] = &step.actions[..] else {
        panic!("hold, delete, record: {step:#?}")
    };
    assert_eq!(*held, claim());
    assert_eq!(
        pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["db-0"],
        "only running pods not yet deleting"
    );
    assert_eq!(status.status, IN_PROGRESS);
    assert_eq!(status.reason, "waiting for pods using data to stop");
    assert_eq!(status.stage_started_at, Some(Time(at(30))));
}

#[test]
fn the_mark_patch_names_the_restore_and_is_conditional_on_the_version_read() {
    assert_eq!(
        hold_patch(&claim(), Some("app/undo")),
        json!({"metadata": {"resourceVersion": "7", "annotations": {
            "stork.libopenstorage.org/restore-in-progress": "true",
            "stork.libopenstorage.org/restore-in-progress-by": "app/undo"}}})
    );
    assert_eq!(
        hold_patch(&claim(), None),
        json!({"metadata": {"resourceVersion": "7", "annotations": {
            "stork.libopenstorage.org/restore-in-progress": null,
            "stork.libopenstorage.org/restore-in-progress-by": null}}})
    );
}

// --- InProgress: wait for the pods, then restore ---

#[test]
fn pods_still_on_nodes_keep_the_restore_in_progress() {
    let deleting = PodUse { deleting: true, ..pod("db-0", "stork", "node-1") };
    let late = pod("db-1", "stork", "node-2");
    let facts = Facts { pvc: Some(held_by("app/undo")), pods: vec![deleting, late], ..valid() };
    let step = next_step(&staged(IN_PROGRESS, PENDING), &facts, at(60));
    let [Act::DeletePods { pods, force: false }] = &step.actions[..] else { panic!("{step:#?}") };
    assert_eq!(pods[0].name, "db-1", "a pod scheduled before the extender saw the mark is stopped too");
    assert_eq!(pods.len(), 1);
    assert_eq!(step.requeue, Requeue::Retry);
}

#[test]
fn pods_that_outlive_the_stop_timeout_are_force_deleted() {
    let deleting = PodUse { deleting: true, ..pod("db-0", "stork", "node-1") };
    let facts = Facts { pvc: Some(held_by("app/undo")), pods: vec![deleting], ..valid() };
    let step = next_step(&staged(IN_PROGRESS, PENDING), &facts, at(120));
    let [Act::DeletePods { pods, force: true }, Act::SetStatus(status)] = &step.actions[..] else {
        panic!("{step:#?}")
    };
    assert_eq!(pods[0].uid, "uid-db-0");
    assert_eq!(status.reason, "pods using data did not stop within 120s; force-deleting them");
    assert_eq!(status.status, IN_PROGRESS);
}

#[test]
fn once_no_pod_is_on_a_node_the_restore_is_recorded_before_the_driver_is_asked() {
    let waiting = pod("db-0", "stork", "");
    let facts = Facts { pvc: Some(held_by("app/undo")), pods: vec![waiting], ..valid() };
    let step = next_step(&staged(IN_PROGRESS, PENDING), &facts, at(10));
    let [Act::SetStatus(status), Act::StartRestore { volume, snapshot }] = &step.actions[..] else {
        panic!("{step:#?}")
    };
    assert_eq!(status.volumes[0].status, RESTORING);
    assert_eq!(status.status, IN_PROGRESS);
    assert_eq!((volume.as_str(), snapshot.as_str()), ("pv-data", "snap-1"));
}

#[test]
fn a_mark_lifted_by_someone_during_the_restore_is_put_back() {
    let facts = Facts { pvc: Some(pvc(json!({}))), pods: vec![], progress: Some(Progress::InProgress), ..valid() };
    let step = next_step(&staged(IN_PROGRESS, RESTORING), &facts, at(10));
    assert_eq!(step.actions, [Act::Hold(claim())]);
}

#[test]
fn a_restore_the_driver_has_no_record_of_is_started_again() {
    let facts = Facts { pvc: Some(held_by("app/undo")), pods: vec![], progress: None, ..valid() };
    let step = next_step(&staged(IN_PROGRESS, RESTORING), &facts, at(10));
    assert_eq!(step.actions, [Act::StartRestore { volume: "pv-data".into(), snapshot: "snap-1".into() }]);
}

#[test]
fn a_running_driver_restore_is_polled_again() {
    let facts = Facts { pvc: Some(held_by("app/undo")), pods: vec![], progress: Some(Progress::InProgress), ..valid() };
    let step = next_step(&staged(IN_PROGRESS, RESTORING), &facts, at(10));
    assert_eq!(step, Step { actions: vec![], requeue: Requeue::Retry });
}

#[test]
fn a_finished_driver_restore_stages_the_restore_with_an_event() {
    let facts = Facts { pvc: Some(held_by("app/undo")), pods: vec![], progress: Some(Progress::Done), ..valid() };
    let step = next_step(&staged(IN_PROGRESS, RESTORING), &facts, at(10));
    let status = only_status(&step);
    assert_eq!((status.status.as_str(), status.volumes[0].status.as_str()), (STAGED, SUCCESSFUL));
    assert!(status.reason.is_empty());
    assert_eq!(events(&step), [&PodEvent::normal("Successful", "Volume data restored successfully")]);
}

#[test]
fn a_driver_failure_fails_the_restore_and_the_failed_stage_releases_the_claim_and_cleans_up_once() {
    let facts = Facts {
        pvc: Some(held_by("app/undo")),
        pods: vec![],
        progress: Some(Progress::Failed("snapshot corrupt".into())),
        ..valid()
    };
    let step = next_step(&staged(IN_PROGRESS, RESTORING), &facts, at(10));
    assert_eq!(failure(&step), "restore of pvc app/data failed: snapshot corrupt");
    assert!(events(&step)[0].message.contains("may start again, on the data the volume had before the restore"));

    let mut failed = staged(IN_PROGRESS, RESTORING);
    failed.status = Some(only_status(&step).clone());
    let step = next_step(&failed, &facts, at(12));
    let [Act::Release(released), Act::Cleanup, Act::SetStatus(status)] = &step.actions[..] else { panic!("{step:#?}") };
    assert_eq!(*released, claim());
    assert_eq!(status.volumes[0].status, FAILED);
    assert_eq!(status.volumes[0].reason, "restore of pvc app/data failed: snapshot corrupt");
    assert_eq!(step.requeue, Requeue::Resync);

    // Settled: never retried, nothing left to do once the claim is free.
    failed.status = Some(status.clone());
    let settled = Facts { pvc: Some(pvc(json!({}))), ..Facts::default() };
    assert_eq!(next_step(&failed, &settled, at(70)), Step { actions: vec![], requeue: Requeue::Resync });
}

#[test]
fn a_claim_deleted_during_the_restore_fails_it() {
    let facts = Facts { pvc: None, ..valid() };
    let reason = failure(&next_step(&staged(IN_PROGRESS, PENDING), &facts, at(10)));
    assert_eq!(reason, "pvc app/data was deleted during the restore");
}

// --- Staged, deletion, odd states ---

#[test]
fn staged_releases_the_claim_forgets_the_driver_restore_and_completes() {
    let facts = Facts { pvc: Some(held_by("app/undo")), ..Facts::default() };
    let step = next_step(&staged(STAGED, SUCCESSFUL), &facts, at(20));
    let [Act::Release(c), Act::Cleanup, Act::SetStatus(status), Act::Event(event)] = &step.actions[..] else {
        panic!("{step:#?}")
    };
    assert_eq!(*c, claim());
    assert_eq!(status.status, SUCCESSFUL);
    assert_eq!(*event, PodEvent::normal("Successful", "Snapshot in-place restore completed"));
    assert_eq!(step.requeue, Requeue::Resync);
}

#[test]
fn a_mark_this_restore_did_not_set_is_never_lifted() {
    let facts = Facts { pvc: Some(held_by("app/other")), ..Facts::default() };
    let step = next_step(&staged(STAGED, SUCCESSFUL), &facts, at(20));
    assert!(!step.actions.iter().any(|a| matches!(a, Act::Release(_))), "{step:#?}");
    assert!(cleanup_actions(&staged(IN_PROGRESS, RESTORING), &facts).iter().all(|a| !matches!(a, Act::Release(_))));
}

#[test]
fn deleting_a_restore_releases_its_claim_and_forgets_the_driver_restore() {
    let facts = Facts { pvc: Some(held_by("app/undo")), ..Facts::default() };
    assert_eq!(cleanup_actions(&staged(IN_PROGRESS, RESTORING), &facts), [Act::Release(claim()), Act::Cleanup]);
    assert_eq!(cleanup_actions(&restore(), &Facts::default()), [], "a restore that never started owns nothing");
}

#[test]
fn a_successful_restore_is_left_alone() {
    let step = next_step(&staged(SUCCESSFUL, SUCCESSFUL), &Facts::default(), at(0));
    assert_eq!(step, Step { actions: vec![], requeue: Requeue::Resync });
}

#[test]
fn a_status_written_by_hand_fails_the_restore() {
    assert_eq!(failure(&next_step(&staged("Paused", PENDING), &valid(), at(0))), "unknown status \"Paused\"");
    let mut r = staged(PENDING, PENDING);
    r.status.as_mut().unwrap().volumes.clear();
    let reason = failure(&next_step(&r, &valid(), at(0)));
    assert!(reason.starts_with("status.volumes is empty"), "{reason}");
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
