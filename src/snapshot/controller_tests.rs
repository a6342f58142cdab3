//! Snapshot controller tests: claim resolution against a cached world, [`decide`] as a decision
//! table, and an in-memory reconciler (the same steps and patches as `apply`) over a counting
//! fake driver, for crash-and-retry.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeSpec};

use super::*;
use crate::{
    cluster::Objects,
    driver::{NodeInventory, Progress, Volume},
    events::Severity,
};

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
    serde_json::from_str(include_str!("../../tests/data/snapshot/controller/snapshot-new.json")).unwrap()
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
        labels.insert(PV_NAME_LABEL.into(), "pv-db".into());
        labels.insert(TIMESTAMP_LABEL.into(), "1740823200000000000".into());
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
    serde_json::from_str(include_str!("../../tests/data/snapshot/controller/data-go-preprovisioned.json")).unwrap()
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

// ---- claim resolution ----

/// A driver owning `fake.csi.example.com` that knows volume `pv-db` only.
#[derive(Default)]
struct FakeDriver {
    snaps: FakeSnapshots,
}

impl Driver for FakeDriver {
    fn name(&self) -> &str {
        "fake"
    }
    fn owns_provisioner(&self, p: &str) -> bool {
        p == "fake.csi.example.com"
    }
    fn nodes(&self) -> Result<Arc<NodeInventory>, crate::driver::Error> {
        Ok(Arc::new(NodeInventory::new(Vec::new())))
    }
    fn volume(&self, pv: &PersistentVolume) -> Result<Option<Arc<Volume>>, crate::driver::Error> {
        let known = pv.metadata.name.as_deref() == Some("pv-db");
        Ok(known.then(|| Arc::new(Volume { id: "vol-db".into(), ..Volume::default() })))
    }
    fn snapshots(&self) -> Option<&dyn SnapshotDriver> {
        Some(&self.snaps)
    }
}

fn resolve_claim(claim: &str) -> Source {
    let objects = Objects::from_yaml(include_str!("../../tests/data/snapshot/controller/cluster.json")).unwrap();
    resolve(&objects.into_view(), &FakeDriver::default(), "default", claim)
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
    assert!(matches!(resolve(&view, &FakeDriver::default(), "default", "db-data"), Source::Wait(_)));
}

// ---- decisions: taking a snapshot ----

#[test]
fn a_new_snapshot_records_its_intent_before_the_driver_is_called() {
    let Step::RecordIntent { id: got, labels, status } = decide(&snap(), &facts()) else { panic!("expected intent") };
    assert_eq!(got, format!("k8s-volume-snapshot-{UID}"));
    assert_eq!(labels[PV_NAME_LABEL], "pv-db");
    assert_eq!(labels[TIMESTAMP_LABEL], later().as_nanosecond().to_string());
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
    let waits: Vec<u64> = (1..=7).map(|n| backoff(retry, n).as_secs()).collect();
    assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60]);
    assert_eq!(backoff(retry, u32::MAX), MAX_BACKOFF);
}

#[test]
fn label_values_stork_records_are_valid_kubernetes_label_values() {
    assert!(is_label_value("pvc-4b1f.x_y") && is_label_value(""));
    assert!(!is_label_value("-lead") && !is_label_value(&"a".repeat(64)) && !is_label_value("a/b"));
}

// ---- the reconciler loop, in memory ----

/// Snapshots the fake driver holds, by id, with the labels they were taken with.
type Taken = BTreeMap<String, (DriverSnapshot, BTreeMap<String, String>)>;

/// A driver's snapshot side holding snapshots in memory and counting `create_snapshot` calls.
#[derive(Default)]
struct FakeSnapshots {
    taken: Mutex<Taken>,
    creates: AtomicUsize,
    /// The next create succeeds in the driver but its reply is lost.
    lose_reply: AtomicBool,
}

