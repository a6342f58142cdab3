//! The pure half of the group snapshot controller: given a `GroupVolumeSnapshot` and what was
//! looked up ([`Facts`]), [`decide`] returns the one [`Step`] to take next, walking Stork's
//! `status.stage` / `status.status` values:
//!
//! ```text
//! ""/"" → PreChecks/InProgress → (members created) PreSnapshot/Pending
//!       → [one window: PreSnapshot/InProgress → Snapshot/InProgress → PostSnapshot/InProgress]
//!       → Final/Successful
//! any stage → <stage>/Failed (snapshots already taken are deleted)
//! ```
//!
//! The window (pre rule, group snapshot, post rule) runs inside one reconcile, so a group found
//! `InProgress` in a window stage at the start of a reconcile was interrupted (a restart or a
//! change of leader): [`Step::Abandon`] unfreezes, deletes what was taken and fails it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::{
    knobs::GROUP_SNAPSHOT_LABEL,
    model::{
        crd::{VolumeSnapshot, VolumeSnapshotSpec},
        group::*,
    },
};

use super::super::controller::Source;

/// A claim the selector picked, and what it resolves to.
#[derive(Debug, Clone)]
pub struct Claim {
    /// Claim name.
    pub name: String,
    /// Its driver volume, or why it cannot be snapshotted.
    pub source: Source,
}

/// What the reconciler looked up for one decision.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The claims the selector picks (from the cache), by name.
    pub claims: Vec<Claim>,
    /// The group's member `VolumeSnapshot`s that exist.
    pub members: Vec<VolumeSnapshot>,
    /// Whether the selector could be read; `Err` says what is wrong with it.
    pub selector: Result<(), String>,
}

/// The one thing to do next for a group.
#[derive(Debug, Clone)]
pub enum Step {
    /// Nothing to change; look again at the resync interval (settled) or soon.
    Wait {
        /// Whether the group is settled.
        settled: bool,
    },
    /// Write this status, then look again.
    Status(GroupVolumeSnapshotStatus),
    /// Create these member snapshots (a conflict means an earlier attempt made one), then write
    /// the status.
    CreateMembers(Vec<VolumeSnapshot>, GroupVolumeSnapshotStatus),
    /// Run the window over these members: `(member name, driver volume, pv)`.
    RunWindow(Vec<Member>),
    /// The window was interrupted: run the post rule, delete what was taken, fail with this message.
    Abandon(String),
}

/// One member of the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member `VolumeSnapshot`.
    pub snapshot: String,
    /// Its claim.
    pub claim: String,
    /// The claim's PV.
    pub pv: String,
    /// The driver volume.
    pub volume_id: String,
}

/// The status with this stage and status, keeping the rest.
pub fn at(g: &GroupVolumeSnapshot, stage: &str, status: &str, message: impl Into<String>) -> GroupVolumeSnapshotStatus {
    GroupVolumeSnapshotStatus {
        stage: stage.into(),
        status: status.into(),
        message: message.into(),
        ..g.status.clone().unwrap_or_default()
    }
}

/// Decides the next step for a group that is not being deleted.
pub fn decide(g: &GroupVolumeSnapshot, f: &Facts) -> Step {
    let st = g.status.clone().unwrap_or_default();
    match (st.stage.as_str(), st.status.as_str()) {
        (_, STATUS_FAILED) | (STAGE_FINAL, _) => Step::Wait { settled: true },
        (STAGE_INITIAL, _) => Step::Status(at(g, STAGE_PRE_CHECKS, STATUS_IN_PROGRESS, "checking the selected claims")),
        (STAGE_PRE_CHECKS, _) => pre_checks(g, f),
        (STAGE_PRE_SNAPSHOT, STATUS_PENDING) => match members(g, f) {
            Ok(m) => Step::RunWindow(m),
            Err(msg) => Step::Status(at(g, STAGE_PRE_SNAPSHOT, STATUS_FAILED, msg)),
        },
        (stage @ (STAGE_PRE_SNAPSHOT | STAGE_SNAPSHOT | STAGE_POST_SNAPSHOT), _) => Step::Abandon(format!(
            "interrupted in stage {stage} (stork restarted, lost leadership, or an API call in the window failed); \
             the snapshots taken in it were deleted: create the group snapshot again"
        )),
        (stage, _) => Step::Status(at(g, stage, STATUS_FAILED, format!("unknown stage {stage:?}"))),
    }
}

