//! The `stork-snapshot` restore provisioner: a claim of a class with that provisioner, annotated
//! with a `VolumeSnapshot`, gets a new driver volume restored from the snapshot and a PV
//! pre-bound to it; the kube-controller-manager PV controller then completes the binding. When
//! such a PV is released and its reclaim policy is `Delete`, the volume and the PV are deleted.
//!
//! Decisions ([`plan_provision`], [`build_pv`], [`delete_decision`]) are pure; the two
//! kube-runtime controllers below fetch, decide and act. The PV name (and driver volume id) is
//! `pvc-<claim uid>`, so every step is idempotent across retries and restarts.
//!
//! No node affinity is written on the PV, not even for `WaitForFirstConsumer` classes: a driver
//! volume is reachable from every driver node, and locality is the extender's job (it prefers
//! the nodes holding a replica). A hard affinity would pin the pod to the replica nodes and keep
//! it Pending when they fail, which is exactly what the health monitor exists to avoid; and the
//! node the scheduler picked (`volume.kubernetes.io/selected-node`) cannot be passed to
//! [`SnapshotDriver::restore_volume`](crate::driver::SnapshotDriver::restore_volume) yet.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::{
    core::v1::{PersistentVolume, PersistentVolumeClaim},
    storage::v1::StorageClass,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, PostParams, Preconditions},
    runtime::{
        Controller,
        controller::{self, Action},
        reflector::{ObjectRef, Store},
        watcher,
    },
};

use super::Context;
use crate::model::backoff::backoff;
use crate::{
    driver::{SnapshotDriver, SnapshotError},
    events::PodEvent,
    model::crd::{VolumeSnapshot, VolumeSnapshotData},
};

/// PV annotation naming the provisioner instance that made it (as Stork).
pub const IDENTITY_ANNOTATION: &str = "snapshotProvisionerIdentity";
/// stork's identity in [`IDENTITY_ANNOTATION`].
pub const PROVISIONER_IDENTITY: &str = "stork";
/// PV annotation: the provisioner that created it (the PV controller leaves such PVs to it).
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// PVC annotations by which the PV controller hands a claim to a provisioner. Newer
/// kube-controller-managers write both, older ones only the beta one.
pub const STORAGE_PROVISIONER_ANNOTATIONS: [&str; 2] =
    ["volume.kubernetes.io/storage-provisioner", "volume.beta.kubernetes.io/storage-provisioner"];

/// Longest wait between retries of a failing claim or PV.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Re-check of a claim that cannot work until the user edits it; long, but shorter than the
/// default event TTL (1 h) so the warning stays visible in `kubectl describe`.
const PERMANENT_REQUEUE: Duration = Duration::from_secs(1800);

mod plan;

pub use plan::*;

#[cfg(test)]
mod tests;

/// Per-object retry state (keyed by uid): failures in a row, and the last state an event told,
/// so a waiting claim gets one event per state rather than one per check.
#[derive(Default)]
struct Tracker {
    entries: Mutex<HashMap<String, (u32, String)>>,
}

impl Tracker {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, (u32, String)>) -> R) -> R {
        // a panic elsewhere must not stop retries: the map stays usable
        f(&mut self.entries.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Counts a failure; returns how many in a row.
    fn failed(&self, uid: &str, told: &str) -> u32 {
        self.with(|m| {
            let e = m.entry(uid.to_string()).or_default();
            e.0 = e.0.saturating_add(1);
            e.1 = told.to_string();
            e.0
        })
    }

    /// Whether `state` is new for this object (and remembers it).
    fn tell_once(&self, uid: &str, state: &str) -> bool {
        self.with(|m| {
            let e = m.entry(uid.to_string()).or_default();
            let new = e.1 != state;
            e.1 = state.to_string();
            new
        })
    }

    fn forget(&self, uid: &str) {
        self.with(|m| m.remove(uid));
    }

    /// Drops the entries of objects no longer in `live` (deleted while failing).
    fn prune<K: Resource<DynamicType = ()> + Clone + 'static>(&self, live: &Store<K>) {
        self.with(|m| {
            if m.len() > 64 {
                let uids: HashSet<String> = live.state().iter().filter_map(|o| o.meta().uid.clone()).collect();
                m.retain(|uid, _| uids.contains(uid));
            }
        });
    }
}

/// Reconcile failures; each becomes a Warning event on the object and a retry.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Invalid(#[from] ProvisionError),
    #[error("failed to create a volume from snapshot {snapshot}: {source}")]
    Restore { snapshot: String, source: SnapshotError },
    #[error("failed to delete volume {volume}: {source}")]
    Delete { volume: String, source: SnapshotError },
    #[error("the storage driver {0} takes no snapshots")]
    NoSnapshots(String),
    #[error("api request failed: {0}")]
    Kube(#[from] kube::Error),
}

