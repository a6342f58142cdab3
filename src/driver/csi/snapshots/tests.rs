//! CSI snapshot driver tests: shared fixtures, the snapshot side (states, the CSI
//! `VolumeSnapshot` stork makes, when a snapshot is restorable), name rules, API error mapping and
//! the calls an offline driver answers. The restore builders are tested in `tests_restore.rs`.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::{
    api::core::v1::{
        CSIPersistentVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
        PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus, PersistentVolumeSpec, SecretReference,
        VolumeNodeAffinity,
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{ObjectMeta, Time},
    },
    jiff::Timestamp,
};
use kube::{Client, ResourceExt};

use super::{build::*, build_restore::*, *};
use crate::{
    cluster::ClusterView,
    driver::{SnapshotDriver, SnapshotError, SnapshotState},
    knobs::is_label_value,
};

#[path = "tests_restore.rs"]
mod restore;

const ID: &str = "k8s-volume-snapshot-5e0c1d2a";
const DRIVER: &str = "ebs.csi.aws.com";

fn bound_pv(name: &str, claim: Option<(&str, &str)>) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
        spec: Some(PersistentVolumeSpec {
            csi: Some(CSIPersistentVolumeSource {
                driver: DRIVER.into(),
                volume_handle: "vol-1".into(),
                ..Default::default()
            }),
            claim_ref: claim.map(|(ns, n)| ObjectReference {
                namespace: Some(ns.into()),
                name: Some(n.into()),
                uid: Some("claim-uid".into()),
                ..ObjectReference::default()
            }),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    }
}

fn status(ready: Option<bool>, error: Option<Option<&str>>) -> CsiVolumeSnapshotStatus {
    CsiVolumeSnapshotStatus {
        ready_to_use: ready,
        error: error.map(|m| CsiSnapshotError { message: m.map(Into::into) }),
        ..CsiVolumeSnapshotStatus::default()
    }
}

fn snapshot(ready: bool) -> CsiVolumeSnapshot {
    let mut vs = csi_snapshot(ID, "apps", "data", "pvc-1", None, &BTreeMap::new());
    vs.status = Some(CsiVolumeSnapshotStatus {
        ready_to_use: Some(ready),
        bound_volume_snapshot_content_name: Some("snapcontent-1".into()),
        restore_size: Some(Quantity("10Gi".into())),
        ..CsiVolumeSnapshotStatus::default()
    });
    vs
}

fn content(ns: &str, name: &str) -> CsiVolumeSnapshotContent {
    CsiVolumeSnapshotContent::new(
        "snapcontent-1",
        CsiVolumeSnapshotContentSpec {
            driver: DRIVER.into(),
            volume_snapshot_ref: ObjectReference {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..ObjectReference::default()
            },
            source_volume_mode: Some("Block".into()),
        },
    )
}

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn request() -> RestoreRequest {
    RestoreRequest {
        storage_class: "gp3".into(),
        size: Quantity("10Gi".into()),
        access_modes: vec!["ReadWriteOnce".into()],
        volume_mode: None,
    }
}

fn helper(phase: Option<&str>, volume: Option<&str>, age_secs: i64) -> PersistentVolumeClaim {
    let mut pvc = helper_pvc("pvc-1", "apps", ID, &request());
    pvc.metadata.uid = Some("helper-uid".into());
    pvc.metadata.creation_timestamp = Some(Time(now() - k8s_openapi::jiff::SignedDuration::from_secs(age_secs)));
    if let Some(spec) = pvc.spec.as_mut() {
        spec.volume_name = volume.map(Into::into);
    }
    pvc.status = phase.map(|p| PersistentVolumeClaimStatus { phase: Some(p.into()), ..Default::default() });
    pvc
}

fn now() -> Timestamp {
    "2025-06-01T12:00:00Z".parse().unwrap()
}

