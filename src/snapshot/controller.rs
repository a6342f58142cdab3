//! The snapshot controller: a `VolumeSnapshot` becomes a driver snapshot plus a bound
//! `VolumeSnapshotData` (Stork §4.2), and deleting it deletes both.
//!
//! Restart safety: the driver snapshot id and the data object's name are both derived from the
//! snapshot's UID, and the id is written to the snapshot ([`SNAPSHOT_ID_ANNOTATION`]) before the
//! driver is called. A reconcile after a crash therefore looks the snapshot up by that id and
//! finds what the earlier attempt did; at worst it repeats the same idempotent driver call.
//! The same annotation is how stork tells its own snapshots from pre-provisioned ones, whose
//! driver snapshots it never deletes.
//!
//! [`decide`] is pure: given the object and what was looked up ([`Facts`]) it returns one
//! [`Step`]. The reconciler gathers facts, decides, acts, and repeats until a step waits.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{api::core::v1::ObjectReference, apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::{
        Controller,
        controller::{self, Action},
        finalizer::{self, Event},
        watcher,
    },
};
use serde_json::{Value, json};
use tracing::{Span, instrument};

use super::{
    Context, Error,
    crd::{
        CONDITION_ERROR, CONDITION_PENDING, CONDITION_READY, DriverSnapshotSource, SnapshotCondition, SnapshotStatus,
        VolumeSnapshot, VolumeSnapshotData, VolumeSnapshotDataSpec,
    },
};
use crate::{
    cluster::ClusterView,
    driver::{Driver, DriverSnapshot, SnapshotDriver, SnapshotError, SnapshotState},
    events::PodEvent,
};

/// Finalizer on a `VolumeSnapshot`: its driver snapshot and data object are deleted first.
pub const FINALIZER: &str = "stork.libopenstorage.org/snapshot-cleanup";
/// Snapshot annotation: the driver snapshot id stork is taking for it, recorded before the driver
/// is called. Only a value equal to [`snapshot_id`] of the object's own UID counts, so a copied
/// manifest never makes stork delete someone else's snapshot.
pub const SNAPSHOT_ID_ANNOTATION: &str = "stork.libopenstorage.org/snapshot-id";
/// Snapshot label (as Stork): the PV that was snapshotted.
pub const PV_NAME_LABEL: &str = "SnapshotMetadata-PVName";
/// Snapshot label (as Stork): when the snapshot was requested, Unix nanoseconds.
pub const TIMESTAMP_LABEL: &str = "SnapshotMetadata-Timestamp";
/// Prefix of data object names and driver snapshot ids (as Stork).
pub const DATA_PREFIX: &str = "k8s-volume-snapshot-";
/// Ready message, Stork's text.
pub const READY_MESSAGE: &str = "Snapshot created successfully and it is ready";
/// Longest wait between re-checks of an unsettled snapshot.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Steps one reconcile may take before handing back to the queue (a full run needs five).
const MAX_STEPS: usize = 8;

/// The driver snapshot id, which is also the `VolumeSnapshotData` name, of a snapshot UID.
pub fn snapshot_id(uid: &str) -> String {
    format!("{DATA_PREFIX}{uid}")
}

/// The id stork recorded for this snapshot, if stork took (or is taking) it.
pub fn stork_id(s: &VolumeSnapshot) -> Option<String> {
    let id = snapshot_id(s.metadata.uid.as_deref().filter(|u| !u.is_empty())?);
    (s.annotations().get(SNAPSHOT_ID_ANNOTATION) == Some(&id)).then_some(id)
}

/// What a claim resolves to for snapshotting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The claim's PV and driver volume.
    Volume {
        /// PV name.
        pv: String,
        /// Driver volume id.
        volume_id: String,
    },
    /// Not yet (claim not bound, cache behind, driver busy); retried. The message says why.
    Wait(String),
    /// Cannot be snapshotted as it stands; the message says what to fix.
    Invalid(String),
}