/// What a controller shares across reconciles.
struct Shared<K: Resource<DynamicType = ()> + Clone + 'static> {
    ctx: Arc<Context>,
    tracker: Tracker,
    objects: Store<K>,
}

/// Runs the provisioning and the deleting controller until the future is dropped.
pub(super) async fn run(ctx: Arc<Context>) {
    tokio::join!(run_provisioning(ctx.clone()), run_deleting(ctx));
}

async fn run_provisioning(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let controller = Controller::new(Api::<PersistentVolumeClaim>::all(client.clone()), watcher::Config::default());
    let claims = controller.store();
    let mapper = {
        let claims = claims.clone();
        move |snap: VolumeSnapshot| claims_naming(&claims.state(), &snap)
    };
    let shared = Arc::new(Shared { ctx, tracker: Tracker::default(), objects: claims });
    controller
        .watches(Api::<VolumeSnapshot>::all(client), watcher::Config::default(), mapper)
        .run(reconcile_claim, on_claim_error, shared)
        .for_each(|r| log_result("provisioner", r))
        .await;
}

async fn run_deleting(ctx: Arc<Context>) {
    let controller = Controller::new(Api::<PersistentVolume>::all(ctx.client.clone()), watcher::Config::default());
    let shared = Arc::new(Shared { objects: controller.store(), ctx, tracker: Tracker::default() });
    controller.run(reconcile_volume, on_volume_error, shared).for_each(|r| log_result("deleter", r)).await;
}

async fn log_result<K: Resource, E: std::error::Error>(
    controller: &'static str,
    r: Result<(ObjectRef<K>, Action), controller::Error<E, watcher::Error>>,
) {
    match r {
        // reported by the error policy already
        Ok(_) | Err(controller::Error::ReconcilerFailed(..)) => {}
        Err(error) => tracing::warn!(controller, %error, "snapshot provisioner controller error"),
    }
}