fn affinity() -> VolumeNodeAffinity {
    VolumeNodeAffinity {
        required: Some(NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: Some(vec![NodeSelectorRequirement {
                    key: "topology.ebs.csi.aws.com/zone".into(),
                    operator: "In".into(),
                    values: Some(vec!["eu-west-1a".into()]),
                }]),
                ..NodeSelectorTerm::default()
            }],
        }),
    }
}

/// The PV the CSI provisioner made for the helper claim.
fn helper_pv() -> PersistentVolume {
    let mut pv = bound_pv("pvc-helper", Some(("apps", "stork-restore-pvc-1")));
    pv.metadata.annotations = Some(params(&[
        (PROVISIONED_BY, DRIVER),
        ("volume.kubernetes.io/provisioner-deletion-secret-name", "ebs-secret"),
        ("volume.kubernetes.io/provisioner-deletion-secret-namespace", "kube-system"),
        ("pv.kubernetes.io/bound-by-controller", "yes"),
    ]));
    let spec = pv.spec.as_mut().unwrap();
    spec.claim_ref.as_mut().unwrap().uid = Some("helper-uid".into());
    spec.node_affinity = Some(affinity());
    spec.storage_class_name = Some("gp3".into());
    spec.capacity = Some(BTreeMap::from([("storage".into(), Quantity("10Gi".into()))]));
    spec.access_modes = Some(vec!["ReadWriteOnce".into()]);
    spec.persistent_volume_reclaim_policy = Some("Delete".into());
    let csi = spec.csi.as_mut().unwrap();
    csi.volume_attributes = Some(params(&[("storage.kubernetes.io/csiProvisionerIdentity", "123-ebs")]));
    csi.node_stage_secret_ref =
        Some(SecretReference { name: Some("stage".into()), namespace: Some("kube-system".into()) });
    pv
}

fn record() -> RestoreRecord {
    record_from_pv(ID, &helper(Some("Bound"), Some("pvc-helper"), 5), &helper_pv()).unwrap()
}

#[test]
fn snapshot_state_follows_ready_to_use_then_the_error() {
    let cases = [
        (None, SnapshotState::Creating),
        (Some(status(None, None)), SnapshotState::Creating),
        (Some(status(Some(false), None)), SnapshotState::Creating),
        (Some(status(Some(true), None)), SnapshotState::Ready),
        (Some(status(Some(true), Some(Some("old failure")))), SnapshotState::Ready),
        (
            Some(status(Some(false), Some(Some("rpc error: quota exceeded")))),
            SnapshotState::Failed("rpc error: quota exceeded".into()),
        ),
        (
            Some(status(None, Some(None))),
            SnapshotState::Failed("the CSI snapshot controller reported an error without a message".into()),
        ),
    ];
    for (s, want) in cases {
        assert_eq!(state_of(s.as_ref()), want, "{s:?}");
    }
}

#[test]
fn a_csi_snapshot_names_the_claim_the_id_and_the_volume() {
    let labels = params(&[
        ("SnapshotMetadata-PVName", "pvc-1"),
        ("SnapshotMetadata-Timestamp", "1717243200000000000"),
        ("bad key!", "x"),
        ("ok", "not a label value"),
    ]);
    let vs = csi_snapshot(ID, "apps", "data", "pvc-1", Some("csi-snapclass"), &labels);
    assert_eq!(vs.metadata.name.as_deref(), Some(ID));
    assert_eq!(vs.metadata.namespace.as_deref(), Some("apps"));
    assert_eq!(vs.spec.source.persistent_volume_claim_name.as_deref(), Some("data"));
    assert_eq!(vs.spec.volume_snapshot_class_name.as_deref(), Some("csi-snapclass"));
    let want = params(&[
        ("SnapshotMetadata-PVName", "pvc-1"),
        ("SnapshotMetadata-Timestamp", "1717243200000000000"),
        (SNAPSHOT_ID_LABEL, ID),
    ]);
    assert_eq!(vs.metadata.labels, Some(want));
    assert_eq!(vs.annotations().get(SNAPSHOT_VOLUME_ANNOTATION).map(String::as_str), Some("pvc-1"));
}

