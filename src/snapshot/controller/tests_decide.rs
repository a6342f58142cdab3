//! The decision table of [`decide`]: taking a snapshot, settled and pre-provisioned snapshots.

use super::*;

// ---- decisions: taking a snapshot ----

#[test]
fn a_new_snapshot_records_its_intent_before_the_driver_is_called() {
    let Step::RecordIntent { id: got, labels, status } = decide(&snap(), &facts()) else { panic!("expected intent") };
    assert_eq!(got, format!("k8s-volume-snapshot-{UID}"));
    assert_eq!(labels[SNAPSHOT_PV_NAME_LABEL], "pv-db");
    assert_eq!(labels[SNAPSHOT_TIMESTAMP_LABEL], later().as_nanosecond().to_string());
    assert_eq!(state(&status).0, CONDITION_PENDING);
    let patch = intent_patch(&snap(), &got, &labels);
    assert_eq!(patch["metadata"]["annotations"][SNAPSHOT_ID_ANNOTATION], got.as_str());
    assert_eq!(patch["metadata"]["resourceVersion"], "1001", "a stale read must conflict, not record twice");
}

#[test]
fn a_snapshot_of_a_missing_claim_fails_with_an_error_condition_and_a_warning() {
    let f = Facts { source: Source::Invalid("claim default/db-data was not found".into()), ..facts() };
    let (status, event, then) = status_step(decide(&snap(), &f));
    assert_eq!(state(&status), (CONDITION_ERROR, "claim default/db-data was not found"));
    let event = event.expect("a warning");
    assert_eq!((event.severity, event.reason), (Severity::Warning, "SnapshotFailed"));
    assert_eq!(then, Requeue::Soon, "the claim may still be created");
}

#[test]
fn a_snapshot_of_an_unbound_claim_waits_with_a_pending_condition() {
    let f = Facts { source: Source::Wait("claim default/db-data is not bound yet".into()), ..facts() };
    let (status, event, then) = status_step(decide(&snap(), &f));
    assert_eq!(state(&status), (CONDITION_PENDING, "claim default/db-data is not bound yet"));
    assert_eq!((event, then), (None, Requeue::Soon));
}

#[test]
fn an_error_already_shown_is_not_written_or_announced_again() {
    let s = snap().showing(CONDITION_ERROR, "InvalidClaim", "claim default/db-data was not found");
    let f = Facts { source: Source::Invalid("claim default/db-data was not found".into()), ..facts() };
    assert!(matches!(decide(&s, &f), Step::Wait(Requeue::Soon)));
}

#[test]
fn a_recorded_intent_takes_the_snapshot_with_the_recorded_id_and_labels() {
    let s = snap().with_intent();
    let f = Facts { driver_snapshot: Some(None), data: Some(None), ..facts() };
    let Step::TakeSnapshot { id: got, volume_id, labels } = decide(&s, &f) else { panic!("expected the driver call") };
    assert_eq!((got, volume_id.as_str()), (id(), "vol-db"));
    assert_eq!(&labels, s.metadata.labels.as_ref().unwrap(), "the labels recorded, not a new timestamp");
}

#[test]
fn a_retry_after_intent_finds_the_driver_snapshot_and_does_not_take_a_second_one() {
    let f = Facts { driver_snapshot: Some(Some(ds(SnapshotState::Ready))), data: Some(None), ..facts() };
    let Step::CreateData(data) = decide(&snap().with_intent(), &f) else { panic!("expected the data object") };
    assert_eq!(data.name_any(), id());
    let r = data.spec.volume_snapshot_ref.as_ref().unwrap();
    assert_eq!(
        (r.namespace.as_deref(), r.name.as_deref(), r.uid.as_deref()),
        (Some("default"), Some("db-snap"), Some(UID))
    );
    assert_eq!(r.kind.as_deref(), Some("VolumeSnapshot"));
    assert_eq!(data.spec.persistent_volume_ref.as_ref().unwrap().name.as_deref(), Some("pv-db"));
    let src = data.spec.driver_snapshot.as_ref().unwrap();
    assert_eq!((src.driver.as_str(), src.snapshot_id.as_str(), src.volume_id.as_str()), ("fake", &*id(), "vol-db"));
}

#[test]
fn a_claim_deleted_after_the_driver_took_the_snapshot_does_not_stop_it_completing() {
    let f = Facts {
        source: Source::Invalid("claim default/db-data was not found".into()),
        driver_snapshot: Some(Some(ds(SnapshotState::Ready))),
        data: Some(None),
        ..facts()
    };
    assert!(matches!(decide(&snap().with_intent(), &f), Step::CreateData(_)));
}

