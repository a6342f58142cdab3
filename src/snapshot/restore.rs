//! In-place restore: a `VolumeSnapshotRestore` replaces the data of the claim a snapshot was taken
//! of with the snapshot's.
//!
//! Stork restores the data while the application still runs and writes, and only then deletes its
//! pods. stork stops the application first: it marks the claim
//! (`stork.libopenstorage.org/restore-in-progress`, so the extender keeps recreated pods
//! Pending), deletes the pods using it, waits until none is left on a node, restores, and removes
//! the mark so the pods' controllers bring the application back on the restored data.
//!
//! Stages (Stork's names): `""` → `Pending` → `InProgress` → `Staged` → `Successful`, or `Failed`
//! from any of them. [`next_step`] decides, from the restore and what was looked up, which
//! actions come next; [`run`] looks things up, carries the actions out and requeues.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{
    api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions},
    runtime::{
        Controller,
        controller::Action,
        finalizer::{self, finalizer},
        watcher,
    },
};
use serde_json::{Value, json};

use super::{
    Context, Error,
    crd::{RestoreVolumeInfo, VolumeSnapshot, VolumeSnapshotData, VolumeSnapshotRestore, VolumeSnapshotRestoreStatus},
};
use crate::{
    driver::{self, Progress, SnapshotDriver, SnapshotError},
    events::PodEvent,
    knobs::RESTORE_IN_PROGRESS,
    webhook::mutate_pod::STORK_SCHEDULER,
};

/// Finalizer on a `VolumeSnapshotRestore` (Stork's name).
pub const FINALIZER: &str = "stork.libopenstorage.org/finalizer-cleanup";
/// PVC annotation naming the restore (`namespace/name`) that set [`RESTORE_IN_PROGRESS`]: only
/// that restore removes the mark, so a mark set by hand or by another restore is never lifted.
pub const OWNER_ANNOTATION: &str = "stork.libopenstorage.org/restore-in-progress-by";

/// Restore stage: volumes recorded, pods not yet stopped.
pub const PENDING: &str = "Pending";
/// Restore stage: pods stopping, then the driver restoring.
pub const IN_PROGRESS: &str = "InProgress";
/// Restore stage: data restored, the claim still held.
pub const STAGED: &str = "Staged";
/// Restore stage: done, the application may come back.
pub const SUCCESSFUL: &str = "Successful";
/// Restore stage: given up; `status.reason` says why.
pub const FAILED: &str = "Failed";
/// Volume status: the driver restore was (or is about to be) started.
pub const RESTORING: &str = "Restoring";

/// Event action of every event this controller records.
const ACTION: &str = "Restoring";

/// A pod that uses the claim being restored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodUse {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID, the precondition of its deletion (a recreated pod of the same name is never hit).
    pub uid: String,
    /// `spec.schedulerName` (empty: the default scheduler).
    pub scheduler: String,
    /// `spec.nodeName` (empty: not scheduled).
    pub node: String,
    /// Already being deleted.
    pub deleting: bool,
    /// Succeeded or Failed: its containers are gone and the kubelet has let go of the volume.
    pub finished: bool,
}

impl PodUse {
    /// Whether the pod may still have the volume mounted.
    fn on_node(&self) -> bool {
        !self.node.is_empty() && !self.finished
    }
}

/// What the executor looked up for one decision. Each stage reads only what it needs; the rest
/// stays empty.
#[derive(Debug, Clone)]
pub struct Facts {
    /// How long pods may take to stop before they are force-deleted (`settings.pod_stop_timeout`).
    pub pod_stop_timeout: Duration,
    /// The source VolumeSnapshot (`None`: not found).
    pub snapshot: Option<VolumeSnapshot>,
    /// Its VolumeSnapshotData (`None`: not found or not bound yet).
    pub data: Option<VolumeSnapshotData>,
    /// The claim being restored, read from the API server (`None`: not found).
    pub pvc: Option<PersistentVolumeClaim>,
    /// The storage driver's id of the claim's volume (`None`: not bound or unknown to the driver).
    pub volume_id: Option<String>,
    /// Pods in the claim's namespace that use it.
    pub pods: Vec<PodUse>,
    /// The driver's progress of this restore (`None`: the driver has no record of it).
    pub progress: Option<Progress>,
}