#[test]
fn a_csi_snapshot_without_a_class_leaves_the_choice_to_the_drivers_default_class() {
    for class in [None, Some("")] {
        let vs = csi_snapshot(ID, "apps", "data", "pvc-1", class, &BTreeMap::new());
        let json = serde_json::to_value(&vs).unwrap();
        assert_eq!(json["apiVersion"], "snapshot.storage.k8s.io/v1");
        assert_eq!(json["kind"], "VolumeSnapshot");
        assert_eq!(json["spec"], serde_json::json!({"source": {"persistentVolumeClaimName": "data"}}), "{class:?}");
    }
}

#[test]
fn a_caller_label_cannot_replace_the_snapshot_id_label() {
    let vs = csi_snapshot(ID, "apps", "data", "pvc-1", None, &params(&[(SNAPSHOT_ID_LABEL, "other")]));
    assert_eq!(vs.labels().get(SNAPSHOT_ID_LABEL).map(String::as_str), Some(ID));
}

#[test]
fn only_a_bound_csi_volume_can_be_snapshotted() {
    assert_eq!(claim_of(&bound_pv("pvc-1", Some(("apps", "data")))), Ok(("apps".into(), "data".into())));
    let unbound = claim_of(&bound_pv("pvc-1", None)).unwrap_err();
    assert!(matches!(&unbound, SnapshotError::Invalid(m) if m.contains("not bound to a claim")), "{unbound}");
    let mut not_csi = bound_pv("pvc-1", Some(("apps", "data")));
    not_csi.spec.as_mut().unwrap().csi = None;
    let err = claim_of(&not_csi).unwrap_err();
    assert!(matches!(&err, SnapshotError::Invalid(m) if m.contains("not a CSI volume")), "{err}");
}

#[test]
fn a_driver_snapshot_takes_its_time_from_the_status_and_falls_back_to_the_object() {
    let mut vs = snapshot(true);
    vs.metadata.creation_timestamp = Some(Time("2025-06-01T11:00:00Z".parse().unwrap()));
    let ds = driver_snapshot(&vs, "pvc-1");
    assert_eq!((ds.id.as_str(), ds.volume_id.as_str(), ds.state), (ID, "pvc-1", SnapshotState::Ready));
    assert_eq!(ds.created, "2025-06-01T11:00:00Z");
    vs.status.as_mut().unwrap().creation_time = Some(Time("2025-06-01T11:00:05Z".parse().unwrap()));
    assert_eq!(driver_snapshot(&vs, "pvc-1").created, "2025-06-01T11:00:05Z");
}

#[test]
fn a_snapshot_is_restorable_only_when_ready_and_paired_with_its_content() {
    let good = content("apps", ID);
    let elsewhere = content("apps", "another");
    let mut failed = snapshot(false);
    failed.status.as_mut().unwrap().error = Some(CsiSnapshotError { message: Some("boom".into()) });
    let cases: [(&CsiVolumeSnapshot, Option<&CsiVolumeSnapshotContent>, Result<(), &str>); 5] = [
        (&snapshot(true), Some(&good), Ok(())),
        (
            &snapshot(false),
            Some(&good),
            Err("storage driver failed: CSI VolumeSnapshot apps/k8s-volume-snapshot-5e0c1d2a is not ready to use yet"),
        ),
        (
            &failed,
            Some(&good),
            Err("storage driver failed: CSI VolumeSnapshot apps/k8s-volume-snapshot-5e0c1d2a failed: boom"),
        ),
        (
            &snapshot(true),
            None,
            Err(
                "storage driver failed: the content of CSI VolumeSnapshot apps/k8s-volume-snapshot-5e0c1d2a was not found",
            ),
        ),
        (
            &snapshot(true),
            Some(&elsewhere),
            Err(
                "VolumeSnapshotContent snapcontent-1 does not point back at CSI VolumeSnapshot apps/k8s-volume-snapshot-5e0c1d2a",
            ),
        ),
    ];
    for (vs, c, want) in cases {
        let got = restorable(vs, c).map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(got, want.map_err(String::from));
    }
}

