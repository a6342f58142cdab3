//! The group snapshot controller: a `GroupVolumeSnapshot` becomes one snapshot of every claim its
//! selector picks, all taken inside one window between its pre- and post-snapshot rules.
//!
//! Each claim gets a member `VolumeSnapshot` (owned by the group, labelled with it) before the
//! window. The snapshot controller leaves members alone until the group records their driver
//! snapshot id after the window; from then on they are ordinary stork snapshots (data object,
//! Ready condition, restore through `stork-snapshot-sc` or in place, deletion with the driver
//! snapshot). Deleting the group deletes its members through their owner references.
//!
//! [`plan::decide`] is pure; this file gathers facts and carries steps out.

pub mod plan;

#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::{api::core::v1::PersistentVolumeClaim, jiff::Timestamp};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{
        Controller,
        controller::{self, Action},
        watcher,
    },
};
use serde_json::json;
use tracing::{Span, instrument};

use super::{
    Context, Error,
    controller::{resolve, snapshot_id},
};
use crate::{
    driver::SnapshotError,
    events::PodEvent,
    knobs::{
        GROUP_SNAPSHOT_LABEL, PODS_WITH_RUNNING_CMDS, SNAPSHOT_ID_ANNOTATION, SNAPSHOT_PV_NAME_LABEL,
        SNAPSHOT_TIMESTAMP_LABEL, is_label_value,
    },
    model::{backoff::backoff, crd::VolumeSnapshot, group::*},
    rule::{Held, Phase, RuleError},
};
use plan::{Claim, Facts, Member, Step, at};

/// Longest wait between re-checks of an unsettled group.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Steps one reconcile may take before handing back to the queue.
const MAX_STEPS: usize = 8;

struct Shared {
    ctx: Arc<Context>,
    attempts: Mutex<HashMap<String, u32>>,
}

/// Runs the controller until the future is dropped.
pub(super) async fn run(ctx: Arc<Context>) {
    let api = Api::<GroupVolumeSnapshot>::all(ctx.client.clone());
    let shared = Arc::new(Shared { ctx, attempts: Mutex::default() });
    Controller::new(api, watcher::Config::default())
        .run(reconcile, error_policy, shared)
        .for_each(|res| {
            match res {
                Ok((obj, _)) => tracing::debug!(object = %obj, "group snapshot reconciled"),
                Err(controller::Error::ReconcilerFailed(..) | controller::Error::ObjectNotFound(_)) => {}
                Err(e) => tracing::warn!(error = %e, "group snapshot controller"),
            }
            std::future::ready(())
        })
        .await;
}

fn key(g: &GroupVolumeSnapshot) -> String {
    format!("{}/{}", g.namespace().unwrap_or_default(), g.name_any())
}

fn error_policy(g: Arc<GroupVolumeSnapshot>, err: &Error, shared: Arc<Shared>) -> Action {
    match err {
        Error::Kube(kube::Error::Api(e)) if e.code == 409 => tracing::debug!(object = %key(&g), "conflict; retrying"),
        _ => tracing::warn!(object = %key(&g), error = %err, "group snapshot reconcile failed; retrying"),
    }
    let mut attempts = shared.attempts.lock().unwrap_or_else(|e| e.into_inner());
    let n = attempts.entry(key(&g)).or_default();
    *n = n.saturating_add(1);
    Action::requeue(backoff(shared.ctx.settings.retry, MAX_BACKOFF, *n))
}

#[instrument(skip_all, fields(ns, name))]
async fn reconcile(g: Arc<GroupVolumeSnapshot>, shared: Arc<Shared>) -> Result<Action, Error> {
    let ns = g.namespace().unwrap_or_default();
    Span::current().record("ns", ns.as_str()).record("name", g.name_any().as_str());
    if g.metadata.deletion_timestamp.is_some() {
        // Members go with the group through their owner references.
        return Ok(Action::await_change());
    }
    let ctx = &shared.ctx;
    let api = Api::<GroupVolumeSnapshot>::namespaced(ctx.client.clone(), &ns);
    // Decide on the object as it is now, not as the cache had it: a reconcile queued while the
    // last window ran starts before the watch delivers that window's own status writes, and a
    // stale stage would run the window (or its cleanup) a second time.
    let Some(fresh) = api.get_opt(&g.name_any()).await? else { return Ok(Action::await_change()) };
    if fresh.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let settled = apply(ctx, &api, fresh).await?;
    if settled {
        shared.attempts.lock().unwrap_or_else(|e| e.into_inner()).remove(&key(&g));
        return Ok(Action::requeue(ctx.settings.resync));
    }
    Ok(Action::requeue(ctx.settings.retry))
}

