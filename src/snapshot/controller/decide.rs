//! The pure decision of the snapshot controller: given a `VolumeSnapshot` and what was looked up
//! ([`Facts`]), [`decide`] returns the one [`Step`] to take next, and [`with_state`] computes the
//! status that shows it.

use std::collections::BTreeMap;

use k8s_openapi::{api::core::v1::ObjectReference, apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{Resource, ResourceExt};

use super::{READY_MESSAGE, Source, points_at, snapshot_id, stork_id};
use crate::{
    driver::{DriverSnapshot, SnapshotError, SnapshotState},
    events::PodEvent,
    knobs::{SNAPSHOT_PV_NAME_LABEL, SNAPSHOT_TIMESTAMP_LABEL, is_label_value},
    model::crd::{
        CONDITION_ERROR, CONDITION_PENDING, CONDITION_READY, DriverSnapshotSource, SnapshotCondition, SnapshotStatus,
        VolumeSnapshot, VolumeSnapshotData, VolumeSnapshotDataSpec,
    },
    rule::{Phase, RuleError},
};

/// What the reconciler looked up for one decision. Lookups are `None` when not made (see
/// [`data_to_read`](super::data_to_read), [`driver_snapshot_to_read`](super::driver_snapshot_to_read))
/// and `Some(None)` when the object is absent.
#[derive(Debug, Clone)]
pub struct Facts {
    /// Now: condition transition times and the intent's timestamp label.
    pub now: Timestamp,
    /// The storage driver's name.
    pub driver: String,
    /// The claim's volume, or why it cannot be snapshotted.
    pub source: Source,
    /// The driver snapshot.
    pub driver_snapshot: Option<Option<DriverSnapshot>>,
    /// The `VolumeSnapshotData`.
    pub data: Option<Option<VolumeSnapshotData>>,
}

/// When to look at a snapshot again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// In progress or failed: soon, backing off.
    Soon,
    /// Settled: at the resync interval.
    Resync,
}

/// The one thing to do next for a snapshot.
#[derive(Debug, Clone)]
pub enum Step {
    /// Nothing to change.
    Wait(Requeue),
    /// Write this status (and event), then wait.
    Status {
        /// The whole new status.
        status: SnapshotStatus,
        /// Event to record.
        event: Option<PodEvent>,
        /// When to look again.
        then: Requeue,
    },
    /// Record the driver snapshot id and labels ([`intent_patch`](super::intent_patch)), then a
    /// Pending status.
    RecordIntent {
        /// Driver snapshot id.
        id: String,
        /// Labels for the snapshot and the driver.
        labels: BTreeMap<String, String>,
        /// The Pending status.
        status: SnapshotStatus,
    },
    /// Take the driver snapshot (idempotent by id).
    TakeSnapshot {
        /// Driver snapshot id.
        id: String,
        /// Volume to snapshot.
        volume_id: String,
        /// Labels recorded with the intent.
        labels: BTreeMap<String, String>,
    },
    /// Create the data object (a conflict means an earlier attempt made it).
    CreateData(Box<VolumeSnapshotData>),
    /// Write the data object's status.
    MarkDataReady {
        /// Data object name.
        name: String,
        /// Its status.
        status: SnapshotStatus,
    },
    /// Bind the snapshot to its data object ([`bind_patch`](super::bind_patch)) and write its
    /// Ready status.
    Bind {
        /// Data object name.
        data_name: String,
        /// The Ready status.
        status: SnapshotStatus,
        /// Event to record.
        event: Option<PodEvent>,
    },
}

/// A state to show on the snapshot.
struct Verdict {
    type_: &'static str,
    reason: &'static str,
    message: String,
    then: Requeue,
}

fn pending(reason: &'static str, message: String) -> Verdict {
    Verdict { type_: CONDITION_PENDING, reason, message, then: Requeue::Soon }
}

fn failed(reason: &'static str, message: String, then: Requeue) -> Verdict {
    Verdict { type_: CONDITION_ERROR, reason, message, then }
}

fn ready(message: String) -> Verdict {
    Verdict { type_: CONDITION_READY, reason: "SnapshotReady", message, then: Requeue::Resync }
}

