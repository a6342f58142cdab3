//! One pure decision per restore stage, called by [`next_step`](super::next_step): validation
//! (`""`), stopping the pods (`Pending`), restoring the data (`InProgress`), and letting go of the
//! claim (`Staged`, `Failed`).

use k8s_openapi::{
    api::core::v1::PersistentVolumeClaim,
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::{SignedDuration, Timestamp},
};

use super::{
    FAILED, IN_PROGRESS, PENDING, RESTORING, STAGED, SUCCESSFUL,
    plan::{
        Act, Facts, Hold, PodUse, Requeue, Step, claim_ref, fail, hold_of, owner_of, release, source_namespace,
        status_of,
    },
};
use crate::{
    driver::Progress,
    events::PodEvent,
    knobs::RESTORE_IN_PROGRESS,
    model::STORK_SCHEDULER,
    model::crd::{RestoreVolumeInfo, VolumeSnapshotRestore, VolumeSnapshotRestoreStatus},
};

/// Why the restore waits for a claim marked by `owner` (a restore), or by hand (`owner` empty).
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

/// `""`: check the request and record the volume to restore.
pub(super) fn validate(r: &VolumeSnapshotRestore, f: &Facts, now: Timestamp) -> Step {
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
pub(super) fn stop_pods(r: &VolumeSnapshotRestore, f: &Facts, now: Timestamp) -> Step {
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
pub(super) fn restore_data(r: &VolumeSnapshotRestore, f: &Facts, now: Timestamp) -> Step {
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
pub(super) fn finish(r: &VolumeSnapshotRestore, f: &Facts, now: Timestamp) -> Step {
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
pub(super) fn after_failure(r: &VolumeSnapshotRestore, f: &Facts) -> Vec<Act> {
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