/// Gathers facts, decides and acts until a step waits. Returns whether the group is settled.
async fn apply(ctx: &Context, api: &Api<GroupVolumeSnapshot>, mut g: GroupVolumeSnapshot) -> Result<bool, Error> {
    if g.annotations().contains_key(PODS_WITH_RUNNING_CMDS) {
        let released = ctx.rules().recover(api, &g).await.map_err(|e| {
            // Until it is released the application may stay frozen: say so where users look.
            let msg = format!("a background rule command left running could not be released: {e}; retrying");
            ctx.events.send_about(g.object_ref(&()), "GroupSnapshotting", PodEvent::warning("RuleReleaseFailed", msg));
            Error::Invalid(e)
        })?;
        tracing::info!(released, "released background commands recorded on the group");
        return Ok(false);
    }
    let pp = PatchParams::default();
    let name = g.name_any();
    for _ in 0..MAX_STEPS {
        let facts = gather(ctx, &g).await?;
        match plan::decide(&g, &facts) {
            Step::Wait { settled } => return Ok(settled),
            Step::Status(status) => {
                announce(ctx, &g, &status);
                g = api.patch_status(&name, &pp, &Patch::Merge(json!({ "status": status }))).await?;
            }
            Step::CreateMembers(members, status) => {
                let snaps = Api::<VolumeSnapshot>::namespaced(ctx.client.clone(), &g.namespace().unwrap_or_default());
                for m in members {
                    match snaps.create(&PostParams::default(), &m).await {
                        Ok(_) => tracing::info!(member = %m.name_any(), "member snapshot created"),
                        Err(kube::Error::Api(e)) if e.code == 409 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                g = api.patch_status(&name, &pp, &Patch::Merge(json!({ "status": status }))).await?;
            }
            Step::RunWindow(members) => {
                let status = window(ctx, api, &g, &facts.members, &members).await?;
                announce(ctx, &g, &status);
                api.patch_status(&name, &pp, &Patch::Merge(json!({ "status": status }))).await?;
                return Ok(true);
            }
            Step::Abandon(msg) => {
                let stage = g.status.as_ref().map(|s| s.stage.clone()).unwrap_or_default();
                let msg = fail(ctx, api, &g, &facts.members, true, msg).await;
                let status = at(&g, &stage, STATUS_FAILED, msg);
                announce(ctx, &g, &status);
                api.patch_status(&name, &pp, &Patch::Merge(json!({ "status": status }))).await?;
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Records an event for a status that settles the group.
fn announce(ctx: &Context, g: &GroupVolumeSnapshot, status: &GroupVolumeSnapshotStatus) {
    let event = match status.status.as_str() {
        STATUS_FAILED => {
            PodEvent::warning("GroupSnapshotFailed", format!("stage {}: {}", status.stage, status.message))
        }
        STATUS_SUCCESSFUL => PodEvent::normal("GroupSnapshotSuccessful", status.message.clone()),
        _ => return,
    };
    ctx.events.send_about(g.object_ref(&()), "GroupSnapshotting", event);
}

/// The selected claims (listed from the API: the cache holds no per-namespace index) resolved
/// through the cache, and the group's members.
async fn gather(ctx: &Context, g: &GroupVolumeSnapshot) -> Result<Facts, Error> {
    let ns = g.namespace().unwrap_or_default();
    let stage = g.status.as_ref().map(|s| s.stage.as_str()).unwrap_or_default();
    let snaps = Api::<VolumeSnapshot>::namespaced(ctx.client.clone(), &ns);
    let label = format!("{GROUP_SNAPSHOT_LABEL}={}", plan::label_value(&g.name_any()));
    let members = snaps.list(&ListParams::default().labels(&label)).await?;
    let members: Vec<VolumeSnapshot> = members.items.into_iter().filter(|m| plan::is_member(m, g)).collect();
    if !matches!(stage, STAGE_PRE_CHECKS | STAGE_PRE_SNAPSHOT) {
        return Ok(Facts { claims: Vec::new(), members, selector: Ok(()) });
    }
    let query = match plan::selector_query(&g.spec.pvc_selector) {
        Ok(q) => q,
        Err(e) => return Ok(Facts { claims: Vec::new(), members, selector: Err(e) }),
    };
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns);
    let mut names: Vec<String> = pvcs
        .list_metadata(&ListParams::default().labels(&query))
        .await?
        .items
        .into_iter()
        .map(|p| p.name_any())
        .collect();
    names.sort();
    let claims = names
        .into_iter()
        .map(|name| {
            let source = resolve(&ctx.cluster, ctx.driver.as_ref(), &ns, &name);
            Claim { name, source }
        })
        .collect();
    Ok(Facts { claims, members, selector: Ok(()) })
}

/// The window: pre rule, one group snapshot, post rule, then the members' ids. Returns the
/// status to write (Final/Successful, or Failed at the stage that failed after cleaning up).
async fn window(
    ctx: &Context,
    api: &Api<GroupVolumeSnapshot>,
    g: &GroupVolumeSnapshot,
    existing: &[VolumeSnapshot],
    members: &[Member],
) -> Result<GroupVolumeSnapshotStatus, Error> {
    let started = Instant::now();
    let driver = ctx.driver.snapshots().ok_or_else(|| Error::Invalid("the driver takes no snapshots".into()))?;
    let write = |stage: &'static str, msg: String| write_progress(api, g, stage, msg);
    let failed = |stage: &str, msg: String| at(g, stage, STATUS_FAILED, msg);

    let pre = g.spec.pre_exec_rule.trim();
    write(
        STAGE_PRE_SNAPSHOT,
        if pre.is_empty() { "no pre-snapshot rule".into() } else { format!("running pre-snapshot rule {pre}") },
    )
    .await?;
    let mut held: Option<Held> = None;
    if !pre.is_empty() {
        match run_rule(ctx, api, g, pre, Phase::Pre).await {
            Ok(h) => held = Some(h),
            Err(e) => {
                let msg = fail(ctx, api, g, existing, true, format!("pre-snapshot rule failed: {e}")).await;
                return Ok(failed(STAGE_PRE_SNAPSHOT, msg));
            }
        }
    }

    write(STAGE_SNAPSHOT, format!("taking {} snapshots", members.len())).await?;
    let uid_of = |m: &Member| existing.iter().find(|e| e.name_any() == m.snapshot).and_then(|e| e.metadata.uid.clone());
    let mut pairs = Vec::with_capacity(members.len());
    for m in members {
        let Some(uid) = uid_of(m) else {
            release(&mut held, api, g).await;
            let msg = fail(ctx, api, g, existing, true, format!("member {} has no UID", m.snapshot)).await;
            return Ok(failed(STAGE_SNAPSHOT, msg));
        };
        pairs.push((snapshot_id(&uid), m.volume_id.clone()));
    }
    let now = Timestamp::now();
    let labels = BTreeMap::from([(SNAPSHOT_TIMESTAMP_LABEL.to_string(), now.as_nanosecond().to_string())]);
    let taken = driver.create_group_snapshot(&pairs, &labels).await;
    release(&mut held, api, g).await;
    let window_ms = started.elapsed().as_millis();
    if let Err(e) = taken {
        let msg =
            fail(ctx, api, g, existing, true, format!("the storage driver failed to take the group snapshot: {e}"))
                .await;
        return Ok(failed(STAGE_SNAPSHOT, msg));
    }

    let post = g.spec.post_exec_rule.trim();
    write(
        STAGE_POST_SNAPSHOT,
        if post.is_empty() { "no post-snapshot rule".into() } else { format!("running post-snapshot rule {post}") },
    )
    .await?;
    if !post.is_empty()
        && let Err(e) = run_rule(ctx, api, g, post, Phase::Post).await
    {
        let msg = fail(ctx, api, g, existing, false, format!("post-snapshot rule failed: {e}")).await;
        return Ok(failed(STAGE_POST_SNAPSHOT, msg));
    }

    // From here the members are ordinary stork snapshots: the snapshot controller binds them.
    let snaps = Api::<VolumeSnapshot>::namespaced(ctx.client.clone(), &g.namespace().unwrap_or_default());
    let mut statuses = Vec::with_capacity(members.len());
    for (m, (id, volume)) in members.iter().zip(&pairs) {
        if !existing.iter().any(|e| e.name_any() == m.snapshot) {
            continue;
        }
        let mut labels = labels.clone();
        if is_label_value(&m.pv) {
            labels.insert(SNAPSHOT_PV_NAME_LABEL.to_string(), m.pv.clone());
        }
        // No resourceVersion: the snapshot controller writes the member's status meanwhile, and
        // only the group records its id.
        let patch = json!({"metadata": {"annotations": {SNAPSHOT_ID_ANNOTATION: id}, "labels": labels}});
        snaps.patch(&m.snapshot, &PatchParams::default(), &Patch::Merge(patch)).await?;
        statuses.push(GroupMemberStatus {
            volume_snapshot_name: m.snapshot.clone(),
            task_id: id.clone(),
            parent_volume_id: volume.clone(),
            data_source: Some(
                json!({"storkDriver": {"driver": ctx.driver.name(), "snapshotId": id, "volumeId": volume}}),
            ),
            conditions: Vec::new(),
        });
    }
    let consistency = if driver.group_consistent() { "at one instant" } else { "one after another" };
    let msg = format!(
        "{} snapshots taken {consistency} in a {window_ms} ms window, {} ms in all",
        statuses.len(),
        started.elapsed().as_millis()
    );
    tracing::info!(members = statuses.len(), window_ms, "group snapshot taken");
    Ok(GroupVolumeSnapshotStatus { volume_snapshots: statuses, ..at(g, STAGE_FINAL, STATUS_SUCCESSFUL, msg) })
}

/// Writes an `InProgress` status at `stage`.
async fn write_progress(
    api: &Api<GroupVolumeSnapshot>,
    g: &GroupVolumeSnapshot,
    stage: &str,
    msg: String,
) -> Result<(), kube::Error> {
    let status = at(g, stage, STATUS_IN_PROGRESS, msg);
    api.patch_status(&g.name_any(), &PatchParams::default(), &Patch::Merge(json!({ "status": status })))
        .await
        .map(|_| ())
}

async fn release(held: &mut Option<Held>, api: &Api<GroupVolumeSnapshot>, g: &GroupVolumeSnapshot) {
    if let Some(mut h) = held.take() {
        h.release(api, g).await;
    }
}

/// Looks a rule up and runs it for the group.
async fn run_rule(
    ctx: &Context,
    api: &Api<GroupVolumeSnapshot>,
    g: &GroupVolumeSnapshot,
    rule: &str,
    phase: Phase,
) -> Result<Held, RuleError> {
    let executor = ctx.rules();
    let found = executor.get(&g.namespace().unwrap_or_default(), rule).await?;
    let held = executor.run(api, g, &found, phase).await?;
    let msg = format!("{} rule {rule} ran", phase.label());
    ctx.events.send_about(g.object_ref(&()), "GroupSnapshotting", PodEvent::normal(phase.succeeded_reason(), msg));
    Ok(held)
}

/// Cleans up after a failure: runs the post rule when asked (to unfreeze), deletes the driver
/// snapshots taken for the members and the members themselves. Returns `msg` with what cleanup
/// could not do appended.
async fn fail(
    ctx: &Context,
    api: &Api<GroupVolumeSnapshot>,
    g: &GroupVolumeSnapshot,
    members: &[VolumeSnapshot],
    post_rule: bool,
    msg: String,
) -> String {
    let mut problems = Vec::new();
    let post = g.spec.post_exec_rule.trim();
    if post_rule
        && !post.is_empty()
        && let Err(e) = run_rule(ctx, api, g, post, Phase::Post).await
    {
        problems.push(format!("the post-snapshot rule also failed: {e}"));
    }
    let snaps = Api::<VolumeSnapshot>::namespaced(ctx.client.clone(), &g.namespace().unwrap_or_default());
    for m in members {
        if let (Some(driver), Some(uid)) = (ctx.driver.snapshots(), m.metadata.uid.as_deref()) {
            match driver.delete_snapshot(&snapshot_id(uid)).await {
                Ok(()) | Err(SnapshotError::SnapshotNotFound(_)) => {}
                Err(e) => problems.push(format!("deleting the driver snapshot of {}: {e}", m.name_any())),
            }
        }
        match snaps.delete(&m.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => problems.push(format!("deleting {}: {e}", m.name_any())),
        }
    }
    if problems.is_empty() { msg } else { format!("{msg} ({})", problems.join("; ")) }
}

/// Whether a snapshot waits for its group to take it: a member whose id the group has not
/// recorded yet. The snapshot controller leaves those alone.
pub fn waits_for_group(s: &VolumeSnapshot) -> Option<String> {
    s.labels().get(GROUP_SNAPSHOT_LABEL)?;
    s.owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == GroupVolumeSnapshot::kind(&()))
        .map(|o| o.name.clone())
}