#[test]
fn names_and_labels_follow_the_kubernetes_rules() {
    for (s, value, key, name) in [
        (ID, true, true, true),
        ("", true, false, false),
        ("Upper_case.ok", true, true, false),
        ("-leading", false, false, false),
        ("stork.libopenstorage.org/snapshot-id", false, true, false),
        ("Bad.Prefix/x", false, false, false),
        ("a.b", true, true, true),
    ] {
        assert_eq!((is_label_value(s), is_label_key(s), is_object_name(s)), (value, key, name), "{s:?}");
    }
    assert!(!is_label_value(&"a".repeat(64)));
}

#[test]
fn api_errors_say_whether_a_retry_can_help() {
    let status = |code: u16, message: &str| {
        let s = kube::core::Status { code, message: message.into(), ..kube::core::Status::default() };
        kube::Error::Api(Box::new(s))
    };
    assert!(matches!(api_failure("x", status(422, "invalid")), SnapshotError::Invalid(_)));
    assert!(matches!(api_failure("x", status(400, "bad")), SnapshotError::Invalid(_)));
    assert!(api_failure("x", status(403, "forbidden")).is_retryable());
    assert!(api_failure("x", status(500, "oops")).is_retryable());
    let missing = api_failure("x", status(404, "the server could not find the requested resource"));
    assert!(missing.is_retryable() && missing.to_string().contains("CSI snapshot controller"), "{missing}");
    let gone = api_failure("x", status(404, "namespaces \"stork\" not found"));
    assert!(gone.is_retryable() && !gone.to_string().contains("CSI snapshot controller"), "{gone}");
}

/// A driver whose API server is never reached: only calls that decide before any request work.
fn offline_driver() -> CsiSnapshots {
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    let client = Client::try_from(config).unwrap();
    CsiSnapshots::new(client, ClusterView::new().0, None, "kube-system", Duration::from_secs(300))
}

#[tokio::test]
async fn in_place_restores_are_refused_and_their_cleanup_is_a_no_op() {
    let d = offline_driver();
    let refused = d.start_in_place_restore("r", "pvc-1", ID).await.unwrap_err();
    assert_eq!(refused, SnapshotError::Invalid(IN_PLACE_UNSUPPORTED.into()));
    assert!(matches!(d.in_place_restore_status("r").await, Err(SnapshotError::Invalid(_))));
    assert_eq!(d.cleanup_in_place_restore("r").await, Ok(()));
}

#[tokio::test]
async fn a_snapshot_id_that_cannot_name_a_csi_snapshot_is_refused_before_any_request() {
    let d = offline_driver();
    let err = d.create_snapshot("Not_A_Name", "pvc-1", &BTreeMap::new()).await.unwrap_err();
    assert!(matches!(err, SnapshotError::Invalid(_)), "{err}");
    assert_eq!(d.snapshot("Not_A_Name").await, Ok(None));
    assert_eq!(d.delete_snapshot("Not_A_Name").await, Ok(()));
}

#[tokio::test]
async fn a_snapshot_of_a_volume_the_cache_does_not_hold_is_volume_not_found() {
    let err = offline_driver().create_snapshot(ID, "pvc-1", &BTreeMap::new()).await.unwrap_err();
    assert_eq!(err, SnapshotError::VolumeNotFound("pvc-1".into()));
}

#[tokio::test]
async fn a_recorded_restore_answers_pv_source_from_memory() {
    let d = offline_driver();
    let rec = record();
    d.restores().insert("pvc-1".into(), rec.clone());
    assert_eq!(d.pv_source("pvc-1").csi, Some(rec.csi));
    assert_eq!(d.pv_source("pvc-2").csi.map(|c| c.driver), Some(String::new()));
}
