//! `/validate` of the objects that name other stork objects: a `VolumeSnapshot` or
//! `GroupVolumeSnapshot` naming Rules, a `SchedulePolicy`, and a `VolumeSnapshotSchedule` naming
//! a policy and Rules. Every lookup is in the caches.

use std::collections::BTreeMap;

use super::{
    Error, WebhookState,
    decode::RequestIn,
    review::{ReviewOut, record_span},
};
use crate::{
    model::{
        crd::{SNAPSHOT_GROUP, STORK_GROUP},
        restore_claim::Verdict,
        rule_refs::validate_rule_refs,
        schedule::{SchedulePolicy, VolumeSnapshotSchedule, validate as validate_policy},
    },
    rule::plan::snapshot_rules,
    text::Untrusted,
};

/// The kind of a created object that may name rules (`VolumeSnapshot`, `GroupVolumeSnapshot`).
pub(super) fn rule_owner_kind(req: &RequestIn<'_>) -> Option<&'static str> {
    if req.operation != "CREATE" {
        return None;
    }
    match (&*req.kind.group, &*req.kind.kind) {
        (SNAPSHOT_GROUP, "VolumeSnapshot") => Some("VolumeSnapshot"),
        (STORK_GROUP, "GroupVolumeSnapshot") => Some("GroupVolumeSnapshot"),
        _ => None,
    }
}

/// What `/validate` reads of an object that may name rules.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct RuleOwner {
    metadata: RuleOwnerMeta,
    spec: RuleOwnerSpec,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct RuleOwnerMeta {
    namespace: Option<String>,
    name: Option<String>,
    annotations: BTreeMap<String, String>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RuleOwnerSpec {
    pre_exec_rule: String,
    post_exec_rule: String,
}

/// Refuses a snapshot or group snapshot whose rules are missing or cannot run.
pub(super) fn review_rule_refs(
    state: &WebhookState,
    req: &RequestIn<'_>,
    kind: &str,
) -> Result<ReviewOut, (String, Error)> {
    let version = req.version;
    let obj: RuleOwner = req.object().map_err(|e| (req.uid.to_string(), e))?;
    let ns =
        if req.namespace.is_empty() { obj.metadata.namespace.as_deref().unwrap_or_default() } else { &req.namespace };
    let (pre, post) = match kind {
        "VolumeSnapshot" => snapshot_rules(&obj.metadata.annotations),
        _ => (Some(obj.spec.pre_exec_rule.as_str()), Some(obj.spec.post_exec_rule.as_str())),
    };
    let refs = validate_rule_refs(kind, ns, pre, post, |name| state.cluster.rule(ns, name));
    match refs.verdict {
        Verdict::Allow(w) => Ok(ReviewOut::allow(&req.uid, None, w).in_version(version)),
        Verdict::Deny(msg) => {
            record_span(req, Some("denied"));
            let what = format!("{kind} {ns}/{}", obj.metadata.name.as_deref().unwrap_or_default());
            tracing::info!(uid = %Untrusted(&req.uid), object = %Untrusted(&what), reason = %Untrusted(&msg), "denying: rule check");
            let mut out = ReviewOut::deny(&req.uid, msg).in_version(version);
            out.named_not_cached = refs.missing;
            Ok(out)
        }
    }
}

/// Refuses a `SchedulePolicy` that cannot trigger, saying which field is wrong.
pub(super) fn review_policy(req: &RequestIn<'_>) -> Result<ReviewOut, (String, Error)> {
    let policy: SchedulePolicy = req.object().map_err(|e| (req.uid.to_string(), e))?;
    let verdict = validate_policy(&policy.spec.policy)
        .map_err(|why| format!("SchedulePolicy {}: {why}", policy.metadata.name.as_deref().unwrap_or_default()));
    Ok(deny_or_allow(req, verdict, vec![]))
}

/// Refuses a `VolumeSnapshotSchedule` naming a policy that does not exist, or rules that cannot run.
pub(super) fn review_schedule(state: &WebhookState, req: &RequestIn<'_>) -> Result<ReviewOut, (String, Error)> {
    let s: VolumeSnapshotSchedule = req.object().map_err(|e| (req.uid.to_string(), e))?;
    let ns = if req.namespace.is_empty() {
        s.metadata.namespace.clone().unwrap_or_default()
    } else {
        req.namespace.to_string()
    };
    let name = s.spec.schedule_policy_name.trim();
    let mut warnings = Vec::new();
    let policy = (!name.is_empty()).then(|| state.cluster.schedule_policy(name));
    let missing_policy = matches!(policy, Some(Some(None)));
    let mut missing_rule = false;
    let verdict = match policy {
        None => Err("spec.schedulePolicyName is empty: name a SchedulePolicy".to_string()),
        Some(found) => match found {
            Some(None) => {
                Err(format!("SchedulePolicy {name} does not exist: create it first (policies are cluster-scoped)"))
            }
            None => {
                warnings.push(format!("stork could not check SchedulePolicy {name} yet (its cache is not synced)"));
                Ok(())
            }
            Some(Some(_)) => Ok(()),
        },
    };
    let verdict = verdict.and_then(|()| {
        let (pre, post) = (Some(s.spec.pre_exec_rule.as_str()), Some(s.spec.post_exec_rule.as_str()));
        let refs = validate_rule_refs("VolumeSnapshotSchedule", &ns, pre, post, |r| state.cluster.rule(&ns, r));
        missing_rule = refs.missing;
        match refs.verdict {
            Verdict::Allow(w) => {
                warnings.extend(w);
                Ok(())
            }
            Verdict::Deny(msg) => Err(msg),
        }
    });
    let denied = verdict.is_err();
    let mut out = deny_or_allow(req, verdict, warnings);
    out.named_not_cached = denied && (missing_policy || missing_rule);
    Ok(out)
}

fn deny_or_allow(req: &RequestIn<'_>, verdict: Result<(), String>, warnings: Vec<String>) -> ReviewOut {
    match verdict {
        Ok(()) => ReviewOut::allow(&req.uid, None, warnings).in_version(req.version),
        Err(msg) => {
            record_span(req, Some("denied"));
            tracing::info!(uid = %Untrusted(&req.uid), reason = %Untrusted(&msg), "denying: schedule check");
            ReviewOut::deny(&req.uid, msg).in_version(req.version)
        }
    }
}