/// Resolves claim `namespace/claim` to its driver volume, from the cache and the driver's cache.
pub fn resolve(cluster: &ClusterView, driver: &dyn Driver, namespace: &str, claim: &str) -> Source {
    if claim.is_empty() {
        return Source::Invalid("spec.persistentVolumeClaimName is empty: name the claim to snapshot".into());
    }
    if !cluster.is_synced() {
        return Source::Wait("waiting for stork's cache of claims and volumes to sync".into());
    }
    let Some(pvc) = cluster.pvc(namespace, claim) else {
        return Source::Invalid(format!(
            "claim {namespace}/{claim} was not found: create it or fix spec.persistentVolumeClaimName"
        ));
    };
    let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let pv_name = pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or_default();
    if phase != "Bound" || pv_name.is_empty() {
        return Source::Wait(format!(
            "claim {namespace}/{claim} is not bound yet (phase {phase}); the snapshot is taken once it is"
        ));
    }
    let Some(pv) = cluster.pv(pv_name) else {
        return Source::Wait(format!("volume {pv_name} of claim {namespace}/{claim} is not in stork's cache yet"));
    };
    let name = driver.name();
    if !driver.owns_pvc(&pvc, cluster) || !driver.owns_pv(&pv) {
        return Source::Invalid(format!(
            "claim {namespace}/{claim} (volume {pv_name}) is not provisioned by the {name} storage driver; \
             stork snapshots only that driver's volumes"
        ));
    }
    match driver.volume(&pv) {
        Ok(Some(v)) => Source::Volume { pv: pv_name.to_string(), volume_id: v.id.clone() },
        Ok(None) => Source::Invalid(format!(
            "volume {pv_name} of claim {namespace}/{claim} is not known to the {name} storage driver"
        )),
        Err(e) => Source::Wait(format!("the storage driver cannot look up volume {pv_name}: {e}")),
    }
}

/// What the reconciler looked up for one decision. Lookups are `None` when not made (see
/// [`data_to_read`], [`driver_snapshot_to_read`]) and `Some(None)` when the object is absent.
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

/// The data object to read: the bound one, else the one stork is making.
pub fn data_to_read(s: &VolumeSnapshot) -> Option<String> {
    Some(s.spec.snapshot_data_name.clone()).filter(|n| !n.is_empty()).or_else(|| stork_id(s))
}

