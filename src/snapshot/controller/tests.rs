//! Snapshot controller tests: shared fixtures and fakes, claim resolution against a cached world,
//! deletion, conditions and timing. The decision table of [`decide`] is in `tests_decide.rs`, and
//! an in-memory reconciler (the same steps and patches as `apply`) over a counting fake driver,
//! for crash-and-retry, is in `tests_loop.rs`.

use std::sync::atomic::Ordering;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{
    decide::{new_data, status_of},
    *,
};
use crate::{
    cluster::{ClusterView, Objects},
    driver::{DriverSnapshot, SnapshotState},
    events::Severity,
    fixtures::FakeDriver,
    knobs::{SNAPSHOT_ID_ANNOTATION, SNAPSHOT_PV_NAME_LABEL, SNAPSHOT_TIMESTAMP_LABEL},
    model::crd::{CONDITION_ERROR, CONDITION_PENDING, CONDITION_READY, SnapshotCondition},
};

#[path = "tests_decide.rs"]
mod decisions;
#[path = "tests_loop.rs"]
mod reconcile_loop;

const UID: &str = "7d1c2b4e-5a6f-4c3d-9e8f-0123456789ab";

fn id() -> String {
    snapshot_id(UID)
}

fn now() -> Timestamp {
    "2025-03-01T10:00:00Z".parse().unwrap()
}

fn later() -> Timestamp {
    "2025-03-01T10:05:00Z".parse().unwrap()
}

/// A new snapshot `default/db-snap` of claim `db-data`, finalizer already added.
fn snap() -> VolumeSnapshot {
    serde_json::from_str(include_str!("../../../tests/data/snapshot/controller/snapshot-new.json")).unwrap()
}

trait SnapExt {
    fn with_intent(self) -> Self;
    fn bound_to(self, data: &str) -> Self;
    fn showing(self, type_: &str, reason: &str, message: &str) -> Self;
    fn annotated(self, k: &str, v: &str) -> Self;
}

impl SnapExt for VolumeSnapshot {
    fn with_intent(self) -> Self {
        let mut s = self.annotated(SNAPSHOT_ID_ANNOTATION, &id());
        let labels = s.metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.insert(SNAPSHOT_PV_NAME_LABEL.into(), "pv-db".into());
        labels.insert(SNAPSHOT_TIMESTAMP_LABEL.into(), "1740823200000000000".into());
        s
    }
    fn bound_to(mut self, data: &str) -> Self {
        self.spec.snapshot_data_name = data.into();
        self
    }
    fn showing(mut self, type_: &str, reason: &str, message: &str) -> Self {
        self.status = Some(with_state(&status_of(&self), type_, reason, message, now()));
        self
    }
    fn annotated(mut self, k: &str, v: &str) -> Self {
        self.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(k.into(), v.into());
        self
    }
}

fn facts() -> Facts {
    Facts {
        now: later(),
        driver: "fake".into(),
        source: Source::Volume { pv: "pv-db".into(), volume_id: "vol-db".into() },
        driver_snapshot: None,
        data: None,
    }
}

fn ds(state: SnapshotState) -> DriverSnapshot {
    DriverSnapshot { id: id(), volume_id: "vol-db".into(), state, created: "2025-03-01T09:59:58Z".into() }
}

/// The data object stork makes for [`snap`], Ready.
fn our_data() -> VolumeSnapshotData {
    let f = Facts { driver_snapshot: Some(Some(ds(SnapshotState::Ready))), ..facts() };
    let mut d = new_data(&snap().with_intent(), &f, &ds(SnapshotState::Ready));
    d.status = Some(with_state(&SnapshotStatus::default(), CONDITION_READY, "SnapshotReady", READY_MESSAGE, now()));
    d
}

fn go_data() -> VolumeSnapshotData {
    serde_json::from_str(include_str!("../../../tests/data/snapshot/controller/data-go-preprovisioned.json")).unwrap()
}

/// The True condition of a status, as (type, message).
fn state(status: &SnapshotStatus) -> (&str, &str) {
    let c = status.conditions.iter().find(|c| c.status == "True").expect("a True condition");
    (c.type_.as_str(), c.message.as_str())
}

/// The status and event of a `Status` step (panics on any other step).
fn status_step(step: Step) -> (SnapshotStatus, Option<PodEvent>, Requeue) {
    match step {
        Step::Status { status, event, then } => (status, event, then),
        other => panic!("expected a status write, got {other:?}"),
    }
}

// ---- fakes ----