#[test]
fn a_data_object_without_a_ready_status_gets_one() {
    let mut data = our_data();
    data.status = None;
    let f = Facts { driver_snapshot: Some(Some(ds(SnapshotState::Ready))), data: Some(Some(data)), ..facts() };
    let Step::MarkDataReady { name, status } = decide(&snap().with_intent(), &f) else { panic!("expected status") };
    assert_eq!(name, id());
    assert_eq!(state(&status), (CONDITION_READY, READY_MESSAGE));
    assert!(status.creation_timestamp.is_some());
}

#[test]
fn a_ready_data_object_is_bound_and_the_snapshot_becomes_ready_with_storks_message() {
    let s = snap().with_intent().showing(CONDITION_ERROR, "SnapshotFailed", "an earlier failure");
    let f = Facts { driver_snapshot: Some(Some(ds(SnapshotState::Ready))), data: Some(Some(our_data())), ..facts() };
    let Step::Bind { data_name, status, event } = decide(&s, &f) else { panic!("expected bind") };
    assert_eq!(data_name, id());
    assert_eq!(state(&status), (CONDITION_READY, READY_MESSAGE));
    let error = status.conditions.iter().find(|c| c.type_ == CONDITION_ERROR).unwrap();
    assert_eq!(error.status, "False", "the error is cleared once ready");
    assert_eq!(status.creation_timestamp, Some(Time("2025-03-01T09:59:58Z".parse().unwrap())));
    assert_eq!(event.unwrap().reason, "SnapshotReady");
    assert_eq!(bind_patch(&s, &data_name)["spec"]["snapshotDataName"], id().as_str());
}

#[test]
fn a_failed_driver_snapshot_sets_the_error_condition_with_storks_text() {
    let f = Facts { driver_snapshot: Some(Some(ds(SnapshotState::Failed("pool full".into())))), ..facts() };
    let (status, event, then) = status_step(decide(&snap().with_intent(), &f));
    assert_eq!(state(&status), (CONDITION_ERROR, "snapshot failed due to err: pool full"));
    assert_eq!(event.unwrap().severity, Severity::Warning);
    assert_eq!(then, Requeue::Resync);
}

#[test]
fn a_driver_refusal_sets_the_error_condition() {
    let (status, ..) =
        status_step(refused(&snap().with_intent(), &SnapshotError::VolumeNotFound("vol-db".into()), now()));
    assert_eq!(state(&status).1, "snapshot failed due to err: volume vol-db is not known to the storage driver");
}

#[test]
fn a_driver_snapshot_still_being_taken_keeps_the_snapshot_pending_and_polls() {
    let f = Facts { driver_snapshot: Some(Some(ds(SnapshotState::Creating))), data: Some(None), ..facts() };
    let (status, event, then) = status_step(decide(&snap().with_intent(), &f));
    assert_eq!(state(&status).0, CONDITION_PENDING);
    assert_eq!((event, then), (None, Requeue::Soon));
}

#[test]
fn a_data_name_taken_by_another_snapshot_is_an_error() {
    let mut data = our_data();
    data.spec.volume_snapshot_ref.as_mut().unwrap().uid = Some("another-uid".into());
    let f = Facts { driver_snapshot: Some(Some(ds(SnapshotState::Ready))), data: Some(Some(data)), ..facts() };
    let (status, ..) = status_step(decide(&snap().with_intent(), &f));
    assert!(
        state(&status).1.contains("belongs to VolumeSnapshot default/db-snap (uid another-uid); delete it"),
        "{status:?}"
    );
}

// ---- decisions: settled snapshots ----

#[test]
fn an_already_ready_snapshot_whose_driver_snapshot_exists_needs_nothing() {
    let s = snap().with_intent().bound_to(&id()).showing(CONDITION_READY, "SnapshotReady", READY_MESSAGE);
    let mut s = s;
    s.status.as_mut().unwrap().creation_timestamp = Some(Time(now()));
    let f = Facts { driver_snapshot: Some(Some(ds(SnapshotState::Ready))), data: Some(Some(our_data())), ..facts() };
    assert!(matches!(decide(&s, &f), Step::Wait(Requeue::Resync)));
}

#[test]
fn a_ready_snapshot_whose_driver_snapshot_vanished_gets_an_error_and_is_no_longer_ready() {
    let s = snap().with_intent().bound_to(&id()).showing(CONDITION_READY, "SnapshotReady", READY_MESSAGE);
    let f = Facts { driver_snapshot: Some(None), data: Some(Some(our_data())), ..facts() };
    let (status, event, _) = status_step(decide(&s, &f));
    assert!(state(&status).1.contains("no longer exists in the fake storage driver"), "{status:?}");
    assert!(!status.is_ready());
    assert_eq!(event.unwrap().reason, "SnapshotFailed");
}

#[test]
fn a_data_object_deleted_under_a_ready_snapshot_is_made_again() {
    let s = snap().with_intent().bound_to(&id()).showing(CONDITION_READY, "SnapshotReady", READY_MESSAGE);
    let f = Facts { driver_snapshot: Some(Some(ds(SnapshotState::Ready))), data: Some(None), ..facts() };
    assert!(matches!(decide(&s, &f), Step::CreateData(_)));
}

