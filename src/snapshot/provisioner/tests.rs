//! Provisioner tests: shared fixtures, which claims are ours, and the restore plan a claim gets
//! (snapshot lookup, cross-namespace rules, snapshot and data checks), plus the retry bookkeeping.
//! The PV built for a restore, the delete decision and the driver call are in `tests_pv.rs`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

use super::*;
use crate::knobs::{
    RESTORE_NAMESPACES_ANNOTATION, RESTORE_NAMESPACES_ANNOTATION_OLD, SNAPSHOT_ANNOTATION, SOURCE_NAMESPACE_ANNOTATION,
    SOURCE_NAMESPACE_ANNOTATION_OLD,
};

#[path = "tests_pv.rs"]
mod pv;

const DRIVER: &str = "mock";

fn load<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let path = format!("{}/tests/data/snapshot/provisioner/{file}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture decodes")
}

fn claim() -> PersistentVolumeClaim {
    load("claim.json")
}

fn class() -> StorageClass {
    load("class.json")
}

fn snapshot() -> VolumeSnapshot {
    load("snapshot.json")
}

fn data() -> VolumeSnapshotData {
    load("data.json")
}

fn released_pv() -> PersistentVolume {
    load("released-pv.json")
}

fn annotate<K: Resource>(obj: &mut K, key: &str, value: Option<&str>) {
    let a = obj.meta_mut().annotations.get_or_insert_default();
    match value {
        Some(v) => a.insert(key.to_string(), v.to_string()),
        None => a.remove(key),
    };
}

fn plan(pvc: &PersistentVolumeClaim, snap: Option<&VolumeSnapshot>) -> Result<ProvisionPlan, ProvisionError> {
    let d = data();
    plan_provision(pvc, &class(), snap, Some(&d), DRIVER)
}

/// A claim restoring snapshot `prod/mysql-snapshot` into `default`.
fn cross_namespace_claim(ann: &str) -> PersistentVolumeClaim {
    let mut pvc = claim();
    annotate(&mut pvc, ann, Some("prod"));
    pvc
}

fn prod_snapshot(patterns: Option<(&str, &str)>) -> VolumeSnapshot {
    let mut snap = snapshot();
    snap.metadata.namespace = Some("prod".into());
    if let Some((k, v)) = patterns {
        annotate(&mut snap, k, Some(v));
    }
    snap
}

fn prod_data() -> VolumeSnapshotData {
    let mut d = data();
    d.spec.volume_snapshot_ref.as_mut().unwrap().namespace = Some("prod".into());
    d
}

#[test]
fn a_claim_handed_over_by_either_provisioner_annotation_is_ours() {
    let [ga, beta] = STORAGE_PROVISIONER_ANNOTATIONS;
    assert!(assigned_to_us(&claim()), "both annotations, as a current kube-controller-manager writes them");
    let mut beta_only = claim();
    annotate(&mut beta_only, ga, None);
    assert!(assigned_to_us(&beta_only), "an older kube-controller-manager writes only the beta annotation");
    let mut ga_only = claim();
    annotate(&mut ga_only, beta, None);
    assert!(assigned_to_us(&ga_only));
    let mut other = claim();
    annotate(&mut other, ga, Some("ebs.csi.aws.com"));
    annotate(&mut other, beta, Some("ebs.csi.aws.com"));
    assert!(!assigned_to_us(&other));
    let mut none = claim();
    annotate(&mut none, ga, None);
    annotate(&mut none, beta, None);
    assert!(!assigned_to_us(&none), "the PV controller has not handed it over yet");
}

#[test]
fn a_bound_or_deleted_claim_needs_nothing() {
    let mut bound = claim();
    bound.spec.as_mut().unwrap().volume_name = Some("pvc-other".into());
    assert!(!assigned_to_us(&bound));
    let mut deleting = claim();
    deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    assert!(!assigned_to_us(&deleting));
}

#[test]
fn only_a_claim_of_a_stork_snapshot_class_without_its_pv_is_provisioned() {
    let pvc = claim();
    let pv_name = "pvc-7d0e3c4b-1111-4a2b-9c3d-0123456789ab".to_string();
    assert_eq!(claim_step(&pvc, Some(&class()), false), ClaimStep::Provision { pv_name });
    let mut other = class();
    other.provisioner = "ebs.csi.aws.com".into();
    assert_eq!(claim_step(&pvc, Some(&other), false), ClaimStep::Ignore);
    assert_eq!(claim_step(&pvc, None, false), ClaimStep::Ignore, "class deleted");
    let mut no_uid = claim();
    no_uid.metadata.uid = None;
    assert_eq!(claim_step(&no_uid, Some(&class()), false), ClaimStep::Ignore);
}

#[test]
fn a_claim_whose_pv_exists_needs_nothing_more() {
    // a retry after the PV was created, or a restart before the PV controller bound it
    assert_eq!(claim_step(&claim(), Some(&class()), true), ClaimStep::Provisioned);
}

