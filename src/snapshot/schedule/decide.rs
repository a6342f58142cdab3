//! One schedule at one instant: [`decide`] turns the schedule, its policy and what its snapshots
//! show into a [`Plan`] (the new status, the snapshot to create, the ones to delete, events, when
//! to look again). Pure: the reconciler carries the plan out.

use std::{collections::BTreeMap, time::Duration};

use jiff::Timestamp;
use kube::ResourceExt;

use super::plan::{self, ERROR, PENDING, PolicyType, READY, Timing};
use crate::{
    events::PodEvent,
    knobs::{POST_SNAPSHOT_RULE, PRE_SNAPSHOT_RULE},
    model::{
        crd::VolumeSnapshot,
        schedule::{SchedulePolicy, ScheduledSnapshot, VolumeSnapshotSchedule, VolumeSnapshotScheduleStatus},
    },
};

/// Annotation on a scheduled snapshot: the schedule that took it (Stork).
pub const SCHEDULE_NAME_ANNOTATION: &str = "stork.libopenstorage.org/snapshotScheduleName";
/// Annotation on a scheduled snapshot: the policy type that triggered it (Stork).
pub const POLICY_TYPE_ANNOTATION: &str = "stork.libopenstorage.org/snapshotSchedulePolicyType";
/// Label on a scheduled snapshot: its own name (Stork).
pub const SNAPSHOT_NAME_LABEL: &str = "stork.libopenstorage.org/snapshotName";
/// Label on a scheduled snapshot: the schedule (stork's, for listing them).
pub const SCHEDULE_LABEL: &str = "stork.libopenstorage.org/snapshot-schedule";

/// Longest wait between looks at a schedule.
const MAX_WAIT: Duration = Duration::from_secs(300);
/// Wait while a snapshot is in progress (its changes also wake the schedule).
const PROGRESS_WAIT: Duration = Duration::from_secs(5);

/// What a scheduled snapshot shows now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Still being taken.
    Pending,
    /// Ready.
    Ready,
    /// Failed, with the message.
    Error(String),
}

/// What to do for one schedule now.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The status to write (when it differs from the current one).
    pub status: VolumeSnapshotScheduleStatus,
    /// The snapshot to create (recorded in `status` first).
    pub create: Option<VolumeSnapshot>,
    /// Snapshots retention deletes (already dropped from `status`).
    pub delete: Vec<String>,
    /// Events to record on the schedule.
    pub events: Vec<PodEvent>,
    /// When to look again.
    pub requeue: Duration,
}

/// Decides for `s` at `now`. `policy` is the named policy (`None`: it does not exist);
/// `observed` has every snapshot of the schedule that exists, by name.
pub fn decide(
    s: &VolumeSnapshotSchedule,
    policy: Option<&SchedulePolicy>,
    observed: &BTreeMap<String, Observed>,
    now: Timestamp,
    timing: &Timing,
) -> Plan {
    let mut plan = Plan { status: s.status.clone().unwrap_or_default(), requeue: MAX_WAIT, ..Plan::default() };
    settle(&mut plan, observed, now);
    let Some(policy) = policy else {
        let msg = format!(
            "SchedulePolicy {} not found; no snapshot is triggered until it exists",
            s.spec.schedule_policy_name
        );
        plan.events.push(PodEvent::warning("PolicyNotFound", msg));
        plan.requeue = Duration::from_secs(60);
        return plan;
    };
    let p = &policy.spec.policy;
    if let Err(why) = plan::validate(p) {
        plan.events.push(PodEvent::warning("InvalidPolicy", format!("SchedulePolicy {}: {why}", policy.name_any())));
        plan.requeue = Duration::from_secs(60);
        return plan;
    }
    let in_progress = plan.status.items.values().flatten().any(|i| i.status == PENDING);
    let suspended = s.spec.suspend == Some(true);
    let created = s.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let last = plan::last_triggers(&plan.status);
    if !in_progress && !suspended {
        let due =
            plan::types(p).into_iter().find(|t| plan::due(p, *t, last.get(t.as_str()).copied(), created, now, timing));
        if let Some(t) = due {
            let snap = snapshot(s, p, t, now);
            plan.status.items.entry(t.as_str().to_string()).or_default().push(ScheduledSnapshot {
                name: snap.name_any(),
                creation_timestamp: Some(plan::time(now)),
                status: PENDING.into(),
                ..ScheduledSnapshot::default()
            });
            plan.create = Some(snap);
        }
    }
    for t in plan::types(p) {
        let Some(list) = plan.status.items.get_mut(t.as_str()) else { continue };
        let doomed = plan::prune(list, plan::retain(p, t));
        list.retain(|i| !doomed.contains(&i.name));
        plan.delete.extend(doomed);
    }
    plan.requeue = if plan.create.is_some() || plan.status.items.values().flatten().any(|i| i.status == PENDING) {
        PROGRESS_WAIT
    } else if suspended {
        MAX_WAIT
    } else {
        let last = plan::last_triggers(&plan.status);
        plan::types(p)
            .into_iter()
            .filter_map(|t| plan::next_instant(p, t, last.get(t.as_str()).copied(), now, timing))
            .map(|next| Duration::try_from(next.duration_since(now)).unwrap_or_default())
            .min()
            .unwrap_or(MAX_WAIT)
            .clamp(Duration::from_millis(500), MAX_WAIT)
    };
    plan
}