#[test]
fn a_pre_provisioned_binding_written_by_go_stork_becomes_ready() {
    let s = snap().bound_to("k8s-volume-snapshot-5e0c1d2a");
    assert_eq!(data_to_read(&s).as_deref(), Some("k8s-volume-snapshot-5e0c1d2a"));
    assert_eq!(driver_snapshot_to_read(&s, "fake", Some(&go_data())), None, "not this driver's snapshot");
    let f = Facts { data: Some(Some(go_data())), ..facts() };
    let (status, event, then) = status_step(decide(&s, &f));
    assert_eq!(state(&status).0, CONDITION_READY);
    assert_eq!(status.creation_timestamp, Some(Time("2023-11-14T22:13:20Z".parse().unwrap())));
    assert_eq!((event.unwrap().reason, then), ("SnapshotReady", Requeue::Resync));
}

#[test]
fn a_pre_provisioned_binding_to_missing_or_foreign_data_is_an_error() {
    let s = snap().bound_to("k8s-volume-snapshot-5e0c1d2a");
    let f = Facts { data: Some(None), ..facts() };
    assert!(state(&status_step(decide(&s, &f)).0).1.contains("does not exist"));
    let mut other = go_data();
    other.spec.volume_snapshot_ref.as_mut().unwrap().name = Some("default/other-snap".into());
    let f = Facts { data: Some(Some(other)), ..facts() };
    let (status, ..) = status_step(decide(&s, &f));
    assert!(state(&status).1.contains("not to default/db-snap"), "{status:?}");
}

#[test]
fn a_pre_provisioned_snapshot_of_this_driver_is_checked_in_the_driver() {
    let s = snap().bound_to("pre-made");
    let mut data = our_data();
    data.metadata.name = Some("pre-made".into());
    data.spec.driver_snapshot.as_mut().unwrap().snapshot_id = "admin-snap-1".into();
    assert_eq!(driver_snapshot_to_read(&s, "fake", Some(&data)).as_deref(), Some("admin-snap-1"));
    let f = Facts { data: Some(Some(data)), driver_snapshot: Some(None), ..facts() };
    let (status, ..) = status_step(decide(&s, &f));
    assert!(state(&status).1.contains("driver snapshot admin-snap-1 no longer exists"), "{status:?}");
}

// ---- decisions: rules and groups ----

#[test]
fn a_failed_pre_rule_fails_the_snapshot_for_good_naming_the_pod_and_exit_code() {
    use crate::rule::{CommandFailure, Ended, Phase, RuleError};
    let err = RuleError::Command(CommandFailure {
        rule: "freeze".into(),
        pod: "default/mysql-0".into(),
        command: "exit 3".into(),
        ended: Ended::Exit(3),
        stderr: "lock wait timeout".into(),
    });
    let s = snap().with_intent();
    let (status, event, then) = status_step(rule_failed(&s, Phase::Pre, &err, later()));
    let (kind, msg) = state(&status);
    assert_eq!(kind, CONDITION_ERROR);
    for part in [
        "pre-snapshot rule failed",
        "no snapshot was taken",
        "default/mysql-0",
        "exited with code 3",
        "lock wait timeout",
    ] {
        assert!(msg.contains(part), "{part:?} missing from {msg}");
    }
    assert_eq!(event.expect("a warning").severity, Severity::Warning);
    assert_eq!(then, Requeue::Resync);
    let failed = s.showing(CONDITION_ERROR, RULE_FAILED, msg);
    let f = Facts { driver_snapshot: Some(None), data: Some(None), ..facts() };
    assert!(matches!(decide(&failed, &f), Step::Wait(Requeue::Resync)), "the freeze is not run again");
}

#[test]
fn a_missing_rule_is_retried_since_it_may_be_created() {
    use crate::rule::{Phase, RuleError};
    let err = RuleError::NotFound { namespace: "default".into(), name: "freeze".into() };
    let (status, _, then) = status_step(rule_failed(&snap().with_intent(), Phase::Pre, &err, later()));
    assert!(state(&status).1.contains("rule default/freeze not found"));
    assert_eq!(then, Requeue::Soon);
}

#[test]
fn a_group_member_waits_for_its_group_instead_of_being_taken_alone() {
    use crate::model::group::{GroupVolumeSnapshot, GroupVolumeSnapshotSpec};
    let mut g = GroupVolumeSnapshot::new("db-group", GroupVolumeSnapshotSpec::default());
    g.metadata.uid = Some("g-uid".into());
    let mut member = crate::snapshot::group::plan::member_snapshot(&g, "db-data");
    member.metadata.uid = Some(UID.into());
    let (status, _, _) = status_step(decide(&member, &facts()));
    assert_eq!(state(&status), (CONDITION_PENDING, "taken by group snapshot db-group in its window"));
}