impl Default for Facts {
    fn default() -> Self {
        Self {
            pod_stop_timeout: super::Settings::default().pod_stop_timeout,
            snapshot: None,
            data: None,
            pvc: None,
            volume_id: None,
            pods: vec![],
            progress: None,
        }
    }
}

/// A claim to (un)mark, at the version that was read, so a concurrent writer makes the patch fail
/// instead of being overwritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.resourceVersion` as read.
    pub resource_version: String,
}

/// One thing the executor does.
#[derive(Debug, Clone, PartialEq)]
pub enum Act {
    /// Mark the claim as being restored by this restore.
    Hold(ClaimRef),
    /// Remove this restore's mark from the claim.
    Release(ClaimRef),
    /// Delete pods (UID precondition); `force` uses grace period 0.
    DeletePods {
        /// The pods.
        pods: Vec<PodUse>,
        /// Grace period 0 instead of the pod's own.
        force: bool,
    },
    /// Start the driver restore, keyed by the restore's UID.
    StartRestore {
        /// Driver volume id.
        volume: String,
        /// Driver snapshot id.
        snapshot: String,
    },
    /// Make the driver forget this restore.
    Cleanup,
    /// Write the restore's status.
    SetStatus(VolumeSnapshotRestoreStatus),
    /// Record an event on the restore.
    Event(PodEvent),
}

/// When to look at the restore again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// Soon (`settings.retry`): something is in progress.
    Retry,
    /// Later (`settings.resync`): the restore is settled.
    Resync,
}

/// The decision for one reconcile: actions in order (the executor stops at the first that
/// fails), then when to look again.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Actions, in order.
    pub actions: Vec<Act>,
    /// When to look again.
    pub requeue: Requeue,
}

/// Whether, and by whom, the claim is marked as being restored.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hold {
    /// Not marked.
    Free,
    /// Carries this restore's owner annotation; `marked`: the restore-in-progress mark is set too.
    Ours { marked: bool },
    /// Marked by someone else (the owner annotation's value; empty if there is none).
    Theirs(String),
}

/// `namespace/name` of a restore: the value of [`OWNER_ANNOTATION`].
fn owner_of(restore: &VolumeSnapshotRestore) -> String {
    format!("{}/{}", restore.namespace().unwrap_or_default(), restore.name_any())
}

/// The snapshot's namespace: `spec.sourceNamespace`, else the restore's. The claim restored is the
/// one the snapshot was taken of, so it lives there too.
fn source_namespace(restore: &VolumeSnapshotRestore) -> String {
    Some(restore.spec.source_namespace.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| restore.namespace().unwrap_or_default())
}

fn hold_of(pvc: &PersistentVolumeClaim, me: &str) -> Hold {
    let marked = driver::restore_in_progress(pvc);
    match pvc.annotations().get(OWNER_ANNOTATION) {
        Some(owner) if owner == me => Hold::Ours { marked },
        owner if marked => Hold::Theirs(owner.cloned().unwrap_or_default()),
        _ => Hold::Free,
    }
}

fn claim_ref(pvc: &PersistentVolumeClaim) -> ClaimRef {
    ClaimRef {
        namespace: pvc.namespace().unwrap_or_default(),
        name: pvc.name_any(),
        resource_version: pvc.resource_version().unwrap_or_default(),
    }
}

fn busy(claim: &str, owner: &str) -> String {
    if owner.is_empty() {
        format!("pvc {claim} carries {RESTORE_IN_PROGRESS} set by someone else; waiting for it to be removed")
    } else {
        format!("pvc {claim} is being restored in place by VolumeSnapshotRestore {owner}; waiting for it to finish")
    }
}

/// The first live pod that a scheduler other than stork would place during the restore, ignoring
/// the claim's mark: Stork's rule, checked before anything is touched.
fn foreign_scheduler(pods: &[PodUse]) -> Option<String> {
    let pod = pods.iter().find(|p| !p.finished && p.scheduler != STORK_SCHEDULER)?;
    let scheduler = if pod.scheduler.is_empty() { "default-scheduler" } else { pod.scheduler.as_str() };
    Some(format!(
        "application not scheduled by stork scheduler: pod {}/{} uses scheduler {scheduler}; \
         only pods scheduled by stork can be held back during a restore",
        pod.namespace, pod.name
    ))
}

fn status_of(restore: &VolumeSnapshotRestore) -> VolumeSnapshotRestoreStatus {
    restore.status.clone().unwrap_or_default()
}

