//! Pure decisions of in-place restore: what the executor looked up ([`Facts`]), what it is told to
//! do ([`Step`], [`Act`]), the entry points ([`next_step`], [`cleanup_actions`]), the rules the
//! stages share, and the pure helpers of the executor (pods of a claim, patches, backoff).

use std::time::Duration;

use k8s_openapi::{
    api::core::v1::{PersistentVolumeClaim, Pod},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};
use kube::ResourceExt;
use serde_json::{Value, json};

use super::{
    FAILED, IN_PROGRESS, PENDING, STAGED, SUCCESSFUL,
    stages::{after_failure, finish, restore_data, stop_pods, validate},
};
use crate::{
    driver::{self, Progress},
    events::PodEvent,
    knobs::{RESTORE_IN_PROGRESS, RESTORE_OWNER_ANNOTATION},
    model::crd::{VolumeSnapshot, VolumeSnapshotData, VolumeSnapshotRestore, VolumeSnapshotRestoreStatus},
    snapshot::Settings,
};

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
    pub(super) fn on_node(&self) -> bool {
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
            pod_stop_timeout: Settings::default().pod_stop_timeout,
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
pub(super) enum Hold {
    /// Not marked.
    Free,
    /// Carries this restore's owner annotation; `marked`: the restore-in-progress mark is set too.
    Ours { marked: bool },
    /// Marked by someone else (the owner annotation's value; empty if there is none).
    Theirs(String),
}

/// `namespace/name` of a restore: the value of [`RESTORE_OWNER_ANNOTATION`].
pub(super) fn owner_of(restore: &VolumeSnapshotRestore) -> String {
    format!("{}/{}", restore.namespace().unwrap_or_default(), restore.name_any())
}

/// The snapshot's namespace: `spec.sourceNamespace`, else the restore's. The claim restored is the
/// one the snapshot was taken of, so it lives there too.
pub(super) fn source_namespace(restore: &VolumeSnapshotRestore) -> String {
    Some(restore.spec.source_namespace.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| restore.namespace().unwrap_or_default())
}

/// Whether `pvc` is marked, and by whom; `me` is this restore's [`owner_of`].
pub(super) fn hold_of(pvc: &PersistentVolumeClaim, me: &str) -> Hold {
    let marked = driver::restore_in_progress(pvc);
    match pvc.annotations().get(RESTORE_OWNER_ANNOTATION) {
        Some(owner) if owner == me => Hold::Ours { marked },
        owner if marked => Hold::Theirs(owner.cloned().unwrap_or_default()),
        _ => Hold::Free,
    }
}

/// The claim as read, for a patch conditional on that version.
pub(super) fn claim_ref(pvc: &PersistentVolumeClaim) -> ClaimRef {
    ClaimRef {
        namespace: pvc.namespace().unwrap_or_default(),
        name: pvc.name_any(),
        resource_version: pvc.resource_version().unwrap_or_default(),
    }
}

/// The restore's status; empty before the first stage.
pub(super) fn status_of(restore: &VolumeSnapshotRestore) -> VolumeSnapshotRestoreStatus {
    restore.status.clone().unwrap_or_default()
}

/// Give up. Cleanup (lifting the mark, forgetting the driver restore) happens in the `Failed`
/// stage, so that it is retried until it succeeds.
pub(super) fn fail(restore: &VolumeSnapshotRestore, reason: String, now: Timestamp) -> Step {
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

/// Deletion of the restore: lift this restore's mark and forget the driver restore.
pub fn cleanup_actions(r: &VolumeSnapshotRestore, f: &Facts) -> Vec<Act> {
    let mut actions = release(r, f);
    if r.status.as_ref().is_some_and(|s| !s.volumes.is_empty()) {
        actions.push(Act::Cleanup);
    }
    actions
}

/// Lifts the claim's mark, if this restore set it (never someone else's).
pub(super) fn release(r: &VolumeSnapshotRestore, f: &Facts) -> Vec<Act> {
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
    let mut metadata = json!({"annotations": {RESTORE_IN_PROGRESS: mark, RESTORE_OWNER_ANNOTATION: by}});
    if !claim.resource_version.is_empty() {
        metadata["resourceVersion"] = json!(claim.resource_version);
    }
    json!({ "metadata": metadata })
}
