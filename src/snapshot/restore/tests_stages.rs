//! In-place restore tests of the stages after validation: Pending (hold the claim, stop the
//! pods), InProgress (wait for the pods, run the driver restore), Staged, deletion and odd states.

use super::*;
use crate::driver::Progress;

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