/// Decides the next step for a snapshot that is not being deleted.
pub fn decide(s: &VolumeSnapshot, f: &Facts) -> Step {
    let Some(uid) = s.metadata.uid.as_deref().filter(|u| !u.is_empty()) else {
        return settle(s, f.now, failed("Invalid", "the snapshot has no UID".into(), Requeue::Soon), None);
    };
    let id = snapshot_id(uid);
    let bound = s.spec.snapshot_data_name.as_str();
    match (stork_id(s).is_some(), bound.is_empty()) {
        (false, false) => pre_provisioned(s, f, bound),
        (true, false) if bound != id => {
            let msg = format!("spec.snapshotDataName was changed to {bound}, but stork took this snapshot as {id}");
            settle(s, f.now, failed("DataMismatch", msg, Requeue::Resync), None)
        }
        (true, _) => stork_snapshot(s, f, &id, !bound.is_empty()),
        (false, true) if super::super::group::waits_for_group(s).is_some() => {
            let group = super::super::group::waits_for_group(s).unwrap_or_default();
            let msg = format!("taken by group snapshot {group} in its window");
            settle(s, f.now, pending("WaitingForGroup", msg), None)
        }
        (false, true) => match &f.source {
            Source::Volume { pv, .. } => {
                let mut labels =
                    BTreeMap::from([(SNAPSHOT_TIMESTAMP_LABEL.to_string(), f.now.as_nanosecond().to_string())]);
                if is_label_value(pv) {
                    labels.insert(SNAPSHOT_PV_NAME_LABEL.to_string(), pv.clone());
                }
                let claim = &s.spec.persistent_volume_claim_name;
                let msg = format!("taking snapshot {id} of claim {claim}");
                let status = with_state(&status_of(s), CONDITION_PENDING, "SnapshotPending", &msg, f.now);
                Step::RecordIntent { id, labels, status }
            }
            other => unresolved(s, f.now, other),
        },
    }
}

/// The condition for a claim that does not resolve (a resolved one gets `Wait`).
fn unresolved(s: &VolumeSnapshot, now: Timestamp, source: &Source) -> Step {
    match source {
        Source::Wait(m) => settle(s, now, pending("WaitingForClaim", m.clone()), None),
        Source::Invalid(m) => settle(s, now, failed("InvalidClaim", m.clone(), Requeue::Soon), None),
        Source::Volume { .. } => Step::Wait(Requeue::Soon),
    }
}

/// A snapshot stork recorded intent for, bound to its data object or not yet.
fn stork_snapshot(s: &VolumeSnapshot, f: &Facts, id: &str, bound: bool) -> Step {
    let Some(found) = &f.driver_snapshot else { return Step::Wait(Requeue::Soon) };
    let Some(ds) = found else {
        if bound {
            return settle(s, f.now, vanished(id, &f.driver), None);
        }
        if status_of(s).condition(CONDITION_ERROR).is_some_and(|c| c.reason == RULE_FAILED) {
            return Step::Wait(Requeue::Resync);
        }
        return match &f.source {
            Source::Volume { volume_id, .. } => {
                let labels = [SNAPSHOT_TIMESTAMP_LABEL, SNAPSHOT_PV_NAME_LABEL]
                    .iter()
                    .filter_map(|k| s.labels().get(*k).map(|v| (k.to_string(), v.clone())))
                    .collect();
                Step::TakeSnapshot { id: id.to_string(), volume_id: volume_id.clone(), labels }
            }
            other => unresolved(s, f.now, other),
        };
    };
    if let Some(v) = unready(id, ds) {
        return settle(s, f.now, v, None);
    }
    let Some(found) = &f.data else { return Step::Wait(Requeue::Soon) };
    let Some(data) = found else { return Step::CreateData(Box::new(new_data(s, f, ds))) };
    if !points_at(data, s) {
        let msg =
            format!("VolumeSnapshotData {id} belongs to {}; delete it so stork can bind this snapshot", owner(data));
        return settle(s, f.now, failed("DataConflict", msg, Requeue::Soon), None);
    }
    let data_status = data.status.clone().unwrap_or_default();
    if !data_status.is_ready() {
        let mut status = with_state(&data_status, CONDITION_READY, "SnapshotReady", READY_MESSAGE, f.now);
        status.creation_timestamp.get_or_insert_with(|| created(ds, f.now));
        return Step::MarkDataReady { name: id.to_string(), status };
    }
    let created = Some(created(ds, f.now));
    if bound {
        return settle(s, f.now, ready(READY_MESSAGE.into()), created);
    }
    match settle(s, f.now, ready(READY_MESSAGE.into()), created) {
        Step::Status { status, event, .. } => Step::Bind { data_name: id.to_string(), status, event },
        _ => Step::Bind { data_name: id.to_string(), status: status_of(s), event: None },
    }
}

