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
//! [`decide()`] is pure: given the object and what was looked up ([`Facts`]) it returns one
//! [`Step`]. The reconciler below gathers facts, decides, acts, and repeats until a step waits.
//! The lookups and the ownership checks ([`resolve`], [`points_at`]) are in `lookup`.

mod decide;
mod lookup;

pub use decide::*;
pub use lookup::*;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
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

use super::{Context, Error};
use crate::model::backoff::backoff;
use crate::{
    driver::{SnapshotDriver, SnapshotError},
    events::PodEvent,
    knobs::{PODS_WITH_RUNNING_CMDS, SNAPSHOT_ID_ANNOTATION},
    model::crd::{SnapshotStatus, VolumeSnapshot, VolumeSnapshotData},
    rule::{Held, Phase, RuleError, plan as rule_plan},
};

/// Finalizer on a `VolumeSnapshot`: its driver snapshot and data object are deleted first.
pub const FINALIZER: &str = "stork.libopenstorage.org/snapshot-cleanup";
/// Prefix of data object names and driver snapshot ids (as Stork).
pub const DATA_PREFIX: &str = "k8s-volume-snapshot-";
/// Ready message, Stork's text.
pub const READY_MESSAGE: &str = "Snapshot created successfully and it is ready";
/// Longest wait between re-checks of an unsettled snapshot.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Steps one reconcile may take before handing back to the queue (a full run needs five).
const MAX_STEPS: usize = 8;

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
                Action::requeue(backoff(self.ctx.settings.retry, MAX_BACKOFF, *n))
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
    if snap.annotations().contains_key(PODS_WITH_RUNNING_CMDS) {
        // No rule window is open in this process: the record was left by one that stopped.
        let released = ctx.rules().recover(api, &*snap).await.map_err(|e| {
            // Until it is released the application may stay frozen: say so where users look.
            warn(
                ctx,
                &snap,
                "RuleReleaseFailed",
                format!("a background rule command left running could not be released: {e}; retrying"),
            );
            Error::Invalid(e)
        })?;
        tracing::info!(released, "released background commands recorded on the snapshot");
        return Ok(Requeue::Soon);
    }
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
                let (pre, post) = rule_plan::snapshot_rules(snap.annotations());
                let (pre, post) = (pre.map(str::to_string), post.map(str::to_string));
                // Rules act on the application: run them only on a decision made from the object
                // as it is now. A reconcile queued while the last one ran can start before the
                // watch delivers that run's own writes (e.g. its RuleFailed condition).
                if (pre.is_some() || post.is_some()) && !is_current(api, &snap).await? {
                    return Ok(Requeue::Soon);
                }
                let mut held = match &pre {
                    Some(rule) => match run_rule(ctx, api, &snap, rule, Phase::Pre).await {
                        Ok(held) => Some(held),
                        Err(e) => {
                            next = Some(rule_failed(&snap, Phase::Pre, &e, Timestamp::now()));
                            continue;
                        }
                    },
                    None => None,
                };
                let taken = driver.create_snapshot(&id, &volume_id, &labels).await;
                if let Some(h) = held.as_mut() {
                    h.release(api, &snap).await;
                }
                // The post rule runs whether or not the snapshot was taken: it unfreezes.
                if let Some(rule) = &post
                    && let Err(e) = run_rule(ctx, api, &snap, rule, Phase::Post).await
                {
                    warn(ctx, &snap, "RuleFailed", format!("post-snapshot rule failed: {e}"));
                }
                match taken {
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

/// Whether `snap` is the object's current version on the API server.
async fn is_current(api: &Api<VolumeSnapshot>, snap: &VolumeSnapshot) -> Result<bool, Error> {
    let fresh = api.get_opt(&snap.name_any()).await?;
    Ok(fresh.is_some_and(|f| f.metadata.resource_version == snap.metadata.resource_version))
}

/// Looks a rule up and runs it for the snapshot; the event names what ran.
async fn run_rule(
    ctx: &Context,
    api: &Api<VolumeSnapshot>,
    snap: &VolumeSnapshot,
    rule: &str,
    phase: Phase,
) -> Result<Held, RuleError> {
    let ns = snap.namespace().unwrap_or_default();
    let executor = ctx.rules();
    let found = executor.get(&ns, rule).await?;
    let held = executor.run(api, snap, &found, phase).await?;
    let msg = format!("{} rule {rule} ran", phase.label());
    ctx.events.send_about(snap.object_ref(&()), "Snapshotting", PodEvent::normal(phase.succeeded_reason(), msg));
    Ok(held)
}

/// Looks up what [`decide()`] needs: the claim's volume (cache), the data object and the driver
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
mod tests;
