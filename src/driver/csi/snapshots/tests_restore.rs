//! The restore builders: the helper claim's request and class, where the helper claim stands,
//! the record of a restored volume, the PVs built from it and the record store's lookups.

use k8s_openapi::api::core::v1::{ConfigMap, TypedLocalObjectReference};

use super::*;

#[test]
fn a_restore_request_takes_the_class_from_parameters_and_the_size_from_the_snapshot() {
    let size = Quantity("10Gi".into());
    let req = restore_request(&params(&[(STORAGE_CLASS_PARAMETER, "gp3")]), Some(&size), &content("apps", ID)).unwrap();
    assert_eq!(
        req,
        RestoreRequest {
            storage_class: "gp3".into(),
            size: Quantity("10Gi".into()),
            access_modes: vec!["ReadWriteOnce".into()],
            volume_mode: Some("Block".into()),
        }
    );
    let p = params(&[
        (STORAGE_CLASS_PARAMETER, "gp3"),
        (SIZE_PARAMETER, "20Gi"),
        (ACCESS_MODES_PARAMETER, "ReadWriteMany, ReadOnlyMany"),
    ]);
    let req = restore_request(&p, Some(&size), &content("apps", ID)).unwrap();
    assert_eq!(req.size, Quantity("20Gi".into()));
    assert_eq!(req.access_modes, ["ReadWriteMany", "ReadOnlyMany"]);
}

#[test]
fn a_restore_request_says_which_parameter_is_missing_or_wrong() {
    let size = Quantity("1Gi".into());
    let cases = [
        (params(&[]), Some(&size), STORAGE_CLASS_PARAMETER),
        (params(&[(STORAGE_CLASS_PARAMETER, "  ")]), Some(&size), STORAGE_CLASS_PARAMETER),
        (params(&[(STORAGE_CLASS_PARAMETER, "gp3")]), None, SIZE_PARAMETER),
        (
            params(&[(STORAGE_CLASS_PARAMETER, "gp3"), (ACCESS_MODES_PARAMETER, "RWO")]),
            Some(&size),
            ACCESS_MODES_PARAMETER,
        ),
        (
            params(&[(STORAGE_CLASS_PARAMETER, "gp3"), (ACCESS_MODES_PARAMETER, ",")]),
            Some(&size),
            ACCESS_MODES_PARAMETER,
        ),
    ];
    for (p, size, named) in cases {
        let err = restore_request(&p, size, &content("apps", ID)).unwrap_err();
        assert!(matches!(&err, SnapshotError::Invalid(m) if m.contains(named)), "{p:?}: {err}");
    }
}

#[test]
fn the_restore_class_must_be_the_snapshots_driver_and_bind_without_a_consumer() {
    let cases = [
        (DRIVER, None, None),
        (DRIVER, Some("Immediate"), None),
        ("other.csi.io", Some("Immediate"), Some("provisions with other.csi.io")),
        (DRIVER, Some("WaitForFirstConsumer"), Some("volumeBindingMode Immediate")),
    ];
    for (provisioner, mode, err) in cases {
        let got = class_fits("gp3", provisioner, mode, DRIVER).err().map(|e| e.to_string());
        match err {
            None => assert_eq!(got, None),
            Some(part) => assert!(got.as_deref().is_some_and(|m| m.contains(part)), "{got:?}"),
        }
    }
}

#[test]
fn the_helper_claim_restores_the_snapshot_with_the_requested_class_and_size() {
    let mut req = request();
    req.volume_mode = Some("Block".into());
    let pvc = helper_pvc("pvc-1", "apps", ID, &req);
    assert_eq!(pvc.metadata.name.as_deref(), Some("stork-restore-pvc-1"));
    assert_eq!(pvc.metadata.namespace.as_deref(), Some("apps"));
    let spec = pvc.spec.unwrap();
    assert_eq!(
        spec.data_source,
        Some(TypedLocalObjectReference {
            api_group: Some("snapshot.storage.k8s.io".into()),
            kind: "VolumeSnapshot".into(),
            name: ID.into()
        })
    );
    assert_eq!(spec.storage_class_name.as_deref(), Some("gp3"));
    assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".into()]));
    assert_eq!(spec.volume_mode.as_deref(), Some("Block"));
    let size = spec.resources.and_then(|r| r.requests).and_then(|r| r.get("storage").cloned());
    assert_eq!(size, Some(Quantity("10Gi".into())));
}