/// A snapshot bound to a data object stork did not make: checked, never acted on.
fn pre_provisioned(s: &VolumeSnapshot, f: &Facts, name: &str) -> Step {
    let data = match &f.data {
        None => return Step::Wait(Requeue::Soon),
        Some(None) => {
            let msg = format!("VolumeSnapshotData {name} named by spec.snapshotDataName does not exist");
            return settle(s, f.now, failed("DataNotFound", msg, Requeue::Soon), None);
        }
        Some(Some(d)) => d,
    };
    if !points_at(data, s) {
        let msg = format!(
            "VolumeSnapshotData {name} belongs to {}, not to {}/{}; fix its spec.volumeSnapshotRef",
            owner(data),
            s.namespace().unwrap_or_default(),
            s.name_any()
        );
        return settle(s, f.now, failed("DataConflict", msg, Requeue::Soon), None);
    }
    if let Some(msg) = data.status.as_ref().and_then(|st| st.error()) {
        let msg = format!("VolumeSnapshotData {name} failed: {msg}");
        return settle(s, f.now, failed("SnapshotFailed", msg, Requeue::Resync), None);
    }
    let mut created = data.status.as_ref().and_then(|st| st.creation_timestamp.clone());
    match &f.driver_snapshot {
        Some(None) => {
            let id = data.spec.driver_snapshot.as_ref().map(|d| d.snapshot_id.as_str()).unwrap_or(name);
            return settle(s, f.now, vanished(id, &f.driver), None);
        }
        Some(Some(ds)) => {
            if let Some(v) = unready(&ds.id, ds) {
                return settle(s, f.now, v, None);
            }
            created = created.or_else(|| Some(self::created(ds, f.now)));
        }
        None => {}
    }
    let verdict = ready(format!("bound to pre-provisioned VolumeSnapshotData {name}; it is ready"));
    settle(s, f.now, verdict, created.or(Some(Time(f.now))))
}

fn vanished(id: &str, driver: &str) -> Verdict {
    let msg = format!(
        "driver snapshot {id} no longer exists in the {driver} storage driver; \
         this snapshot cannot be restored: delete it and take a new one"
    );
    failed("SnapshotVanished", msg, Requeue::Resync)
}

/// The verdict for a driver snapshot that is not Ready yet, or `None` when it is.
fn unready(id: &str, ds: &DriverSnapshot) -> Option<Verdict> {
    match &ds.state {
        SnapshotState::Ready => None,
        SnapshotState::Creating => {
            Some(pending("SnapshotInProgress", format!("the storage driver is taking snapshot {id}")))
        }
        SnapshotState::Failed(m) => Some(snapshot_failed(m)),
    }
}

fn snapshot_failed(err: &str) -> Verdict {
    failed("SnapshotFailed", format!("snapshot failed due to err: {err}"), Requeue::Resync)
}

/// The step after the driver refused to take a snapshot (an error retrying cannot fix).
pub fn refused(s: &VolumeSnapshot, err: &SnapshotError, now: Timestamp) -> Step {
    settle(s, now, failed("SnapshotFailed", format!("snapshot failed due to err: {err}"), Requeue::Soon), None)
}

/// The step after a rule failed around the snapshot: no snapshot was taken. A rule that does
/// not exist yet is retried (it may be created); a command that failed is final, because running
/// a freeze again and again on a live database is worse than one clear failure.
pub fn rule_failed(s: &VolumeSnapshot, phase: Phase, err: &RuleError, now: Timestamp) -> Step {
    let msg = format!("{} rule failed, so no snapshot was taken: {err}", phase.label());
    let verdict = match err {
        RuleError::NotFound { .. } | RuleError::Api { .. } => failed("RuleNotReady", msg, Requeue::Soon),
        RuleError::Invalid(_) | RuleError::Command(_) => {
            failed(RULE_FAILED, format!("{msg}; delete this VolumeSnapshot and create a new one"), Requeue::Resync)
        }
    };
    settle(s, now, verdict, None)
}

/// Condition reason of a snapshot whose rule failed for good.
pub const RULE_FAILED: &str = "RuleFailed";