/// Stay in the stage, saying why (the status is written only when the reason changes).
fn wait(restore: &VolumeSnapshotRestore, reason: String) -> Step {
    let mut status = status_of(restore);
    let actions = if status.reason == reason {
        vec![]
    } else {
        status.reason = reason;
        vec![Act::SetStatus(status)]
    };
    Step { actions, requeue: Requeue::Retry }
}

/// Give up. Cleanup (lifting the mark, forgetting the driver restore) happens in the `Failed`
/// stage, so that it is retried until it succeeds.
fn fail(restore: &VolumeSnapshotRestore, reason: String, now: Timestamp) -> Step {
    let mut status = status_of(restore);
    let message = match status.volumes.first() {
        Some(v) => format!(
            "{reason}; pods using pvc {}/{} may start again, on the data the volume had before the restore",
            v.namespace, v.pvc
        ),
        None => reason.clone(),
    };
    status.status = FAILED.into();
    status.reason = reason;
    status.stage_started_at = Some(Time(now));
    Step {
        actions: vec![Act::SetStatus(status), Act::Event(PodEvent::warning("Failed", message))],
        requeue: Requeue::Retry,
    }
}

/// Decides what a restore does next. Pure: `facts` holds everything looked up.
pub fn next_step(restore: &VolumeSnapshotRestore, facts: &Facts, now: Timestamp) -> Step {
    let stage = status_of(restore).status;
    match stage.as_str() {
        "" => validate(restore, facts, now),
        PENDING => stop_pods(restore, facts, now),
        IN_PROGRESS => restore_data(restore, facts, now),
        STAGED => finish(restore, facts, now),
        FAILED => Step { actions: after_failure(restore, facts), requeue: Requeue::Resync },
        SUCCESSFUL => Step { actions: vec![], requeue: Requeue::Resync },
        other => fail(restore, format!("unknown status {other:?}"), now),
    }
}

/// `""`: check the request and record the volume to restore.
fn validate(r: &VolumeSnapshotRestore, f: &Facts, now: Timestamp) -> Step {
    if r.spec.group_snapshot {
        return fail(r, "group snapshots are not supported".into(), now);
    }
    if r.spec.source_name.is_empty() {
        return fail(r, "spec.sourceName is empty: name the VolumeSnapshot to restore".into(), now);
    }
    let ns = source_namespace(r);
    let snap_key = format!("{ns}/{}", r.spec.source_name);
    let Some(snap) = &f.snapshot else {
        return wait(r, format!("waiting for VolumeSnapshot {snap_key}: not found"));
    };
    let snap_status = snap.status.clone().unwrap_or_default();
    if let Some(message) = snap_status.error() {
        return fail(r, format!("VolumeSnapshot {snap_key} failed: {message}"), now);
    }
    if !snap_status.is_ready() {
        return wait(r, format!("waiting for VolumeSnapshot {snap_key} to be ready"));
    }
    let data_name = &snap.spec.snapshot_data_name;
    if data_name.is_empty() {
        return wait(r, format!("waiting for VolumeSnapshot {snap_key} to be bound to a VolumeSnapshotData"));
    }
    let Some(data) = &f.data else {
        return wait(r, format!("waiting for VolumeSnapshotData {data_name}: not found"));
    };
    let Some(source) = data.spec.driver_snapshot.as_ref().filter(|d| !d.snapshot_id.is_empty()) else {
        let reason = format!("VolumeSnapshotData {data_name} names no snapshot of stork's storage driver");
        return fail(r, reason, now);
    };
    let claim = &snap.spec.persistent_volume_claim_name;
    if claim.is_empty() {
        return fail(r, format!("VolumeSnapshot {snap_key} names no persistentVolumeClaimName"), now);
    }
    let claim_key = format!("{ns}/{claim}");
    let Some(pvc) = &f.pvc else {
        let reason = format!(
            "pvc {claim_key}, which the snapshot was taken of, does not exist; \
             restore the snapshot into a new claim instead (StorageClass stork-snapshot-sc)"
        );
        return fail(r, reason, now);
    };
    if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        return wait(r, format!("waiting for pvc {claim_key} to be bound"));
    }
    let Some(volume) = &f.volume_id else {
        return wait(r, format!("waiting for the storage driver to know the volume of pvc {claim_key}"));
    };
    if !source.volume_id.is_empty() && source.volume_id != *volume {
        let reason = format!(
            "VolumeSnapshot {snap_key} was taken of volume {}, but pvc {claim_key} now uses volume {volume}; \
             restore the snapshot into a new claim instead",
            source.volume_id
        );
        return fail(r, reason, now);
    }
    if let Hold::Theirs(owner) = hold_of(pvc, &owner_of(r)) {
        return wait(r, busy(&claim_key, &owner));
    }
    if let Some(reason) = foreign_scheduler(&f.pods) {
        return fail(r, reason, now);
    }
    let status = VolumeSnapshotRestoreStatus {
        status: PENDING.into(),
        volumes: vec![RestoreVolumeInfo {
            volume: volume.clone(),
            pvc: claim.clone(),
            namespace: ns,
            snapshot: source.snapshot_id.clone(),
            status: PENDING.into(),
            reason: String::new(),
        }],
        reason: String::new(),
        stage_started_at: Some(Time(now)),
    };
    Step { actions: vec![Act::SetStatus(status)], requeue: Requeue::Retry }
}