#[test]
fn a_helper_claim_is_waited_for_until_bound_and_then_names_its_pv() {
    let timeout = Duration::from_secs(300);
    let state = |pvc: &PersistentVolumeClaim| helper_state(pvc, ID, now(), timeout);
    assert_eq!(state(&helper(Some("Bound"), Some("pvc-helper"), 5)), HelperState::Bound("pvc-helper".into()));
    let waiting = |s: HelperState, part: &str| matches!(&s, HelperState::Waiting(m) if m.contains(part));
    assert!(waiting(state(&helper(None, None, 5)), "waiting for claim apps/stork-restore-pvc-1 (StorageClass gp3)"));
    assert!(waiting(state(&helper(Some("Bound"), None, 5)), "waiting for claim"));
    assert!(waiting(state(&helper(Some("Pending"), None, 301)), "still not bound after 301s"));
    assert!(waiting(state(&helper(Some("Lost"), None, 5)), "lost its volume"));
    let mut deleting = helper(Some("Bound"), Some("pvc-helper"), 5);
    deleting.metadata.deletion_timestamp = Some(Time(now()));
    assert!(waiting(state(&deleting), "deleted claim"));
}

#[test]
fn a_helper_claim_of_another_snapshot_is_a_conflict() {
    let other =
        helper_state(&helper(Some("Bound"), Some("pvc-helper"), 5), "k8s-volume-snapshot-other", now(), Duration::ZERO);
    assert!(
        matches!(&other, HelperState::Foreign(m) if m.contains("restores VolumeSnapshot k8s-volume-snapshot-5e0c1d2a")),
        "{other:?}"
    );
}

#[test]
fn the_record_of_a_restore_keeps_the_whole_csi_source_and_the_deletion_secrets() {
    let rec = record();
    assert_eq!(rec.snapshot, ID);
    assert_eq!(
        (rec.namespace.as_str(), rec.helper_claim_uid.as_str(), rec.helper_pv.as_str()),
        ("apps", "helper-uid", "pvc-helper")
    );
    assert_eq!(rec.csi, helper_pv().spec.unwrap().csi.unwrap());
    assert_eq!(rec.node_affinity, Some(affinity()));
    assert_eq!((rec.storage_class.as_str(), rec.provisioner.as_str()), ("gp3", DRIVER));
    assert_eq!(
        rec.annotations,
        params(&[
            ("volume.kubernetes.io/provisioner-deletion-secret-name", "ebs-secret"),
            ("volume.kubernetes.io/provisioner-deletion-secret-namespace", "kube-system"),
        ])
    );
    assert_eq!(rec.capacity, Some(Quantity("10Gi".into())));
}

#[test]
fn a_pv_that_is_not_the_helper_claims_csi_volume_gives_no_record() {
    let claim = helper(Some("Bound"), Some("pvc-helper"), 5);
    let mut not_csi = helper_pv();
    not_csi.spec.as_mut().unwrap().csi = None;
    assert!(matches!(record_from_pv(ID, &claim, &not_csi), Err(SnapshotError::Invalid(_))));
    let mut other_claim = helper_pv();
    other_claim.spec.as_mut().unwrap().claim_ref.as_mut().unwrap().uid = Some("someone-else".into());
    assert!(matches!(record_from_pv(ID, &claim, &other_claim), Err(SnapshotError::Failed(_))));
}

#[test]
fn a_restored_volume_reaches_its_pv_through_the_recorded_csi_source() {
    let rec = record();
    let spec = pv_source_of("pvc-1", Some(&rec));
    assert_eq!(spec.csi, Some(rec.csi.clone()));
    assert_eq!(spec.node_affinity, Some(affinity()));
    assert_eq!((spec.claim_ref, spec.capacity, spec.storage_class_name), (None, None, None));
}

