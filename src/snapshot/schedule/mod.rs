//! The snapshot schedule controller: a `VolumeSnapshotSchedule` takes `VolumeSnapshot`s of its
//! template on its `SchedulePolicy`'s interval, daily, weekly and monthly triggers, keeps `retain`
//! of each type, and on deletion removes its snapshots (`reclaimPolicy: Delete`, the default) or
//! leaves them (`Retain`), through a finalizer.
//!
//! Built as kube-runtime controllers are: a reconcile reads the schedule, its policy and its
//! snapshots, [`decide::decide`] returns the plan, and the requeue is the next trigger. The
//! schedule's snapshots wake it when they change. Time comes from a [`Clock`].

pub mod decide;
pub mod plan;

#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, sync::Arc};

use futures::StreamExt;
use jiff::Timestamp;
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{
        Controller,
        controller::{self, Action},
        finalizer::{self, Event},
        reflector::ObjectRef,
        watcher,
    },
};
use serde_json::json;
use tracing::{Span, instrument};

use super::{Context, Error};
use crate::model::{
    crd::VolumeSnapshot,
    schedule::{SchedulePolicy, VolumeSnapshotSchedule},
};
use decide::{Observed, SCHEDULE_LABEL, label_value, observe};
pub use plan::Timing;

/// Finalizer on a schedule: its snapshots are deleted first, unless `reclaimPolicy: Retain`.
pub const FINALIZER: &str = "stork.libopenstorage.org/schedule-cleanup";

/// Where the controller reads the time. Tests use a fake one.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

struct Shared {
    ctx: Arc<Context>,
    clock: Arc<dyn Clock>,
}

/// Runs the controller until the future is dropped.
pub(super) async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let shared = Arc::new(Shared { ctx, clock: Arc::new(SystemClock) });
    let snapshots = Api::<VolumeSnapshot>::all(client.clone());
    Controller::new(Api::<VolumeSnapshotSchedule>::all(client), watcher::Config::default())
        .watches(snapshots, watcher::Config::default().labels(SCHEDULE_LABEL), |s: VolumeSnapshot| {
            let schedule = s.annotations().get(decide::SCHEDULE_NAME_ANNOTATION)?.clone();
            Some(ObjectRef::new(&schedule).within(&s.namespace()?))
        })
        .run(reconcile, error_policy, shared)
        .for_each(|res| {
            match res {
                Ok((obj, _)) => tracing::debug!(object = %obj, "schedule reconciled"),
                Err(controller::Error::ReconcilerFailed(..) | controller::Error::ObjectNotFound(_)) => {}
                Err(e) => tracing::warn!(error = %e, "snapshot schedule controller"),
            }
            std::future::ready(())
        })
        .await;
}

fn error_policy(s: Arc<VolumeSnapshotSchedule>, err: &Error, shared: Arc<Shared>) -> Action {
    let key = format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any());
    match err {
        Error::Kube(kube::Error::Api(e)) if e.code == 409 => tracing::debug!(object = %key, "conflict; retrying"),
        _ => tracing::warn!(object = %key, error = %err, "schedule reconcile failed; retrying"),
    }
    Action::requeue(shared.ctx.settings.retry)
}

#[instrument(skip_all, fields(ns, name))]
async fn reconcile(s: Arc<VolumeSnapshotSchedule>, shared: Arc<Shared>) -> Result<Action, Error> {
    let ns = s.namespace().unwrap_or_default();
    Span::current().record("ns", ns.as_str()).record("name", s.name_any().as_str());
    let api = Api::<VolumeSnapshotSchedule>::namespaced(shared.ctx.client.clone(), &ns);
    let res = finalizer::finalizer(&api, FINALIZER, s, |event| async {
        match event {
            Event::Apply(s) => apply(&shared, &api, &s).await,
            Event::Cleanup(s) => cleanup(&shared.ctx, &s).await.map(|()| Action::await_change()),
        }
    })
    .await;
    res.map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => Error::Kube(e),
        other => Error::Finalizer(other.to_string()),
    })
}

/// The schedule's snapshots that exist, by name.
async fn snapshots(ctx: &Context, s: &VolumeSnapshotSchedule) -> Result<Vec<VolumeSnapshot>, Error> {
    let api = Api::<VolumeSnapshot>::namespaced(ctx.client.clone(), &s.namespace().unwrap_or_default());
    let label = format!("{SCHEDULE_LABEL}={}", label_value(&s.name_any()));
    let list = api.list(&ListParams::default().labels(&label)).await?;
    let name = s.name_any();
    Ok(list
        .items
        .into_iter()
        .filter(|v| v.annotations().get(decide::SCHEDULE_NAME_ANNOTATION) == Some(&name))
        .collect())
}

async fn apply(
    shared: &Shared,
    api: &Api<VolumeSnapshotSchedule>,
    s: &VolumeSnapshotSchedule,
) -> Result<Action, Error> {
    let ctx = &shared.ctx;
    // Read the schedule as it is now: a reconcile queued during the last one must not trigger
    // from a status that misses the snapshot that one recorded.
    let Some(s) = api.get_opt(&s.name_any()).await? else { return Ok(Action::await_change()) };
    let policy = Api::<SchedulePolicy>::all(ctx.client.clone()).get_opt(&s.spec.schedule_policy_name).await?;
    let observed: BTreeMap<String, Observed> =
        snapshots(ctx, &s).await?.iter().map(|v| (v.name_any(), observe(v))).collect();
    let timing = ctx.settings.schedule.clone();
    let plan = decide::decide(&s, policy.as_ref(), &observed, shared.clock.now(), &timing);
    for e in plan.events {
        ctx.events.send_about(s.object_ref(&()), "Scheduling", e);
    }
    if Some(&plan.status) != s.status.as_ref() {
        // Recorded before the snapshot is created: a crash in between leaves a Pending item whose
        // snapshot does not exist, which the next look marks failed, instead of an untracked one.
        let patch = json!({"metadata": {"resourceVersion": s.metadata.resource_version}, "status": plan.status});
        api.patch_status(&s.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
    }
    let snaps = Api::<VolumeSnapshot>::namespaced(ctx.client.clone(), &s.namespace().unwrap_or_default());
    if let Some(snap) = &plan.create {
        match snaps.create(&PostParams::default(), snap).await {
            Ok(_) => tracing::info!(snapshot = %snap.name_any(), "scheduled snapshot created"),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for name in &plan.delete {
        match snaps.delete(name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(snapshot = %name, "scheduled snapshot deleted by retention"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::requeue(plan.requeue))
}

/// Deletes the schedule's snapshots unless it retains them.
async fn cleanup(ctx: &Context, s: &VolumeSnapshotSchedule) -> Result<(), Error> {
    if s.spec.reclaim_policy.eq_ignore_ascii_case("Retain") {
        tracing::info!("schedule deleted; reclaimPolicy Retain keeps its snapshots");
        return Ok(());
    }
    let snaps = Api::<VolumeSnapshot>::namespaced(ctx.client.clone(), &s.namespace().unwrap_or_default());
    for v in snapshots(ctx, s).await? {
        match snaps.delete(&v.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!("schedule deleted with its snapshots (reclaimPolicy Delete)");
    Ok(())
}