/// The recorded volume and its claim, or the step that fails the restore for lack of them.
fn target<'a>(
    r: &'a VolumeSnapshotRestore,
    f: &'a Facts,
    now: Timestamp,
) -> Result<(&'a RestoreVolumeInfo, &'a PersistentVolumeClaim), Step> {
    // Only one volume is ever recorded (group snapshots are refused).
    let Some(vol) = r.status.as_ref().and_then(|s| s.volumes.first()) else {
        return Err(fail(r, "status.volumes is empty: the restore's status was changed by hand".into(), now));
    };
    match &f.pvc {
        Some(pvc) => Ok((vol, pvc)),
        None => Err(fail(r, format!("pvc {}/{} was deleted during the restore", vol.namespace, vol.pvc), now)),
    }
}

/// `Pending`: mark the claim, then stop the pods using it.
fn stop_pods(r: &VolumeSnapshotRestore, f: &Facts, now: Timestamp) -> Step {
    let (vol, pvc) = match target(r, f, now) {
        Ok(t) => t,
        Err(step) => return step,
    };
    let claim_key = format!("{}/{}", vol.namespace, vol.pvc);
    let hold = hold_of(pvc, &owner_of(r));
    if let Hold::Theirs(owner) = &hold {
        return wait(r, busy(&claim_key, owner));
    }
    // A pod may have appeared since validation; nothing is touched yet.
    if let Some(reason) = foreign_scheduler(&f.pods) {
        return fail(r, reason, now);
    }
    let mut actions = vec![];
    if hold != (Hold::Ours { marked: true }) {
        actions.push(Act::Hold(claim_ref(pvc)));
    }
    let running: Vec<PodUse> = f.pods.iter().filter(|p| p.on_node() && !p.deleting).cloned().collect();
    if !running.is_empty() {
        actions.push(Act::DeletePods { pods: running, force: false });
    }
    let mut status = status_of(r);
    status.status = IN_PROGRESS.into();
    status.reason = format!("waiting for pods using {} to stop", vol.pvc);
    status.stage_started_at = Some(Time(now));
    actions.push(Act::SetStatus(status));
    Step { actions, requeue: Requeue::Retry }
}