#[test]
fn a_claim_with_a_selector_is_refused_before_anything_else() {
    let mut pvc = claim();
    pvc.spec.as_mut().unwrap().selector = Some(LabelSelector::default());
    annotate(&mut pvc, SNAPSHOT_ANNOTATION, None);
    let err = plan(&pvc, None).unwrap_err();
    assert_eq!(err, ProvisionError::Selector);
    assert!(err.to_string().starts_with("claim Selector is not supported"), "{err}");
    assert!(err.is_permanent() && !err.is_waiting());
}

#[test]
fn a_claim_without_the_snapshot_annotation_says_which_annotation_to_add() {
    for value in [None, Some(""), Some("  ")] {
        let mut pvc = claim();
        annotate(&mut pvc, SNAPSHOT_ANNOTATION, value);
        let err = plan(&pvc, Some(&snapshot())).unwrap_err();
        assert_eq!(err, ProvisionError::NoSnapshotAnnotation, "{value:?}");
        assert!(err.to_string().contains(SNAPSHOT_ANNOTATION), "{err}");
        assert!(err.is_permanent());
    }
}

#[test]
fn a_missing_snapshot_is_reported_in_the_namespace_it_was_looked_for() {
    let err = plan(&claim(), None).unwrap_err();
    let source = SnapshotSource { namespace: "default".into(), name: "mysql-snapshot".into() };
    assert_eq!(err, ProvisionError::SnapshotNotFound(source));
    assert!(err.to_string().contains("default/mysql-snapshot") && !err.is_permanent(), "{err}");
    for ann in [SOURCE_NAMESPACE_ANNOTATION, SOURCE_NAMESPACE_ANNOTATION_OLD] {
        let source = snapshot_source(&cross_namespace_claim(ann)).unwrap();
        assert_eq!(source, SnapshotSource { namespace: "prod".into(), name: "mysql-snapshot".into() }, "{ann}");
    }
}

#[test]
fn a_cross_namespace_restore_needs_a_matching_anchored_pattern_on_the_snapshot() {
    let pvc = cross_namespace_claim(SOURCE_NAMESPACE_ANNOTATION);
    let d = prod_data();
    let check = |snap: &VolumeSnapshot| plan_provision(&pvc, &class(), Some(snap), Some(&d), DRIVER);
    for allowed in [(RESTORE_NAMESPACES_ANNOTATION, "dev, def.*"), (RESTORE_NAMESPACES_ANNOTATION_OLD, "default")] {
        assert!(check(&prod_snapshot(Some(allowed))).is_ok(), "{allowed:?}");
    }
    for denied in [None, Some((RESTORE_NAMESPACES_ANNOTATION, "def")), Some((RESTORE_NAMESPACES_ANNOTATION, "["))] {
        let err = check(&prod_snapshot(denied)).unwrap_err();
        let ProvisionError::CrossNamespace(msg) = &err else { panic!("{denied:?}: {err:?}") };
        assert!(msg.contains("prod/mysql-snapshot") && msg.contains(RESTORE_NAMESPACES_ANNOTATION), "{msg}");
    }
}

#[test]
fn a_failed_snapshot_asks_for_a_new_one() {
    let mut snap = snapshot();
    snap.status.as_mut().unwrap().conditions[0] = crate::model::crd::SnapshotCondition {
        type_: "Error".into(),
        status: "True".into(),
        message: "disk full".into(),
        ..Default::default()
    };
    let err = plan(&claim(), Some(&snap)).unwrap_err();
    assert!(matches!(err, ProvisionError::SnapshotFailed(..)), "{err:?}");
    assert!(err.to_string().contains("disk full") && err.to_string().contains("new snapshot"), "{err}");
}

#[test]
fn a_snapshot_still_being_taken_makes_the_claim_wait() {
    let mut snap = snapshot();
    snap.status = None;
    let err = plan(&claim(), Some(&snap)).unwrap_err();
    assert!(err.is_waiting() && !err.is_permanent(), "{err:?}");
    assert!(err.to_string().contains("default/mysql-snapshot"), "{err}");
}

#[test]
fn a_snapshot_being_deleted_is_not_restored() {
    let mut snap = snapshot();
    snap.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    assert!(matches!(plan(&claim(), Some(&snap)), Err(ProvisionError::SnapshotDeleting(..))));
}

#[test]
fn a_ready_snapshot_needs_its_data_object() {
    let mut unbound = snapshot();
    unbound.spec.snapshot_data_name = String::new();
    let err = plan(&claim(), Some(&unbound)).unwrap_err();
    assert!(matches!(err, ProvisionError::NotBound(..)), "{err:?}");
    assert!(err.to_string().contains("not bound to any VolumeSnapshotData"), "{err}");
    let err = plan_provision(&claim(), &class(), Some(&snapshot()), None, DRIVER).unwrap_err();
    assert!(err.to_string().contains("VolumeSnapshotData k8s-volume-snapshot-2f3c5e1a") && !err.is_waiting(), "{err}");
}