#[async_trait]
impl SnapshotDriver for FakeSnapshots {
    async fn create_snapshot(
        &self,
        id: &str,
        volume_id: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<DriverSnapshot, SnapshotError> {
        self.creates.fetch_add(1, Ordering::SeqCst);
        let ds = DriverSnapshot {
            id: id.into(),
            volume_id: volume_id.into(),
            state: SnapshotState::Ready,
            created: "2025-03-01T10:00:01Z".into(),
        };
        let mut taken = self.taken.lock().unwrap();
        let (ds, _) = taken.entry(id.into()).or_insert((ds, labels.clone())).clone();
        if self.lose_reply.swap(false, Ordering::SeqCst) {
            return Err(SnapshotError::Failed("connection reset".into()));
        }
        Ok(ds)
    }
    async fn snapshot(&self, id: &str) -> Result<Option<DriverSnapshot>, SnapshotError> {
        Ok(self.taken.lock().unwrap().get(id).map(|(ds, _)| ds.clone()))
    }
    async fn delete_snapshot(&self, id: &str) -> Result<(), SnapshotError> {
        self.taken.lock().unwrap().remove(id);
        Ok(())
    }
    async fn restore_volume(&self, _: &str, _: &str, _: &BTreeMap<String, String>) -> Result<Volume, SnapshotError> {
        Err(SnapshotError::Invalid("not used here".into()))
    }
    async fn delete_volume(&self, _: &str) -> Result<(), SnapshotError> {
        Ok(())
    }
    async fn start_in_place_restore(&self, _: &str, _: &str, _: &str) -> Result<(), SnapshotError> {
        Err(SnapshotError::Invalid("not used here".into()))
    }
    async fn in_place_restore_status(&self, _: &str) -> Result<Progress, SnapshotError> {
        Err(SnapshotError::Invalid("not used here".into()))
    }
    async fn cleanup_in_place_restore(&self, _: &str) -> Result<(), SnapshotError> {
        Ok(())
    }
    fn pv_source(&self, _: &str) -> PersistentVolumeSpec {
        PersistentVolumeSpec::default()
    }
}

/// The API server and the driver, in memory: one snapshot, its data object, the fake driver.
struct Sim {
    snap: VolumeSnapshot,
    data: Option<VolumeSnapshotData>,
    driver: FakeDriver,
    events: Vec<PodEvent>,
}

impl Sim {
    fn new() -> Self {
        Self { snap: snap(), data: None, driver: FakeDriver::default(), events: Vec::new() }
    }

    /// The same lookups as `gather`.
    async fn facts(&self) -> Facts {
        let data = data_to_read(&self.snap).map(|n| self.data.clone().filter(|d| d.name_any() == n));
        let read = driver_snapshot_to_read(&self.snap, "fake", data.as_ref().and_then(Option::as_ref));
        let driver_snapshot = match read {
            Some(id) => Some(self.driver.snaps.snapshot(&id).await.unwrap()),
            None => None,
        };
        Facts { driver_snapshot, data, ..facts() }
    }

    fn merge(&mut self, patch: &Value) {
        let mut v = serde_json::to_value(&self.snap).unwrap();
        json_patch::merge(&mut v, patch);
        self.snap = serde_json::from_value(v).unwrap();
    }

    /// Carries out one step as `apply` does; `Some` when the reconcile ends.
    async fn act(&mut self, step: Step) -> Option<Result<Requeue, SnapshotError>> {
        match step {
            Step::Wait(r) => return Some(Ok(r)),
            Step::Status { status, event, then } => {
                self.merge(&status_patch(&status));
                self.events.extend(event);
                return Some(Ok(then));
            }
            Step::RecordIntent { id, labels, status } => {
                self.merge(&intent_patch(&self.snap.clone(), &id, &labels));
                self.merge(&status_patch(&status));
            }
            Step::TakeSnapshot { id, volume_id, labels } => {
                match self.driver.snaps.create_snapshot(&id, &volume_id, &labels).await {
                    Ok(_) => {}
                    Err(e) if e.is_retryable() => return Some(Err(e)),
                    Err(e) => {
                        let step = refused(&self.snap, &e, now());
                        return Box::pin(self.act(step)).await;
                    }
                }
            }
            Step::CreateData(d) => {
                self.data.get_or_insert(*d);
            }
            Step::MarkDataReady { status, .. } => self.data.as_mut().unwrap().status = Some(status),
            Step::Bind { data_name, status, event } => {
                self.merge(&bind_patch(&self.snap.clone(), &data_name));
                self.merge(&status_patch(&status));
                self.events.extend(event);
                return Some(Ok(Requeue::Resync));
            }
        }
        None
    }