/// The fake driver knowing volume `pv-db` (as `vol-db`) only.
fn fake_driver() -> FakeDriver {
    FakeDriver::knowing("pv-db", "vol-db")
}

// ---- claim resolution ----

fn resolve_claim(claim: &str) -> Source {
    let objects = Objects::from_yaml(include_str!("../../../tests/data/snapshot/controller/cluster.json")).unwrap();
    resolve(&objects.into_view(), &fake_driver(), "default", claim)
}

#[test]
fn a_bound_claim_of_the_driver_resolves_to_its_driver_volume() {
    assert_eq!(resolve_claim("db-data"), Source::Volume { pv: "pv-db".into(), volume_id: "vol-db".into() });
}

#[test]
fn claims_that_cannot_be_snapshotted_say_what_to_fix_and_transient_ones_wait() {
    for (claim, want_wait, says) in [
        ("missing-data", false, "claim default/missing-data was not found"),
        ("", false, "spec.persistentVolumeClaimName is empty"),
        ("new-data", true, "is not bound yet (phase Pending)"),
        ("uncached-data", true, "volume pv-not-cached of claim default/uncached-data is not in stork's cache yet"),
        ("other-data", false, "is not provisioned by the fake storage driver"),
        ("ghost-data", false, "volume pv-ghost of claim default/ghost-data is not known to the fake storage driver"),
    ] {
        let (wait, msg) = match resolve_claim(claim) {
            Source::Wait(m) => (true, m),
            Source::Invalid(m) => (false, m),
            other => panic!("{claim}: resolved to {other:?}"),
        };
        assert_eq!(wait, want_wait, "{claim}: {msg}");
        assert!(msg.contains(says), "{claim}: {msg}");
    }
}

#[test]
fn nothing_resolves_before_the_cache_has_synced() {
    let (view, _writers) = ClusterView::new();
    assert!(matches!(resolve(&view, &fake_driver(), "default", "db-data"), Source::Wait(_)));
}

// ---- deletion ----

#[test]
fn deleting_a_stork_snapshot_cleans_up_its_driver_snapshot_and_data() {
    assert_eq!(cleanup_plan(&snap().with_intent().bound_to(&id())), Some(id()));
}

#[test]
fn deleting_a_pre_provisioned_snapshot_leaves_the_driver_alone() {
    assert_eq!(cleanup_plan(&snap().bound_to("k8s-volume-snapshot-5e0c1d2a")), None);
}

#[test]
fn an_intent_annotation_copied_from_another_object_does_not_make_a_snapshot_storks() {
    let s = snap().annotated(SNAPSHOT_ID_ANNOTATION, "k8s-volume-snapshot-someone-else");
    assert_eq!(cleanup_plan(&s), None);
    assert!(matches!(decide(&s, &facts()), Step::RecordIntent { .. }), "it is taken afresh under its own id");
}

// ---- conditions and timing ----

#[test]
fn conditions_keep_one_entry_per_type_and_their_time_until_the_status_changes() {
    let mut old = with_state(&SnapshotStatus::default(), CONDITION_PENDING, "A", "first", now());
    old.conditions.push(SnapshotCondition {
        type_: CONDITION_PENDING.into(),
        status: "True".into(),
        ..old.conditions[0].clone()
    });
    old.conditions.push(SnapshotCondition { type_: "Custom".into(), status: "True".into(), ..Default::default() });
    let new = with_state(&old, CONDITION_PENDING, "B", "second", later());
    assert_eq!(new.conditions.iter().filter(|c| c.type_ == CONDITION_PENDING).count(), 1);
    let pending = &new.conditions[0];
    assert_eq!((pending.message.as_str(), pending.last_transition_time.clone()), ("second", Some(Time(now()))));
    let ready = with_state(&new, CONDITION_READY, "R", READY_MESSAGE, later());
    let pending = ready.conditions.iter().find(|c| c.type_ == CONDITION_PENDING).unwrap();
    assert_eq!((pending.status.as_str(), pending.last_transition_time.clone()), ("False", Some(Time(later()))));
    assert!(ready.conditions.iter().any(|c| c.type_ == "Custom" && c.status == "True"), "other types untouched");
}

#[test]
fn retries_back_off_from_the_retry_interval_to_a_minute() {
    let retry = Duration::from_secs(2);
    let waits: Vec<u64> = (1..=7).map(|n| backoff(retry, MAX_BACKOFF, n).as_secs()).collect();
    assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60]);
    assert_eq!(backoff(retry, MAX_BACKOFF, u32::MAX), MAX_BACKOFF);
}