/// Checks that the selector picks at least one claim and that every one is bound to a volume of
/// the driver; then creates the members.
fn pre_checks(g: &GroupVolumeSnapshot, f: &Facts) -> Step {
    let fail = |msg: String| Step::Status(at(g, STAGE_PRE_CHECKS, STATUS_FAILED, msg));
    if let Err(e) = &f.selector {
        return fail(format!("spec.pvcSelector is invalid: {e}"));
    }
    if f.claims.is_empty() {
        return fail("spec.pvcSelector selects no PersistentVolumeClaim in the group's namespace".into());
    }
    let mut problems = Vec::new();
    for c in &f.claims {
        match &c.source {
            Source::Volume { .. } => {}
            Source::Wait(m) | Source::Invalid(m) => problems.push(m.clone()),
        }
    }
    if !problems.is_empty() {
        return fail(format!("not every selected claim can be snapshotted: {}", problems.join("; ")));
    }
    let wanted: Vec<VolumeSnapshot> = f.claims.iter().map(|c| member_snapshot(g, &c.name)).collect();
    let missing: Vec<VolumeSnapshot> =
        wanted.into_iter().filter(|w| !f.members.iter().any(|m| m.name_any() == w.name_any())).collect();
    let next = at(g, STAGE_PRE_SNAPSHOT, STATUS_PENDING, format!("{} claims checked", f.claims.len()));
    if missing.is_empty() { Step::Status(next) } else { Step::CreateMembers(missing, next) }
}

/// The window's members: every selected claim's member snapshot, which must exist by now.
fn members(g: &GroupVolumeSnapshot, f: &Facts) -> Result<Vec<Member>, String> {
    let mut out = Vec::new();
    for c in &f.claims {
        let name = member_name(&g.name_any(), &c.name);
        let Source::Volume { pv, volume_id } = &c.source else {
            return Err(format!("claim {} can no longer be snapshotted", c.name));
        };
        if !f.members.iter().any(|m| m.name_any() == name) {
            return Err(format!("member VolumeSnapshot {name} was deleted before the snapshot"));
        }
        out.push(Member { snapshot: name, claim: c.name.clone(), pv: pv.clone(), volume_id: volume_id.clone() });
    }
    Ok(out)
}

/// Name of the member snapshot of `claim`: `<group>-<claim>`, shortened with a hash when too long.
pub fn member_name(group: &str, claim: &str) -> String {
    let name = format!("{group}-{claim}");
    if name.len() <= 253 {
        return name;
    }
    let digest = fxhash(&name);
    format!("{}-{digest:016x}", &name[..200])
}

fn fxhash(s: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = rustc_hash::FxBuildHasher.build_hasher();
    h.write(s.as_bytes());
    h.finish()
}

/// The member snapshot of `claim`, labelled with the group and owned by it, so deleting the group
/// deletes it (and its driver snapshot, through the snapshot controller's finalizer).
pub fn member_snapshot(g: &GroupVolumeSnapshot, claim: &str) -> VolumeSnapshot {
    let group = g.name_any();
    let mut s = VolumeSnapshot::new(
        &member_name(&group, claim),
        VolumeSnapshotSpec { persistent_volume_claim_name: claim.into(), ..VolumeSnapshotSpec::default() },
    );
    s.metadata.namespace = g.namespace();
    s.metadata.labels = Some(BTreeMap::from([(GROUP_SNAPSHOT_LABEL.to_string(), label_value(&group))]));
    s.metadata.owner_references = Some(vec![OwnerReference {
        api_version: GroupVolumeSnapshot::api_version(&()).into_owned(),
        kind: GroupVolumeSnapshot::kind(&()).into_owned(),
        name: group,
        uid: g.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    s
}

/// A group name as a label value (names longer than 63 characters are cut; the owner reference
/// is what ties a member to its group).
pub fn label_value(group: &str) -> String {
    group.chars().take(63).collect::<String>().trim_end_matches(['-', '.']).to_string()
}

/// Whether `s` is a member of group `g` (owned by its UID).
pub fn is_member(s: &VolumeSnapshot, g: &GroupVolumeSnapshot) -> bool {
    let uid = g.metadata.uid.as_deref().unwrap_or_default();
    s.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid && !uid.is_empty())
}

/// The selector in the API's query form (`k=v,k in (a,b),!k`); the message says what is wrong
/// with it when it cannot be evaluated.
pub fn selector_query(sel: &LabelSelector) -> Result<String, String> {
    let mut parts: Vec<String> = sel.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default();
        parts.push(match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!("matchExpressions on {}: operator {} needs values", e.key, e.operator));
            }
            "In" => format!("{} in ({})", e.key, values.join(",")),
            "NotIn" => format!("{} notin ({})", e.key, values.join(",")),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => return Err(format!("matchExpressions on {}: unknown operator {other:?}", e.key)),
        });
    }
    Ok(parts.join(","))
}