#[test]
fn an_unknown_restored_volume_gets_a_csi_source_without_a_driver() {
    let spec = pv_source_of("pvc-1", None);
    let csi = spec.csi.unwrap();
    assert_eq!((csi.driver.as_str(), csi.volume_handle.as_str()), ("", "pvc-1"));
}

#[test]
fn a_deleter_pv_is_released_for_the_csi_provisioner_with_reclaim_delete() {
    let rec = record();
    let pv = deleter_pv("pvc-1", &rec);
    assert_eq!(pv.metadata.name.as_deref(), Some("stork-delete-pvc-1"));
    let annotations = pv.metadata.annotations.clone().unwrap();
    assert_eq!(annotations.get(PROVISIONED_BY).map(String::as_str), Some(DRIVER));
    assert_eq!(
        annotations.get("volume.kubernetes.io/provisioner-deletion-secret-name").map(String::as_str),
        Some("ebs-secret")
    );
    assert_eq!(pv.labels().get(RESTORED_VOLUME_LABEL).map(String::as_str), Some("pvc-1"));
    let spec = pv.spec.unwrap();
    assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Delete"));
    assert_eq!(spec.csi, Some(rec.csi.clone()));
    assert_eq!(spec.storage_class_name.as_deref(), Some("gp3"));
    let claim = spec.claim_ref.unwrap();
    // A uid no claim has: the PV controller releases it instead of binding it.
    assert_eq!(claim.uid.as_deref(), Some("stork-deleted-pvc-1"));
    assert_ne!(claim.uid, Some(rec.helper_claim_uid));
    assert_eq!(spec.capacity.unwrap().get("storage"), Some(&Quantity("10Gi".into())));
}

#[test]
fn a_deleter_pv_of_a_sparse_record_still_is_a_valid_pv() {
    let mut rec = record();
    (rec.provisioner, rec.capacity, rec.access_modes, rec.storage_class) = (String::new(), None, vec![], String::new());
    let pv = deleter_pv("pvc-1", &rec);
    assert_eq!(pv.annotations().get(PROVISIONED_BY).map(String::as_str), Some(DRIVER));
    let spec = pv.spec.unwrap();
    assert_eq!(spec.capacity.unwrap().get("storage"), Some(&Quantity("1".into())));
    assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".into()]));
    assert_eq!(spec.storage_class_name, None);
}

#[test]
fn records_survive_the_configmap_and_unreadable_entries_are_skipped() {
    let rec = record();
    let cm = ConfigMap {
        data: Some(BTreeMap::from([
            ("pvc-1".to_string(), serde_json::to_string(&rec).unwrap()),
            ("pvc-2".to_string(), "{not json".to_string()),
        ])),
        ..ConfigMap::default()
    };
    let records = parse_records(Some(&cm));
    assert_eq!(records, BTreeMap::from([("pvc-1".to_string(), rec)]));
    assert!(parse_records(None).is_empty());
}

#[test]
fn a_record_is_found_by_its_handle_only_when_asked() {
    let records = BTreeMap::from([("pvc-1".to_string(), record())]);
    assert_eq!(lookup(&records, "pvc-1", false).map(|(k, _)| k).as_deref(), Some("pvc-1"));
    assert_eq!(lookup(&records, "vol-1", false), None);
    assert_eq!(lookup(&records, "vol-1", true).map(|(k, _)| k).as_deref(), Some("pvc-1"));
}

#[test]
fn the_retain_check_treats_an_unset_policy_as_retain_and_recognises_the_helper_pv() {
    let rec = record();
    let mut pv = helper_pv();
    assert_eq!(reclaim_policy(&pv), "Delete");
    assert!(is_helper_pv(&pv, &rec));
    pv.spec.as_mut().unwrap().persistent_volume_reclaim_policy = None;
    assert_eq!(reclaim_policy(&pv), "Retain");
    pv.spec.as_mut().unwrap().csi.as_mut().unwrap().volume_handle = "vol-2".into();
    assert!(!is_helper_pv(&pv, &rec));
}