    async fn reconcile(&mut self) -> Result<Requeue, SnapshotError> {
        for _ in 0..MAX_STEPS {
            let step = decide(&self.snap, &self.facts().await);
            if let Some(done) = self.act(step).await {
                return done;
            }
        }
        Ok(Requeue::Soon)
    }
}

#[tokio::test]
async fn a_new_snapshot_becomes_ready_in_one_reconcile_and_then_settles() {
    let mut sim = Sim::new();
    assert_eq!(sim.reconcile().await, Ok(Requeue::Resync));
    let status = sim.snap.status.clone().unwrap();
    assert_eq!(state(&status), (CONDITION_READY, READY_MESSAGE));
    assert_eq!(sim.snap.spec.snapshot_data_name, id());
    assert!(points_at(sim.data.as_ref().unwrap(), &sim.snap));
    assert!(sim.data.as_ref().unwrap().status.as_ref().unwrap().is_ready());
    assert_eq!(sim.events.iter().map(|e| e.reason).collect::<Vec<_>>(), ["SnapshotReady"]);

    assert_eq!(sim.reconcile().await, Ok(Requeue::Resync));
    assert_eq!(sim.driver.snaps.creates.load(Ordering::SeqCst), 1);
    assert_eq!(sim.events.len(), 1, "a settled snapshot is not announced again");
}

#[tokio::test]
async fn a_reply_lost_after_the_driver_took_the_snapshot_does_not_take_a_second_one() {
    let mut sim = Sim::new();
    sim.driver.snaps.lose_reply.store(true, Ordering::SeqCst);
    assert!(sim.reconcile().await.is_err());
    assert_eq!(stork_id(&sim.snap), Some(id()), "the intent survives the failure");

    assert_eq!(sim.reconcile().await, Ok(Requeue::Resync));
    assert_eq!(sim.driver.snaps.creates.load(Ordering::SeqCst), 1, "found by id, not taken again");
    assert_eq!(sim.driver.snaps.taken.lock().unwrap().len(), 1);
    assert!(sim.snap.status.unwrap().is_ready());
}

#[tokio::test]
async fn a_crash_after_recording_intent_repeats_the_same_call_with_the_recorded_labels() {
    let mut sim = Sim::new();
    let step = decide(&sim.snap, &sim.facts().await);
    assert!(matches!(step, Step::RecordIntent { .. }));
    assert!(sim.act(step).await.is_none());
    // crash: a new leader starts from the object as stored
    let recorded = sim.snap.metadata.labels.clone().unwrap();
    assert_eq!(sim.reconcile().await, Ok(Requeue::Resync));
    let taken = sim.driver.snaps.taken.lock().unwrap();
    let (ds, labels) = &taken[&id()];
    assert_eq!((ds.volume_id.as_str(), labels), ("vol-db", &recorded));
    assert_eq!(sim.driver.snaps.creates.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_driver_snapshot_deleted_behind_storks_back_turns_a_ready_snapshot_into_an_error() {
    let mut sim = Sim::new();
    sim.reconcile().await.unwrap();
    sim.driver.snaps.delete_snapshot(&id()).await.unwrap();
    assert_eq!(sim.reconcile().await, Ok(Requeue::Resync));
    let status = sim.snap.status.clone().unwrap();
    assert!(!status.is_ready() && status.error().is_some_and(|m| m.contains("no longer exists")));
    assert_eq!(sim.driver.snaps.creates.load(Ordering::SeqCst), 1, "a vanished snapshot is not silently retaken");
}
