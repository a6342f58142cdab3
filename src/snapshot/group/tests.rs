use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::ResourceExt;

use super::plan::*;
use crate::{knobs::GROUP_SNAPSHOT_LABEL, model::group::*, snapshot::controller::Source};

fn group(stage: &str, status: &str) -> GroupVolumeSnapshot {
    let mut g = GroupVolumeSnapshot::new("db-group", GroupVolumeSnapshotSpec::default());
    g.metadata.namespace = Some("db".into());
    g.metadata.uid = Some("g-uid".into());
    g.status = Some(GroupVolumeSnapshotStatus { stage: stage.into(), status: status.into(), ..Default::default() });
    g
}

fn bound(name: &str) -> Claim {
    Claim { name: name.into(), source: Source::Volume { pv: format!("pv-{name}"), volume_id: format!("vol-{name}") } }
}

fn facts(claims: Vec<Claim>) -> Facts {
    Facts { claims, members: Vec::new(), selector: Ok(()) }
}

fn status_of(step: Step) -> GroupVolumeSnapshotStatus {
    match step {
        Step::Status(s) | Step::CreateMembers(_, s) => s,
        other => panic!("expected a status, got {other:?}"),
    }
}

#[test]
fn a_new_group_starts_its_pre_checks() {
    let s = status_of(decide(&group("", ""), &facts(vec![])));
    assert_eq!((s.stage.as_str(), s.status.as_str()), (STAGE_PRE_CHECKS, STATUS_IN_PROGRESS));
}

#[test]
fn pre_checks_create_one_owned_labelled_member_per_claim_then_wait_for_the_window() {
    let step = decide(&group(STAGE_PRE_CHECKS, STATUS_IN_PROGRESS), &facts(vec![bound("data-0"), bound("data-1")]));
    let Step::CreateMembers(members, next) = step else { panic!("{step:?}") };
    let names: Vec<_> = members.iter().map(|m| m.name_any()).collect();
    assert_eq!(names, ["db-group-data-0", "db-group-data-1"]);
    assert_eq!(members[0].spec.persistent_volume_claim_name, "data-0");
    assert_eq!(members[0].labels()[GROUP_SNAPSHOT_LABEL], "db-group");
    let owner = &members[0].owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("GroupVolumeSnapshot", "g-uid", Some(true))
    );
    assert_eq!((next.stage.as_str(), next.status.as_str()), (STAGE_PRE_SNAPSHOT, STATUS_PENDING));
    assert!(members.iter().all(|m| super::waits_for_group(m).as_deref() == Some("db-group")));
}

#[test]
fn pre_checks_fail_on_an_unbound_claim_naming_it_and_create_nothing() {
    let pending = Claim { name: "data-2".into(), source: Source::Wait("claim db/data-2 is not bound yet".into()) };
    let s = status_of(decide(&group(STAGE_PRE_CHECKS, STATUS_IN_PROGRESS), &facts(vec![bound("data-0"), pending])));
    assert_eq!((s.stage.as_str(), s.status.as_str()), (STAGE_PRE_CHECKS, STATUS_FAILED));
    assert!(s.message.contains("data-2 is not bound"), "{}", s.message);
}

#[test]
fn pre_checks_fail_when_the_selector_picks_nothing_or_cannot_be_read() {
    let s = status_of(decide(&group(STAGE_PRE_CHECKS, STATUS_IN_PROGRESS), &facts(vec![])));
    assert!(s.status == STATUS_FAILED && s.message.contains("selects no PersistentVolumeClaim"), "{s:?}");
    let bad = Facts { selector: Err("unknown operator".into()), ..facts(vec![bound("a")]) };
    let s = status_of(decide(&group(STAGE_PRE_CHECKS, STATUS_IN_PROGRESS), &bad));
    assert!(s.status == STATUS_FAILED && s.message.contains("pvcSelector is invalid"), "{s:?}");
}

#[test]
fn a_pending_pre_snapshot_stage_runs_the_window_over_every_member() {
    let g = group(STAGE_PRE_SNAPSHOT, STATUS_PENDING);
    let mut f = facts(vec![bound("data-0")]);
    f.members = vec![member_snapshot(&g, "data-0")];
    let want = Member {
        snapshot: "db-group-data-0".into(),
        claim: "data-0".into(),
        pv: "pv-data-0".into(),
        volume_id: "vol-data-0".into(),
    };
    match decide(&g, &f) {
        Step::RunWindow(members) => assert_eq!(members, vec![want]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_member_deleted_before_the_window_fails_the_group() {
    let s = status_of(decide(&group(STAGE_PRE_SNAPSHOT, STATUS_PENDING), &facts(vec![bound("data-0")])));
    assert!(s.status == STATUS_FAILED && s.message.contains("was deleted"), "{s:?}");
}

#[test]
fn a_window_stage_found_in_progress_was_interrupted_and_is_abandoned() {
    for stage in [STAGE_PRE_SNAPSHOT, STAGE_SNAPSHOT, STAGE_POST_SNAPSHOT] {
        match decide(&group(stage, STATUS_IN_PROGRESS), &facts(vec![])) {
            Step::Abandon(msg) => assert!(msg.contains(stage) && msg.contains("interrupted"), "{msg}"),
            other => panic!("{stage}: {other:?}"),
        }
    }
}

#[test]
fn failed_and_final_groups_are_settled() {
    assert!(matches!(decide(&group(STAGE_SNAPSHOT, STATUS_FAILED), &facts(vec![])), Step::Wait { settled: true }));
    assert!(matches!(decide(&group(STAGE_FINAL, STATUS_SUCCESSFUL), &facts(vec![])), Step::Wait { settled: true }));
}

#[test]
fn member_names_stay_valid_object_names() {
    let long = "c".repeat(250);
    let name = member_name("g", &long);
    assert!(name.len() <= 253, "{}", name.len());
    assert_ne!(member_name("g", &long), member_name("g", &format!("{long}x")));
    assert_eq!(label_value(&format!("{}-x", "a".repeat(62))), "a".repeat(62));
}

#[test]
fn a_selector_becomes_the_apis_query_form() {
    let req = |key: &str, op: &str, values: &[&str]| LabelSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: Some(values.iter().map(|v| v.to_string()).collect()),
    };
    let sel = LabelSelector {
        match_labels: Some(BTreeMap::from([("app".into(), "mysql".into())])),
        match_expressions: Some(vec![
            req("tier", "In", &["a", "b"]),
            req("x", "Exists", &[]),
            req("y", "DoesNotExist", &[]),
        ]),
    };
    assert_eq!(selector_query(&sel).unwrap(), "app=mysql,tier in (a,b),x,!y");
    let bad = LabelSelector { match_expressions: Some(vec![req("k", "Near", &["v"])]), ..LabelSelector::default() };
    assert!(selector_query(&bad).unwrap_err().contains("Near"));
    let empty = LabelSelector { match_expressions: Some(vec![req("k", "In", &[])]), ..LabelSelector::default() };
    assert!(selector_query(&empty).unwrap_err().contains("needs values"));
}
