//! Provisioner tests of the PV side: the PV built for a restore, which released PVs are deleted,
//! and the restore call to the driver (through a fake driver).

use k8s_openapi::{
    api::core::v1::{CSIPersistentVolumeSource, PersistentVolumeSpec, PersistentVolumeStatus},
    apimachinery::pkg::api::resource::Quantity,
};

use super::*;
use crate::fixtures::FakeDriver;

fn csi_source(volume_id: &str) -> PersistentVolumeSpec {
    PersistentVolumeSpec {
        csi: Some(CSIPersistentVolumeSource {
            driver: "mock.stork.libopenstorage.org".into(),
            volume_handle: volume_id.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn built(c: &StorageClass, pvc: &PersistentVolumeClaim) -> PersistentVolume {
    let plan = plan_provision(pvc, c, Some(&snapshot()), Some(&data()), DRIVER).unwrap();
    build_pv(&plan, pvc, c, csi_source(&plan.pv_name))
}

#[test]
fn the_pv_is_pre_bound_to_the_claim_by_uid_and_marked_as_stork_snapshots() {
    let pv = built(&class(), &claim());
    assert_eq!(pv.metadata.name.as_deref(), Some("pvc-7d0e3c4b-1111-4a2b-9c3d-0123456789ab"));
    let a = pv.metadata.annotations.as_ref().unwrap();
    assert_eq!(a[PROVISIONED_BY], "stork-snapshot");
    assert_eq!(a[IDENTITY_ANNOTATION], "stork");
    let spec = pv.spec.unwrap();
    let r = spec.claim_ref.unwrap();
    assert_eq!(
        (r.api_version.as_deref(), r.kind.as_deref(), r.namespace.as_deref(), r.name.as_deref(), r.uid.as_deref()),
        (
            Some("v1"),
            Some("PersistentVolumeClaim"),
            Some("default"),
            Some("mysql-restored"),
            Some("7d0e3c4b-1111-4a2b-9c3d-0123456789ab")
        )
    );
    assert_eq!(spec.storage_class_name.as_deref(), Some("stork-snapshot-sc"));
    assert_eq!(spec.csi.unwrap().volume_handle, "pvc-7d0e3c4b-1111-4a2b-9c3d-0123456789ab", "the driver's source");
    assert!(spec.node_affinity.is_none(), "locality is the extender's job");
}

#[test]
fn the_pv_takes_the_reclaim_policy_of_the_class_and_defaults_to_delete() {
    let mut c = class();
    c.reclaim_policy = None;
    assert_eq!(built(&c, &claim()).spec.unwrap().persistent_volume_reclaim_policy.as_deref(), Some("Delete"));
    c.reclaim_policy = Some("Retain".into());
    c.mount_options = Some(vec!["noatime".into()]);
    let spec = built(&c, &claim()).spec.unwrap();
    assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Retain"));
    assert_eq!(spec.mount_options, Some(vec!["noatime".to_string()]));
}

#[test]
fn the_pv_takes_size_access_modes_and_volume_mode_from_the_claim() {
    let mut pvc = claim();
    let s = pvc.spec.as_mut().unwrap();
    s.access_modes = Some(vec!["ReadWriteOnce".into(), "ReadOnlyMany".into()]);
    s.volume_mode = Some("Block".into());
    let spec = built(&class(), &pvc).spec.unwrap();
    assert_eq!(spec.capacity.unwrap()["storage"], Quantity("2Gi".into()));
    assert_eq!(spec.access_modes.unwrap(), ["ReadWriteOnce", "ReadOnlyMany"]);
    assert_eq!(spec.volume_mode.as_deref(), Some("Block"));
}

#[test]
fn only_a_released_stork_snapshot_pv_with_reclaim_delete_and_stork_identity_is_deleted() {
    let volume_id = "pvc-7d0e3c4b-1111-4a2b-9c3d-0123456789ab".to_string();
    assert_eq!(delete_decision(&released_pv()), DeleteDecision::Delete { volume_id });
    let with = |f: &dyn Fn(&mut PersistentVolume)| {
        let mut pv = released_pv();
        f(&mut pv);
        delete_decision(&pv)
    };
    let ignore = |d: DeleteDecision| matches!(d, DeleteDecision::Ignore(_));
    assert!(ignore(with(&|pv| annotate(pv, PROVISIONED_BY, Some("ebs.csi.aws.com")))));
    assert!(ignore(with(&|pv| annotate(pv, PROVISIONED_BY, None))));
    assert!(ignore(with(
        &|pv| pv.status = Some(PersistentVolumeStatus { phase: Some("Bound".into()), ..Default::default() })
    )));
    assert!(ignore(with(&|pv| pv.status = None)));
    assert!(ignore(with(&|pv| pv.spec.as_mut().unwrap().persistent_volume_reclaim_policy = Some("Retain".into()))));
    assert!(ignore(with(&|pv| pv.spec.as_mut().unwrap().persistent_volume_reclaim_policy = None)), "API default");
    assert!(ignore(with(&|pv| annotate(pv, IDENTITY_ANNOTATION, Some("another-stork")))));
    assert_eq!(with(&|pv| annotate(pv, IDENTITY_ANNOTATION, None)), DeleteDecision::MissingIdentity);
}

#[test]
fn a_pv_without_a_csi_handle_is_deleted_by_its_name() {
    let mut pv = released_pv();
    pv.metadata.name = Some("pvc-restored".into());
    pv.spec.as_mut().unwrap().csi = None;
    assert_eq!(delete_decision(&pv), DeleteDecision::Delete { volume_id: "pvc-restored".into() });
}

#[tokio::test]
async fn a_restore_asks_the_driver_for_the_claims_volume_and_builds_the_pv_on_its_source() {
    let driver = FakeDriver::default();
    let mut c = class();
    c.parameters = Some(BTreeMap::from([("repl".to_string(), "3".to_string())]));
    let plan = plan_provision(&claim(), &c, Some(&snapshot()), Some(&data()), DRIVER).unwrap();
    let pv = restore(&driver, &plan, &claim(), &c).await.unwrap();
    let calls = driver.restores.lock().unwrap().clone();
    assert_eq!(calls, [("snap-2f3c5e1a".to_string(), plan.pv_name.clone(), c.parameters.clone().unwrap())]);
    assert_eq!(pv.spec.unwrap().csi.unwrap().volume_handle, plan.pv_name);
}

#[tokio::test]
async fn a_driver_failure_names_the_snapshot_in_the_claims_event() {
    let driver =
        FakeDriver { fail_restores: Some(SnapshotError::Failed("pool offline".into())), ..FakeDriver::default() };
    let plan = plan_provision(&claim(), &class(), Some(&snapshot()), Some(&data()), DRIVER).unwrap();
    let err = restore(&driver, &plan, &claim(), &class()).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("default/mysql-snapshot") && msg.contains("pool offline"), "{msg}");
}