/// `InProgress`: wait for the pods to stop (force after the timeout), then restore.
fn restore_data(r: &VolumeSnapshotRestore, f: &Facts, now: Timestamp) -> Step {
    let (vol, pvc) = match target(r, f, now) {
        Ok(t) => t,
        Err(step) => return step,
    };
    let claim_key = format!("{}/{}", vol.namespace, vol.pvc);
    let mut actions = vec![];
    match hold_of(pvc, &owner_of(r)) {
        Hold::Theirs(owner) => {
            let holder = if owner.is_empty() { "someone else".to_string() } else { owner };
            return fail(r, format!("pvc {claim_key} was marked for restore by {holder} meanwhile"), now);
        }
        // Someone lifted the mark while the pods are held back: put it back before they return.
        Hold::Free | Hold::Ours { marked: false } => actions.push(Act::Hold(claim_ref(pvc))),
        Hold::Ours { marked: true } => {}
    }
    let on_node: Vec<PodUse> = f.pods.iter().filter(|p| p.on_node()).cloned().collect();
    let mut status = status_of(r);
    match vol.status.as_str() {
        PENDING if on_node.is_empty() => {
            // Recorded before the driver is called, so a restart polls instead of starting anew.
            status.volumes[0].status = RESTORING.into();
            status.reason = format!("restoring pvc {} from snapshot {}", vol.pvc, vol.snapshot);
            status.stage_started_at = Some(Time(now));
            actions.push(Act::SetStatus(status));
            actions.push(Act::StartRestore { volume: vol.volume.clone(), snapshot: vol.snapshot.clone() });
        }
        PENDING => {
            let Some(started) = status.stage_started_at.as_ref().map(|t| t.0) else {
                status.stage_started_at = Some(Time(now));
                actions.push(Act::SetStatus(status));
                return Step { actions, requeue: Requeue::Retry };
            };
            let timeout = SignedDuration::try_from(f.pod_stop_timeout).unwrap_or(SignedDuration::MAX);
            let (reason, pods, force) = if now.duration_since(started) >= timeout {
                let reason =
                    format!("pods using {} did not stop within {}s; force-deleting them", vol.pvc, timeout.as_secs());
                (reason, on_node, true)
            } else {
                // Also catches a pod scheduled before the extender saw the mark.
                let pods = on_node.into_iter().filter(|p| !p.deleting).collect();
                (format!("waiting for pods using {} to stop", vol.pvc), pods, false)
            };
            if !pods.is_empty() {
                actions.push(Act::DeletePods { pods, force });
            }
            if status.reason != reason {
                status.reason = reason;
                actions.push(Act::SetStatus(status));
            }
        }
        RESTORING => {
            // A pod reached a node despite the mark: it must not write while the data is replaced.
            if !on_node.is_empty() {
                actions.push(Act::DeletePods { pods: on_node, force: true });
            }
            match &f.progress {
                // Recorded as started, but the driver never heard of it (a restart in between).
                None => actions.push(Act::StartRestore { volume: vol.volume.clone(), snapshot: vol.snapshot.clone() }),
                Some(Progress::InProgress) => {}
                Some(Progress::Failed(message)) => {
                    return fail(r, format!("restore of pvc {claim_key} failed: {message}"), now);
                }
                Some(Progress::Done) => {
                    status.status = STAGED.into();
                    status.volumes[0].status = SUCCESSFUL.into();
                    status.reason = String::new();
                    status.stage_started_at = Some(Time(now));
                    actions.push(Act::SetStatus(status));
                    let message = format!("Volume {} restored successfully", vol.pvc);
                    actions.push(Act::Event(PodEvent::normal("Successful", message)));
                }
            }
        }
        SUCCESSFUL => {
            status.status = STAGED.into();
            actions.push(Act::SetStatus(status));
        }
        other => return fail(r, format!("unknown volume status {other:?}"), now),
    }
    Step { actions, requeue: Requeue::Retry }
}

/// `Staged`: lift the mark so the application comes back, forget the driver restore.
fn finish(r: &VolumeSnapshotRestore, f: &Facts, now: Timestamp) -> Step {
    let mut actions = release(r, f);
    actions.push(Act::Cleanup);
    let mut status = status_of(r);
    status.status = SUCCESSFUL.into();
    status.reason = String::new();
    status.stage_started_at = Some(Time(now));
    actions.push(Act::SetStatus(status));
    actions.push(Act::Event(PodEvent::normal("Successful", "Snapshot in-place restore completed")));
    Step { actions, requeue: Requeue::Resync }
}

/// `Failed`: lift this restore's mark and, once, forget the driver restore.
fn after_failure(r: &VolumeSnapshotRestore, f: &Facts) -> Vec<Act> {
    let mut actions = release(r, f);
    let mut status = status_of(r);
    if status.volumes.iter().any(|v| v.status != FAILED && v.status != SUCCESSFUL) {
        actions.push(Act::Cleanup);
        for v in &mut status.volumes {
            v.status = FAILED.into();
            v.reason = status.reason.clone();
        }
        actions.push(Act::SetStatus(status));
    }
    actions
}

/// Deletion of the restore: lift this restore's mark and forget the driver restore.
pub fn cleanup_actions(r: &VolumeSnapshotRestore, f: &Facts) -> Vec<Act> {
    let mut actions = release(r, f);
    if r.status.as_ref().is_some_and(|s| !s.volumes.is_empty()) {
        actions.push(Act::Cleanup);
    }
    actions
}