/// Turns a verdict into a status write, or `Wait` when the snapshot already shows it.
fn settle(s: &VolumeSnapshot, now: Timestamp, v: Verdict, created: Option<Time>) -> Step {
    let old = status_of(s);
    let mut status = with_state(&old, v.type_, v.reason, &v.message, now);
    if v.type_ == CONDITION_READY && status.creation_timestamp.is_none() {
        status.creation_timestamp = created;
    }
    if status == old {
        return Step::Wait(v.then);
    }
    let event = match v.type_ {
        CONDITION_ERROR if old.error() != Some(v.message.as_str()) => {
            Some(PodEvent::warning("SnapshotFailed", v.message))
        }
        CONDITION_READY if !old.is_ready() => Some(PodEvent::normal("SnapshotReady", v.message)),
        _ => None,
    };
    Step::Status { status, event, then: v.then }
}

/// The snapshot's status, empty when it has none.
pub(super) fn status_of(s: &VolumeSnapshot) -> SnapshotStatus {
    s.status.clone().unwrap_or_default()
}

/// `status` with condition `type_` True (reason, message) and the other snapshot conditions
/// False. One entry per type (the last wins, as Stork appended); `lastTransitionTime` changes
/// only where the status does. Conditions of other types are kept as they are.
pub fn with_state(old: &SnapshotStatus, type_: &str, reason: &str, message: &str, now: Timestamp) -> SnapshotStatus {
    let mut conditions: Vec<SnapshotCondition> = Vec::new();
    for c in &old.conditions {
        match conditions.iter_mut().find(|o| o.type_ == c.type_) {
            Some(o) => *o = c.clone(),
            None => conditions.push(c.clone()),
        }
    }
    if !conditions.iter().any(|c| c.type_ == type_) {
        conditions.push(SnapshotCondition { type_: type_.into(), ..SnapshotCondition::default() });
    }
    for c in
        conditions.iter_mut().filter(|c| [CONDITION_PENDING, CONDITION_READY, CONDITION_ERROR].contains(&&*c.type_))
    {
        let want = if c.type_ == type_ { "True" } else { "False" };
        if c.status != want {
            c.status = want.into();
            c.last_transition_time = Some(Time(now));
        }
        if c.type_ == type_ {
            (c.reason, c.message) = (reason.into(), message.into());
        }
    }
    SnapshotStatus { creation_timestamp: old.creation_timestamp.clone(), conditions }
}

/// When the driver took the snapshot (now if it does not say in RFC 3339).
fn created(ds: &DriverSnapshot, now: Timestamp) -> Time {
    Time(ds.created.parse().unwrap_or(now))
}

/// The data object for stork's snapshot `ds` of `s`.
pub(super) fn new_data(s: &VolumeSnapshot, f: &Facts, ds: &DriverSnapshot) -> VolumeSnapshotData {
    let pv = s.labels().get(SNAPSHOT_PV_NAME_LABEL).cloned().or_else(|| match &f.source {
        Source::Volume { pv, .. } => Some(pv.clone()),
        _ => None,
    });
    let spec = VolumeSnapshotDataSpec {
        volume_snapshot_ref: Some(ObjectReference {
            api_version: Some(VolumeSnapshot::api_version(&()).into_owned()),
            kind: Some(VolumeSnapshot::kind(&()).into_owned()),
            namespace: s.namespace(),
            name: s.metadata.name.clone(),
            uid: s.metadata.uid.clone(),
            ..ObjectReference::default()
        }),
        persistent_volume_ref: pv.map(|name| ObjectReference {
            kind: Some("PersistentVolume".into()),
            name: Some(name),
            ..ObjectReference::default()
        }),
        driver_snapshot: Some(DriverSnapshotSource {
            driver: f.driver.clone(),
            snapshot_id: ds.id.clone(),
            volume_id: ds.volume_id.clone(),
        }),
    };
    VolumeSnapshotData::new(&ds.id, spec)
}

/// Who a data object says it belongs to, for messages.
fn owner(data: &VolumeSnapshotData) -> String {
    match &data.spec.volume_snapshot_ref {
        Some(r) => {
            let (ns, name) = (r.namespace.as_deref().unwrap_or_default(), r.name.as_deref().unwrap_or_default());
            match r.uid.as_deref().filter(|u| !u.is_empty()) {
                Some(uid) => format!("VolumeSnapshot {ns}/{name} (uid {uid})"),
                None => format!("VolumeSnapshot {ns}/{name}"),
            }
        }
        None => "no VolumeSnapshot (spec.volumeSnapshotRef is empty)".into(),
    }
}