/// The driver snapshot to look up: stork's own, or the one a pre-provisioned data object of
/// this driver names.
pub fn driver_snapshot_to_read(s: &VolumeSnapshot, driver: &str, data: Option<&VolumeSnapshotData>) -> Option<String> {
    stork_id(s).or_else(|| {
        let src = data?.spec.driver_snapshot.as_ref()?;
        (src.driver == driver && !src.snapshot_id.is_empty()).then(|| src.snapshot_id.clone())
    })
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
    /// Record the driver snapshot id and labels ([`intent_patch`]), then a Pending status.
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
    /// Bind the snapshot to its data object ([`bind_patch`]) and write its Ready status.
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
        (false, true) => match &f.source {
            Source::Volume { pv, .. } => {
                let mut labels = BTreeMap::from([(TIMESTAMP_LABEL.to_string(), f.now.as_nanosecond().to_string())]);
                if is_label_value(pv) {
                    labels.insert(PV_NAME_LABEL.to_string(), pv.clone());
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
        return match &f.source {
            Source::Volume { volume_id, .. } => {
                let labels = [TIMESTAMP_LABEL, PV_NAME_LABEL]
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

fn status_of(s: &VolumeSnapshot) -> SnapshotStatus {
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
fn new_data(s: &VolumeSnapshot, f: &Facts, ds: &DriverSnapshot) -> VolumeSnapshotData {
    let pv = s.labels().get(PV_NAME_LABEL).cloned().or_else(|| match &f.source {
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

/// Whether a data object points back at `s`: namespace and name (or Go Stork's `ns/name` as
/// the name), and the UID when it records one.
pub fn points_at(data: &VolumeSnapshotData, s: &VolumeSnapshot) -> bool {
    let Some(r) = &data.spec.volume_snapshot_ref else { return false };
    let (ns, name) = (s.namespace().unwrap_or_default(), s.name_any());
    let r_ns = r.namespace.as_deref().unwrap_or_default();
    let r_name = r.name.as_deref().unwrap_or_default();
    let same = (r_ns == ns && r_name == name) || (r_ns.is_empty() && r_name == format!("{ns}/{name}"));
    let uid = r.uid.as_deref().unwrap_or_default();
    same && (uid.is_empty() || Some(uid) == s.metadata.uid.as_deref())
}

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

/// Whether a string is a valid label value (at most 63 alphanumerics, `-`, `_`, `.`, starting
/// and ending alphanumeric).
fn is_label_value(v: &str) -> bool {
    let edge = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    v.len() <= 63
        && edge(v.chars().next())
        && edge(v.chars().last())
        && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Merge patch recording the intent; carries the resourceVersion so a stale read conflicts
/// instead of recording twice.
pub fn intent_patch(s: &VolumeSnapshot, id: &str, labels: &BTreeMap<String, String>) -> Value {
    json!({"metadata": {
        "resourceVersion": s.metadata.resource_version,
        "annotations": {SNAPSHOT_ID_ANNOTATION: id},
        "labels": labels,
    }})
}

/// Merge patch binding the snapshot to its data object.
pub fn bind_patch(s: &VolumeSnapshot, data_name: &str) -> Value {
    json!({"metadata": {"resourceVersion": s.metadata.resource_version}, "spec": {"snapshotDataName": data_name}})
}

/// Merge patch of the status subresource.
pub fn status_patch(status: &SnapshotStatus) -> Value {
    json!({ "status": status })
}

/// Whose deletion needs cleaning up: stork's own snapshots only, by their recorded id (also the
/// data object's name). Pre-provisioned snapshots leave the driver and the data alone.
pub fn cleanup_plan(s: &VolumeSnapshot) -> Option<String> {
    stork_id(s)
}

/// The wait before re-check number `attempt` (1-based) of an unsettled snapshot.
pub fn backoff(retry: Duration, attempt: u32) -> Duration {
    retry.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(MAX_BACKOFF.max(retry))
}

/// The controller's state: the context plus consecutive unsettled reconciles per snapshot.
struct Shared {
    ctx: Arc<Context>,
    attempts: Mutex<HashMap<String, u32>>,
}

impl Shared {
    fn action(&self, key: &str, r: Requeue) -> Action {
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        match r {
            Requeue::Resync => {
                attempts.remove(key);
                Action::requeue(self.ctx.settings.resync)
            }
            Requeue::Soon => {
                let n = attempts.entry(key.to_string()).or_default();
                *n = n.saturating_add(1);
                Action::requeue(backoff(self.ctx.settings.retry, *n))
            }
        }
    }
}

/// Runs the controller until the future is dropped.
pub(super) async fn run(ctx: Arc<Context>) {
    let api = Api::<VolumeSnapshot>::all(ctx.client.clone());
    let shared = Arc::new(Shared { ctx, attempts: Mutex::default() });
    Controller::new(api, watcher::Config::default())
        .run(reconcile, error_policy, shared)
        .for_each(|res| {
            match res {
                Ok((obj, _)) => tracing::debug!(object = %obj, "snapshot reconciled"),
                // Reconcile failures were logged by the error policy.
                Err(controller::Error::ReconcilerFailed(..) | controller::Error::ObjectNotFound(_)) => {}
                Err(e) => tracing::warn!(error = %e, "snapshot controller"),
            }
            std::future::ready(())
        })
        .await;
}

fn key(s: &VolumeSnapshot) -> String {
    format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any())
}

#[instrument(skip_all, fields(ns, name))]
async fn reconcile(snap: Arc<VolumeSnapshot>, shared: Arc<Shared>) -> Result<Action, Error> {
    let ns = snap.namespace().unwrap_or_default();
    Span::current().record("ns", ns.as_str()).record("name", snap.name_any().as_str());
    let key = key(&snap);
    let ctx = shared.ctx.clone();
    let api = Api::<VolumeSnapshot>::namespaced(ctx.client.clone(), &ns);
    let res = finalizer::finalizer(&api, FINALIZER, snap, |event| async {
        match event {
            Event::Apply(s) => apply(&ctx, &api, s).await.map(|r| shared.action(&key, r)),
            Event::Cleanup(s) => cleanup(&ctx, &s).await.map(|()| {
                shared.attempts.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
                Action::await_change()
            }),
        }
    })
    .await;
    res.map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => Error::Kube(e),
        other => Error::Finalizer(other.to_string()),
    })
}

fn error_policy(snap: Arc<VolumeSnapshot>, err: &Error, shared: Arc<Shared>) -> Action {
    match err {
        // A stale read: the watch brings the fresh object.
        Error::Kube(kube::Error::Api(e)) if e.code == 409 => {
            tracing::debug!(object = %key(&snap), "conflict; retrying")
        }
        _ => tracing::warn!(object = %key(&snap), error = %err, "snapshot reconcile failed; retrying"),
    }
    shared.action(&key(&snap), Requeue::Soon)
}

fn snapshots(ctx: &Context) -> Result<&dyn SnapshotDriver, Error> {
    ctx.driver.snapshots().ok_or_else(|| Error::Invalid(format!("the {} driver takes no snapshots", ctx.driver.name())))
}

fn warn(ctx: &Context, s: &VolumeSnapshot, reason: &'static str, msg: String) {
    ctx.events.send_about(s.object_ref(&()), "Snapshotting", PodEvent::warning(reason, msg));
}

/// Gathers facts, decides and acts until a step waits.
async fn apply(ctx: &Context, api: &Api<VolumeSnapshot>, snap: Arc<VolumeSnapshot>) -> Result<Requeue, Error> {
    let driver = snapshots(ctx)?;
    let data_api = Api::<VolumeSnapshotData>::all(ctx.client.clone());
    let (pp, name) = (PatchParams::default(), snap.name_any());
    let mut snap = Arc::unwrap_or_clone(snap);
    let mut next = None;
    for _ in 0..MAX_STEPS {
        let step = match next.take() {
            Some(step) => step,
            None => decide(&snap, &gather(ctx, driver, &data_api, &snap).await?),
        };
        match step {
            Step::Wait(r) => return Ok(r),
            Step::Status { status, event, then } => {
                api.patch_status(&name, &pp, &Patch::Merge(status_patch(&status))).await?;
                if let Some(e) = event {
                    ctx.events.send_about(snap.object_ref(&()), "Snapshotting", e);
                }
                return Ok(then);
            }
            Step::RecordIntent { id, labels, status } => {
                api.patch(&name, &pp, &Patch::Merge(intent_patch(&snap, &id, &labels))).await?;
                snap = api.patch_status(&name, &pp, &Patch::Merge(status_patch(&status))).await?;
                tracing::info!(%id, "snapshot intent recorded");
            }
            Step::TakeSnapshot { id, volume_id, labels } => {
                match driver.create_snapshot(&id, &volume_id, &labels).await {
                    Ok(ds) => tracing::info!(%id, volume = %volume_id, state = ?ds.state, "driver snapshot taken"),
                    Err(e) if e.is_retryable() => {
                        warn(ctx, &snap, "SnapshotFailed", format!("failed to take snapshot {id}: {e}; retrying"));
                        return Err(e.into());
                    }
                    Err(e) => next = Some(refused(&snap, &e, Timestamp::now())),
                }
            }
            Step::CreateData(data) => match data_api.create(&PostParams::default(), &data).await {
                Ok(_) => tracing::info!(data = %data.name_any(), "snapshot data created"),
                // Made by an earlier attempt: the next look checks that it is this snapshot's.
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            },
            Step::MarkDataReady { name: data, status } => {
                data_api.patch_status(&data, &pp, &Patch::Merge(status_patch(&status))).await?;
            }
            Step::Bind { data_name, status, event } => {
                snap = api.patch(&name, &pp, &Patch::Merge(bind_patch(&snap, &data_name))).await?;
                api.patch_status(&name, &pp, &Patch::Merge(status_patch(&status))).await?;
                if let Some(e) = event {
                    ctx.events.send_about(snap.object_ref(&()), "Snapshotting", e);
                }
                tracing::info!(data = %data_name, "snapshot bound and ready");
                return Ok(Requeue::Resync);
            }
        }
    }
    Ok(Requeue::Soon)
}

/// Looks up what [`decide`] needs: the claim's volume (cache), the data object and the driver
/// snapshot.
async fn gather(
    ctx: &Context,
    driver: &dyn SnapshotDriver,
    data_api: &Api<VolumeSnapshotData>,
    snap: &VolumeSnapshot,
) -> Result<Facts, Error> {
    let ns = snap.namespace().unwrap_or_default();
    let source = resolve(&ctx.cluster, ctx.driver.as_ref(), &ns, &snap.spec.persistent_volume_claim_name);
    let data = match data_to_read(snap) {
        Some(name) => Some(data_api.get_opt(&name).await?),
        None => None,
    };
    let id = driver_snapshot_to_read(snap, ctx.driver.name(), data.as_ref().and_then(Option::as_ref));
    let driver_snapshot = match id {
        Some(id) => Some(driver.snapshot(&id).await?),
        None => None,
    };
    Ok(Facts { now: Timestamp::now(), driver: ctx.driver.name().to_string(), source, driver_snapshot, data })
}

/// Deletes stork's driver snapshot and data object; a driver error keeps the finalizer.
async fn cleanup(ctx: &Context, snap: &VolumeSnapshot) -> Result<(), Error> {
    let Some(id) = cleanup_plan(snap) else {
        tracing::info!("snapshot not taken by stork; its driver snapshot and data are left alone");
        return Ok(());
    };
    match snapshots(ctx)?.delete_snapshot(&id).await {
        Ok(()) | Err(SnapshotError::SnapshotNotFound(_)) => tracing::info!(%id, "driver snapshot deleted"),
        Err(e) => {
            let msg = format!("failed to delete driver snapshot {id}: {e}; the VolumeSnapshot stays until it succeeds");
            warn(ctx, snap, "SnapshotDeleteFailed", msg);
            return Err(e.into());
        }
    }
    let data_api = Api::<VolumeSnapshotData>::all(ctx.client.clone());
    match data_api.get_opt(&id).await? {
        Some(d) if points_at(&d, snap) => match data_api.delete(&id, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(data = %id, "snapshot data deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        },
        Some(_) => tracing::warn!(data = %id, "snapshot data belongs to another snapshot; left alone"),
        None => {}
    }
    Ok(())
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