fn release(r: &VolumeSnapshotRestore, f: &Facts) -> Vec<Act> {
    match &f.pvc {
        Some(pvc) if matches!(hold_of(pvc, &owner_of(r)), Hold::Ours { .. }) => vec![Act::Release(claim_ref(pvc))],
        _ => vec![],
    }
}

/// Reduces the pods of a namespace to those using `claim`.
pub fn pods_using(pods: &[Pod], claim: &str) -> Vec<PodUse> {
    pods.iter()
        .filter(|p| {
            let volumes = p.spec.as_ref().and_then(|s| s.volumes.as_ref());
            volumes.is_some_and(|v| {
                v.iter().any(|v| v.persistent_volume_claim.as_ref().is_some_and(|c| c.claim_name == claim))
            })
        })
        .map(|p| {
            let spec = p.spec.as_ref();
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            PodUse {
                namespace: p.namespace().unwrap_or_default(),
                name: p.name_any(),
                uid: p.uid().unwrap_or_default(),
                scheduler: spec.and_then(|s| s.scheduler_name.clone()).unwrap_or_default(),
                node: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
                deleting: p.metadata.deletion_timestamp.is_some(),
                finished: matches!(phase, Some("Succeeded" | "Failed")),
            }
        })
        .collect()
}

/// The merge patch writing a whole status. Every field is spelled out, so an emptied one (a
/// cleared reason) is cleared on the server too.
pub fn status_patch(status: &VolumeSnapshotRestoreStatus) -> Value {
    json!({"status": {
        "status": status.status,
        "volumes": status.volumes,
        "reason": status.reason,
        "stageStartedAt": status.stage_started_at,
    }})
}

/// The merge patch marking a claim as restored by `owner`, or (`None`) lifting the mark. The
/// resourceVersion makes it fail if the claim changed since it was read.
pub fn hold_patch(claim: &ClaimRef, owner: Option<&str>) -> Value {
    let (mark, by) = match owner {
        Some(owner) => (json!("true"), json!(owner)),
        None => (Value::Null, Value::Null),
    };
    let mut metadata = json!({"annotations": {RESTORE_IN_PROGRESS: mark, OWNER_ANNOTATION: by}});
    if !claim.resource_version.is_empty() {
        metadata["resourceVersion"] = json!(claim.resource_version);
    }
    json!({ "metadata": metadata })
}

/// Delay before retrying after `failures` consecutive errors: `base` doubling, at most `cap`.
pub fn backoff(base: Duration, cap: Duration, failures: u32) -> Duration {
    base.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(cap.max(base))
}

/// Controller state: the shared context and consecutive failures per restore (for backoff).
struct State {
    ctx: Arc<Context>,
    failures: Mutex<HashMap<String, u32>>,
}

/// Runs the controller until the future is dropped.
pub(super) async fn run(ctx: Arc<Context>) {
    let api = Api::<VolumeSnapshotRestore>::all(ctx.client.clone());
    let state = Arc::new(State { ctx, failures: Mutex::default() });
    Controller::new(api, watcher::Config::default())
        .run(reconcile, error_policy, state)
        .for_each(|result| {
            match result {
                Ok((obj, _)) => tracing::debug!(restore = %obj, "reconciled"),
                // Reconcile errors were reported by `error_policy`; others are the controller's own.
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
                Err(error) => tracing::warn!(%error, "restore controller"),
            }
            std::future::ready(())
        })
        .await;
}