async fn reconcile_claim(
    pvc: Arc<PersistentVolumeClaim>,
    s: Arc<Shared<PersistentVolumeClaim>>,
) -> Result<Action, Failure> {
    let uid = pvc.metadata.uid.clone().unwrap_or_default();
    // The cheap check first: this controller sees every claim in the cluster.
    if !assigned_to_us(&pvc) {
        s.tracker.forget(&uid);
        return Ok(Action::await_change());
    }
    let client = &s.ctx.client;
    let class_name = crate::cluster::storage_class_name(&pvc).unwrap_or_default();
    let class = match s.ctx.cluster.storage_class(class_name) {
        Some(c) => Some((*c).clone()),
        None if class_name.is_empty() => None,
        None => Api::<StorageClass>::all(client.clone()).get_opt(class_name).await?,
    };
    let pvs = Api::<PersistentVolume>::all(client.clone());
    let pv_exists = match pv_name(&pvc) {
        Some(n) => s.ctx.cluster.pv(&n).is_some() || pvs.get_opt(&n).await?.is_some(),
        None => false,
    };
    let (ns, name) = (pvc.namespace().unwrap_or_default(), pvc.name_any());
    let (class, pv_name) = match claim_step(&pvc, class.as_ref(), pv_exists) {
        ClaimStep::Ignore => return Ok(Action::await_change()),
        ClaimStep::Provisioned => {
            tracing::debug!(%ns, %name, "restore claim already provisioned; the PV controller binds it");
            s.tracker.forget(&uid);
            return Ok(Action::await_change());
        }
        ClaimStep::Provision { pv_name } => (class.unwrap_or_default(), pv_name),
    };
    let source = snapshot_source(&pvc)?;
    let snap = Api::<VolumeSnapshot>::namespaced(client.clone(), &source.namespace).get_opt(&source.name).await?;
    let data_name = snap.as_ref().map(|s| s.spec.snapshot_data_name.trim()).filter(|n| !n.is_empty());
    let data = match data_name {
        Some(n) => Api::<VolumeSnapshotData>::all(client.clone()).get_opt(n).await?,
        None => None,
    };
    let plan = plan_provision(&pvc, &class, snap.as_ref(), data.as_ref(), s.ctx.driver.name())?;
    let driver = s.ctx.driver.snapshots().ok_or_else(|| Failure::NoSnapshots(s.ctx.driver.name().to_string()))?;
    let pv = restore(driver, &plan, &pvc, &class).await?;
    let snapshot = plan.snapshot.to_string();
    match pvs.create(&PostParams::default(), &pv).await {
        Ok(_) => {
            tracing::info!(%ns, %name, pv = %pv_name, %snapshot, "restore claim provisioned");
            let msg = format!("Successfully provisioned volume {pv_name} from snapshot {snapshot}");
            s.ctx.events.send_about(
                pvc.object_ref(&()),
                "Provisioning",
                PodEvent::normal("ProvisioningSucceeded", msg),
            );
        }
        // an earlier attempt created it; the cache had not seen it yet
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    s.tracker.forget(&uid);
    Ok(Action::await_change())
}

/// Restores the driver volume of a plan (idempotent: same volume id, same snapshot) and builds
/// its PV.
async fn restore(
    driver: &dyn SnapshotDriver,
    plan: &ProvisionPlan,
    pvc: &PersistentVolumeClaim,
    class: &StorageClass,
) -> Result<PersistentVolume, Failure> {
    let snapshot = plan.snapshot.to_string();
    driver
        .restore_volume(&plan.snapshot_id, &plan.pv_name, &plan.parameters)
        .await
        .map_err(|source| Failure::Restore { snapshot, source })?;
    Ok(build_pv(plan, pvc, class, driver.pv_source(&plan.pv_name)))
}

fn on_claim_error(pvc: Arc<PersistentVolumeClaim>, err: &Failure, s: Arc<Shared<PersistentVolumeClaim>>) -> Action {
    let uid = pvc.metadata.uid.clone().unwrap_or_default();
    let (ns, name) = (pvc.namespace().unwrap_or_default(), pvc.name_any());
    let msg = err.to_string();
    s.tracker.prune(&s.objects);
    if let Failure::Invalid(e) = err
        && e.is_waiting()
    {
        if s.tracker.tell_once(&uid, &msg) {
            s.ctx.events.send_about(pvc.object_ref(&()), "Provisioning", PodEvent::normal("WaitingForSnapshot", msg));
        }
        // the snapshot watch wakes the claim when the snapshot changes; this is a safety net
        return Action::requeue(s.ctx.settings.resync);
    }
    let failures = s.tracker.failed(&uid, &msg);
    let delay = match err {
        Failure::Invalid(e) if e.is_permanent() => PERMANENT_REQUEUE,
        _ => backoff(s.ctx.settings.retry, MAX_BACKOFF, failures),
    };
    tracing::warn!(%ns, %name, error = %msg, failures, retry_in = ?delay, "restore claim not provisioned");
    s.ctx.events.send_about(pvc.object_ref(&()), "Provisioning", PodEvent::warning("ProvisioningFailed", msg));
    Action::requeue(delay)
}

async fn reconcile_volume(pv: Arc<PersistentVolume>, s: Arc<Shared<PersistentVolume>>) -> Result<Action, Failure> {
    let uid = pv.metadata.uid.clone().unwrap_or_default();
    let name = pv.name_any();
    let volume_id = match delete_decision(&pv) {
        DeleteDecision::Ignore(why) => {
            tracing::trace!(pv = %name, why, "PV left alone");
            s.tracker.forget(&uid);
            return Ok(Action::await_change());
        }
        DeleteDecision::MissingIdentity => {
            let msg = format!(
                "identity annotation not found on PV: add {IDENTITY_ANNOTATION}: {PROVISIONER_IDENTITY} to let stork \
                 delete its volume"
            );
            s.tracker.prune(&s.objects);
            if s.tracker.tell_once(&uid, &msg) {
                s.ctx.events.send_about(pv.object_ref(&()), "Deleting", PodEvent::warning("VolumeFailedDelete", msg));
            }
            // only an edit of the PV can change this, and an edit wakes the controller
            return Ok(Action::await_change());
        }
        DeleteDecision::Delete { volume_id } => volume_id,
    };
    let driver = s.ctx.driver.snapshots().ok_or_else(|| Failure::NoSnapshots(s.ctx.driver.name().to_string()))?;
    driver.delete_volume(&volume_id).await.map_err(|source| Failure::Delete { volume: volume_id.clone(), source })?;
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
        ..DeleteParams::default()
    };
    match Api::<PersistentVolume>::all(s.ctx.client.clone()).delete(&name, &params).await {
        Ok(_) => tracing::info!(pv = %name, volume = %volume_id, "released restore volume deleted"),
        // gone already, or the name is another PV's now (uid precondition)
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    s.tracker.forget(&uid);
    Ok(Action::await_change())
}

fn on_volume_error(pv: Arc<PersistentVolume>, err: &Failure, s: Arc<Shared<PersistentVolume>>) -> Action {
    let uid = pv.metadata.uid.clone().unwrap_or_default();
    let msg = err.to_string();
    s.tracker.prune(&s.objects);
    let failures = s.tracker.failed(&uid, &msg);
    let delay = backoff(s.ctx.settings.retry, MAX_BACKOFF, failures);
    tracing::warn!(pv = %pv.name_any(), error = %msg, failures, retry_in = ?delay, "restore volume not deleted");
    s.ctx.events.send_about(pv.object_ref(&()), "Deleting", PodEvent::warning("VolumeFailedDelete", msg));
    Action::requeue(delay)
}