#[test]
fn data_of_another_driver_or_without_a_driver_snapshot_is_refused() {
    let check = |d: &VolumeSnapshotData| plan_provision(&claim(), &class(), Some(&snapshot()), Some(d), DRIVER);
    let mut other = data();
    other.spec.driver_snapshot.as_mut().unwrap().driver = "pxd".into();
    let err = check(&other).unwrap_err();
    assert!(err.to_string().contains("driver: pxd") && err.to_string().contains("storage driver mock"), "{err}");
    let mut go_made = data();
    go_made.spec.driver_snapshot = None;
    assert!(check(&go_made).unwrap_err().to_string().contains("driver: none"));
    let mut no_id = data();
    no_id.spec.driver_snapshot.as_mut().unwrap().snapshot_id = String::new();
    assert!(matches!(check(&no_id), Err(ProvisionError::WrongDriver { .. })));
}

#[test]
fn data_that_belongs_to_another_snapshot_is_refused() {
    let check = |d: &VolumeSnapshotData| plan_provision(&claim(), &class(), Some(&snapshot()), Some(d), DRIVER);
    let mut other_ns = data();
    other_ns.spec.volume_snapshot_ref.as_mut().unwrap().namespace = Some("prod".into());
    let mut other_uid = data();
    other_ns.spec.volume_snapshot_ref.as_mut().unwrap().uid = Some("a-recreated-snapshot".into());
    other_uid.spec.volume_snapshot_ref.as_mut().unwrap().uid = Some("a-recreated-snapshot".into());
    let mut unreferenced = data();
    unreferenced.spec.volume_snapshot_ref = None;
    for d in [other_ns, other_uid, unreferenced] {
        let err = check(&d).unwrap_err();
        assert!(matches!(err, ProvisionError::DataMismatch(..)), "{err:?}");
    }
}

#[test]
fn a_valid_claim_plans_a_restore_into_a_volume_named_after_the_claim_uid() {
    let mut c = class();
    c.parameters = Some(BTreeMap::from([("repl".to_string(), "2".to_string())]));
    let plan = plan_provision(&claim(), &c, Some(&snapshot()), Some(&data()), DRIVER).unwrap();
    assert_eq!(plan.pv_name, "pvc-7d0e3c4b-1111-4a2b-9c3d-0123456789ab");
    assert_eq!(plan.snapshot_id, "snap-2f3c5e1a");
    assert_eq!(plan.snapshot, SnapshotSource { namespace: "default".into(), name: "mysql-snapshot".into() });
    assert_eq!(plan.parameters["repl"], "2");
}

#[test]
fn a_snapshot_change_wakes_only_the_waiting_claims_that_name_it() {
    let waiting = claim();
    let mut bound = claim();
    bound.metadata.name = Some("bound".into());
    bound.spec.as_mut().unwrap().volume_name = Some("pvc-x".into());
    let mut other_snapshot = claim();
    other_snapshot.metadata.name = Some("other".into());
    annotate(&mut other_snapshot, SNAPSHOT_ANNOTATION, Some("nightly"));
    let mut from_prod = cross_namespace_claim(SOURCE_NAMESPACE_ANNOTATION);
    from_prod.metadata.name = Some("from-prod".into());
    let claims: Vec<_> = [waiting, bound, other_snapshot, from_prod].into_iter().map(Arc::new).collect();
    let names = |snap: &VolumeSnapshot| claims_naming(&claims, snap).into_iter().map(|r| r.name).collect::<Vec<_>>();
    assert_eq!(names(&snapshot()), ["mysql-restored"]);
    assert_eq!(names(&prod_snapshot(None)), ["from-prod"]);
}

#[test]
fn retries_start_at_the_retry_interval_and_double_up_to_five_minutes() {
    let base = Duration::from_secs(2);
    let got: Vec<u64> =
        [0, 1, 2, 3, 8, 9, 40, u32::MAX].iter().map(|&n| backoff(base, super::MAX_BACKOFF, n).as_secs()).collect();
    assert_eq!(got, [2, 2, 4, 8, 256, 300, 300, 300]);
}

#[test]
fn a_waiting_claim_is_told_once_per_state_and_a_failure_resets_what_was_told() {
    let t = Tracker::default();
    assert!(t.tell_once("u", "waiting"));
    assert!(!t.tell_once("u", "waiting"));
    assert_eq!(t.failed("u", "boom"), 1);
    assert_eq!(t.failed("u", "boom"), 2);
    assert!(t.tell_once("u", "waiting"), "the state changed in between");
    t.forget("u");
    assert_eq!(t.failed("u", "boom"), 1, "success starts the backoff afresh");
}