/// Moves Pending items to what their snapshot shows; a snapshot that no longer exists failed.
fn settle(plan: &mut Plan, observed: &BTreeMap<String, Observed>, now: Timestamp) {
    for item in plan.status.items.values_mut().flatten().filter(|i| i.status == PENDING) {
        let (status, message) = match observed.get(&item.name) {
            Some(Observed::Pending) => continue,
            Some(Observed::Ready) => (READY, String::new()),
            Some(Observed::Error(m)) => (ERROR, m.clone()),
            None => (ERROR, "the VolumeSnapshot no longer exists".to_string()),
        };
        item.status = status.into();
        item.message = message;
        item.finish_timestamp = Some(plan::time(now));
        plan.events.push(match status {
            READY => PodEvent::normal("Ready", format!("Scheduled snapshot {} completed successfully", item.name)),
            _ => PodEvent::warning("Error", format!("Scheduled snapshot {} failed: {}", item.name, item.message)),
        });
    }
}

/// The snapshot a trigger of type `t` takes: the template's spec, Stork's annotations and label,
/// the rules, the policy type's options as annotations, and the schedule's labels.
pub fn snapshot(
    s: &VolumeSnapshotSchedule,
    p: &crate::model::schedule::PolicyItem,
    t: PolicyType,
    now: Timestamp,
) -> VolumeSnapshot {
    let name = plan::snapshot_name(&s.name_any(), t, now);
    let mut snap = VolumeSnapshot::new(&name, s.spec.template.spec.clone());
    snap.metadata.namespace = s.namespace();
    let mut annotations = plan::options(p, t);
    annotations.insert(SCHEDULE_NAME_ANNOTATION.into(), s.name_any());
    annotations.insert(POLICY_TYPE_ANNOTATION.into(), t.as_str().into());
    for (key, rule) in [(PRE_SNAPSHOT_RULE, &s.spec.pre_exec_rule), (POST_SNAPSHOT_RULE, &s.spec.post_exec_rule)] {
        if !rule.trim().is_empty() {
            annotations.insert(key.into(), rule.trim().into());
        }
    }
    let mut labels = s.labels().clone();
    labels.insert(SNAPSHOT_NAME_LABEL.into(), label_value(&name));
    labels.insert(SCHEDULE_LABEL.into(), label_value(&s.name_any()));
    snap.metadata.annotations = Some(annotations);
    snap.metadata.labels = Some(labels);
    snap
}

/// A name as a label value (at most 63 characters, ending alphanumeric).
pub fn label_value(name: &str) -> String {
    name.chars().take(63).collect::<String>().trim_end_matches(['-', '.', '_']).to_string()
}

/// What a snapshot's conditions show.
pub fn observe(snap: &VolumeSnapshot) -> Observed {
    let status = snap.status.clone().unwrap_or_default();
    if status.is_ready() {
        Observed::Ready
    } else if let Some(m) = status.error() {
        Observed::Error(m.to_string())
    } else {
        Observed::Pending
    }
}