#[tracing::instrument(
    skip_all,
    fields(ns = restore.metadata.namespace.as_deref(), name = restore.metadata.name.as_deref())
)]
async fn reconcile(restore: Arc<VolumeSnapshotRestore>, state: Arc<State>) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let key = owner_of(&restore);
    let api = Api::<VolumeSnapshotRestore>::namespaced(ctx.client.clone(), &restore.namespace().unwrap_or_default());
    let action = finalizer(&api, FINALIZER, restore, |event| async {
        match event {
            finalizer::Event::Apply(r) => apply(&r, ctx).await,
            finalizer::Event::Cleanup(r) => cleanup(&r, ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })?;
    state.failures.lock().unwrap_or_else(PoisonError::into_inner).remove(&key);
    Ok(action)
}

fn error_policy(restore: Arc<VolumeSnapshotRestore>, error: &Error, state: Arc<State>) -> Action {
    let failures = {
        let mut map = state.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(owner_of(&restore)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let settings = &state.ctx.settings;
    let delay = backoff(settings.retry, settings.resync, failures);
    let restore_key = owner_of(&restore);
    tracing::warn!(restore = %restore_key, %error, failures, retry_in = ?delay, "in-place restore failed; retrying");
    state.ctx.events.send_about(restore.object_ref(&()), ACTION, PodEvent::warning("Failed", error.to_string()));
    Action::requeue(delay)
}

fn snapshots(ctx: &Context) -> Result<&dyn SnapshotDriver, Error> {
    ctx.driver
        .snapshots()
        .ok_or_else(|| Error::Invalid(format!("storage driver {} takes no snapshots", ctx.driver.name())))
}

fn uid_of(restore: &VolumeSnapshotRestore) -> Result<String, Error> {
    restore.uid().ok_or_else(|| Error::Invalid("the restore has no metadata.uid".into()))
}

async fn apply(restore: &VolumeSnapshotRestore, ctx: &Context) -> Result<Action, Error> {
    let facts = look_up(restore, ctx).await?;
    let step = next_step(restore, &facts, Timestamp::now());
    carry_out(restore, step.actions, ctx).await?;
    Ok(Action::requeue(match step.requeue {
        Requeue::Retry => ctx.settings.retry,
        Requeue::Resync => ctx.settings.resync,
    }))
}

async fn cleanup(restore: &VolumeSnapshotRestore, ctx: &Context) -> Result<Action, Error> {
    let mut facts = Facts::default();
    if let Some(vol) = restore.status.as_ref().and_then(|s| s.volumes.first()) {
        facts.pvc =
            Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &vol.namespace).get_opt(&vol.pvc).await?;
        if vol.status == RESTORING {
            let restore_key = owner_of(restore);
            tracing::warn!(restore = %restore_key, pvc = %vol.pvc, "restore deleted while the driver was restoring");
        }
    }
    carry_out(restore, cleanup_actions(restore, &facts), ctx).await?;
    Ok(Action::await_change())
}

/// Looks up what the restore's stage decides on.
async fn look_up(restore: &VolumeSnapshotRestore, ctx: &Context) -> Result<Facts, Error> {
    let client = &ctx.client;
    let mut facts = Facts { pod_stop_timeout: ctx.settings.pod_stop_timeout, ..Facts::default() };
    let status = status_of(restore);
    let (ns, claim) = match status.status.as_str() {
        "" if !restore.spec.group_snapshot && !restore.spec.source_name.is_empty() => {
            let ns = source_namespace(restore);
            facts.snapshot =
                Api::<VolumeSnapshot>::namespaced(client.clone(), &ns).get_opt(&restore.spec.source_name).await?;
            // Nothing else matters until the snapshot is Ready: spare the lookups while waiting.
            let Some(snap) = facts.snapshot.as_ref().filter(|s| s.status.as_ref().is_some_and(|s| s.is_ready())) else {
                return Ok(facts);
            };
            if !snap.spec.snapshot_data_name.is_empty() {
                facts.data =
                    Api::<VolumeSnapshotData>::all(client.clone()).get_opt(&snap.spec.snapshot_data_name).await?;
            }
            (ns, snap.spec.persistent_volume_claim_name.clone())
        }
        PENDING | IN_PROGRESS | STAGED | FAILED => match status.volumes.first() {
            Some(vol) => (vol.namespace.clone(), vol.pvc.clone()),
            None => return Ok(facts),
        },
        _ => return Ok(facts),
    };
    if claim.is_empty() {
        return Ok(facts);
    }
    facts.pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns).get_opt(&claim).await?;
    if status.status.is_empty() {
        facts.volume_id = volume_id(facts.pvc.as_ref(), ctx).await?;
    }
    if matches!(status.status.as_str(), "" | PENDING | IN_PROGRESS) {
        let pods = Api::<Pod>::namespaced(client.clone(), &ns).list(&ListParams::default()).await?;
        facts.pods = pods_using(&pods.items, &claim);
    }
    if status.status == IN_PROGRESS && status.volumes.first().is_some_and(|v| v.status == RESTORING) {
        facts.progress = match snapshots(ctx)?.in_place_restore_status(&uid_of(restore)?).await {
            Ok(progress) => Some(progress),
            // The driver has no usable record of it: start it (again); a real problem resurfaces there.
            Err(e) if !e.is_retryable() => None,
            Err(e) => return Err(e.into()),
        };
    }
    Ok(facts)
}

/// The driver volume id of a bound claim; `None` if unbound or unknown to the driver.
async fn volume_id(pvc: Option<&PersistentVolumeClaim>, ctx: &Context) -> Result<Option<String>, Error> {
    let Some(pv_name) = pvc.and_then(|c| c.spec.as_ref()?.volume_name.clone()).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    let Some(pv) = Api::<PersistentVolume>::all(ctx.client.clone()).get_opt(&pv_name).await? else {
        return Ok(None);
    };
    let volume = ctx.driver.volume(&pv).map_err(|e| SnapshotError::Failed(e.to_string()))?;
    Ok(volume.map(|v| v.id.clone()))
}

/// Carries the actions out in order, stopping at the first error.
async fn carry_out(restore: &VolumeSnapshotRestore, actions: Vec<Act>, ctx: &Context) -> Result<(), Error> {
    let me = owner_of(restore);
    let mut queue = VecDeque::from(actions);
    while let Some(act) = queue.pop_front() {
        match act {
            Act::SetStatus(status) => {
                let api = Api::<VolumeSnapshotRestore>::namespaced(
                    ctx.client.clone(),
                    &restore.namespace().unwrap_or_default(),
                );
                api.patch_status(&restore.name_any(), &PatchParams::default(), &Patch::Merge(status_patch(&status)))
                    .await?;
                tracing::info!(restore = %me, status = %status.status, reason = %status.reason, "restore status");
            }
            Act::Event(event) => ctx.events.send_about(restore.object_ref(&()), ACTION, event),
            Act::Hold(claim) | Act::Release(claim) if claim.name.is_empty() => {
                tracing::debug!(restore = %me, "claim without a name; nothing to mark");
            }
            Act::Hold(claim) => {
                mark(ctx, &claim, Some(&me)).await?;
                tracing::info!(restore = %me, ns = %claim.namespace, pvc = %claim.name, "claim held for the restore");
            }
            Act::Release(claim) => {
                mark(ctx, &claim, None).await?;
                tracing::info!(restore = %me, ns = %claim.namespace, pvc = %claim.name, "claim released");
            }
            Act::DeletePods { pods, force } => {
                for pod in &pods {
                    delete_pod(ctx, pod, force).await?;
                }
            }
            Act::StartRestore { volume, snapshot } => {
                let id = uid_of(restore)?;
                match snapshots(ctx)?.start_in_place_restore(&id, &volume, &snapshot).await {
                    Ok(()) => tracing::info!(restore = %me, %volume, %snapshot, "driver restore started"),
                    // Retrying cannot help: the restore fails, saying why.
                    Err(e) if !e.is_retryable() => {
                        let reason = format!("failed to start restoring volume {volume} from snapshot {snapshot}: {e}");
                        queue = fail(restore, reason, Timestamp::now()).actions.into();
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Act::Cleanup => snapshots(ctx)?.cleanup_in_place_restore(&uid_of(restore)?).await?,
        }
    }
    Ok(())
}

async fn mark(ctx: &Context, claim: &ClaimRef, owner: Option<&str>) -> Result<(), Error> {
    let api = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &claim.namespace);
    api.patch(&claim.name, &PatchParams::default(), &Patch::Merge(hold_patch(claim, owner))).await?;
    Ok(())
}

async fn delete_pod(ctx: &Context, pod: &PodUse, force: bool) -> Result<(), Error> {
    let params = DeleteParams {
        grace_period_seconds: force.then_some(0),
        preconditions: Some(Preconditions { uid: Some(pod.uid.clone()), resource_version: None }),
        ..DeleteParams::default()
    };
    match Api::<Pod>::namespaced(ctx.client.clone(), &pod.namespace).delete(&pod.name, &params).await {
        Ok(_) => {
            tracing::info!(ns = %pod.namespace, pod = %pod.name, node = %pod.node, force, "pod deleted for restore");
            Ok(())
        }
        // Gone already, or the name now belongs to a new pod (UID precondition): not ours to stop.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
#[path = "restore_tests.rs"]
mod tests;
