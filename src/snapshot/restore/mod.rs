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
//!
//! The decisions are pure: `plan` holds their inputs and outputs ([`Facts`], [`Step`]), the
//! entry points ([`next_step`], [`cleanup_actions`]) and the rules every stage shares; `stages`
//! holds one function per stage. This file is the kube-runtime controller that executes them.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, PoisonError},
};

use futures::StreamExt;
use k8s_openapi::{
    api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod},
    jiff::Timestamp,
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

use super::{Context, Error};
use crate::model::backoff::backoff;
use crate::{
    driver::{SnapshotDriver, SnapshotError},
    events::PodEvent,
    model::crd::{VolumeSnapshot, VolumeSnapshotData, VolumeSnapshotRestore},
};

/// Finalizer on a `VolumeSnapshotRestore` (Stork's name).
pub const FINALIZER: &str = "stork.libopenstorage.org/finalizer-cleanup";

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

mod plan;
mod stages;

pub use plan::*;

#[cfg(test)]
mod tests;

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
