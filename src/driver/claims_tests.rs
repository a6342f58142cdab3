use std::sync::Arc;

use k8s_openapi::api::{core::v1::PersistentVolumeClaim, storage::v1::StorageClass};
use serde_json::json;

use super::{Refreshed, refresh};
use crate::{
    cluster::{ClusterView, claim_key},
    driver::{Driver, PodVolumes, VolumesError, mock::MockDriver, pod_volumes},
    fixtures::{NS, PodExt, World, dnode, pod},
};

fn built() -> (ClusterView, crate::cluster::ObjectUpdates, Arc<MockDriver>) {
    let (cluster, updates, driver) = world().build_with_updates();
    (cluster, updates, Arc::new(driver))
}

fn world() -> World {
    World::new()
        .driver_nodes([dnode("n1"), dnode("n2"), dnode("n3")])
        .volume("v1", &["n1", "n2"])
        .volume("v2", &["n2", "n3"])
        .claim_annotation("v2", "stork.libopenstorage.org/preferLocalNodeOnly", "true")
        .claim_annotation("v2", "pv.kubernetes.io/bind-completed", "yes")
        .claim("wffc", "mock-wffc", None)
        .claim("pending", "mock-sc", None)
        .claim("other", "other-sc", None)
}

/// Resolves a pod's claims with the index in place, and again with every lookup resolved
/// directly, and checks both agree.
fn resolve(cluster: &ClusterView, driver: &Arc<MockDriver>, claims: &[&str]) -> Result<PodVolumes, VolumesError> {
    let p = claims.iter().fold(pod("p"), |p, c| p.with_pvc(c));
    let indexed = pod_volumes(driver.as_ref(), cluster, &p);
    let direct = pod_volumes(&Unindexed(driver.clone()), cluster, &p);
    assert_eq!(format!("{indexed:?}"), format!("{direct:?}"), "indexed and direct resolution differ for {claims:?}");
    indexed
}

/// The same driver without its claim index: every claim is resolved directly.
struct Unindexed(Arc<MockDriver>);

impl Driver for Unindexed {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn owns_provisioner(&self, p: &str) -> bool {
        self.0.owns_provisioner(p)
    }
    fn nodes(&self) -> Result<Arc<crate::driver::NodeInventory>, crate::driver::Error> {
        self.0.nodes()
    }
    fn volume(
        &self,
        pv: &k8s_openapi::api::core::v1::PersistentVolume,
    ) -> Result<Option<Arc<crate::driver::Volume>>, crate::driver::Error> {
        self.0.volume(pv)
    }
    fn snapshots(&self) -> Option<&dyn crate::driver::SnapshotDriver> {
        self.0.snapshots()
    }
}

fn index_answers(cluster: &ClusterView, driver: &MockDriver, claim: &str) -> bool {
    let index = driver.claim_index().and_then(|s| s.current(cluster));
    index.is_some_and(|i| i.lookup(cluster, &claim_key(NS, claim)).is_some())
}

fn claim(name: &str, class: &str, pv: Option<&str>, annotations: serde_json::Value) -> PersistentVolumeClaim {
    let phase = if pv.is_some() { "Bound" } else { "Pending" };
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NS, "annotations": annotations},
        "spec": {"storageClassName": class, "volumeName": pv},
        "status": {"phase": phase}
    }))
    .unwrap()
}

#[test]
fn the_index_resolves_every_kind_of_claim_exactly_as_direct_resolution_does_keeping_only_knobs() {
    let (cluster, _, driver) = built();
    for c in ["v1", "v2", "wffc", "other"] {
        assert!(index_answers(&cluster, &driver, c), "{c} is not indexed");
    }
    let vols = resolve(&cluster, &driver, &["v1", "v2", "wffc", "other"]).unwrap();
    assert_eq!(vols.bound.iter().map(|v| v.volume.replicas.len()).collect::<Vec<_>>(), [2, 2]);
    assert_eq!(vols.bound[1].labels.get("stork.libopenstorage.org/preferLocalNodeOnly").unwrap(), "true");
    assert_eq!(vols.bound[1].labels.len(), 1, "only knobs are kept: {:?}", vols.bound[1].labels);
    assert_eq!(vols.pending_wffc, ["default/wffc"]);
    assert!(matches!(resolve(&cluster, &driver, &["pending"]), Err(VolumesError::PvcPending { .. })));
    assert!(matches!(resolve(&cluster, &driver, &["missing"]), Err(VolumesError::PvcNotFound { .. })));
}

#[test]
fn a_changed_claim_is_resolved_directly_until_the_builder_redoes_only_that_claim() {
    let (cluster, mut updates, driver) = built();
    updates.apply_pvc(claim("v1", "mock-sc", Some("pv-v1"), json!({"stork.libopenstorage.org/rack": "r9"})));
    assert!(!index_answers(&cluster, &driver, "v1"), "a stale entry was served");
    assert!(index_answers(&cluster, &driver, "v2"), "an unchanged claim lost its entry");
    let vols = resolve(&cluster, &driver, &["v1"]).unwrap();
    assert_eq!(vols.bound[0].labels.get("stork.libopenstorage.org/rack").unwrap(), "r9");
    assert_eq!(refresh(driver.as_ref(), &cluster), Refreshed::Incremental { claims: 1 });
    assert!(index_answers(&cluster, &driver, "v1"));
    assert_eq!(refresh(driver.as_ref(), &cluster), Refreshed::Current);
    resolve(&cluster, &driver, &["v1"]).unwrap();
}

#[test]
fn a_claim_that_binds_or_is_deleted_is_redone_and_a_pv_change_redoes_the_claim_that_reads_it() {
    let (cluster, mut updates, driver) = built();
    updates.apply_pvc(claim("pending", "mock-sc", Some("pv-v2"), json!({})));
    updates.delete_pvc(claim("other", "other-sc", None, json!({})));
    assert_eq!(refresh(driver.as_ref(), &cluster), Refreshed::Incremental { claims: 2 });
    assert!(index_answers(&cluster, &driver, "pending"));
    assert!(!index_answers(&cluster, &driver, "other"));
    assert_eq!(resolve(&cluster, &driver, &["pending"]).unwrap().bound.len(), 1);

    let pv = cluster.pv("pv-v1").unwrap();
    updates.apply_pv((*pv).clone());
    assert!(!index_answers(&cluster, &driver, "v1"), "an entry built from an older PV was served");
    assert_eq!(refresh(driver.as_ref(), &cluster), Refreshed::Incremental { claims: 1 });
    assert!(index_answers(&cluster, &driver, "v1"));
}

#[test]
fn a_class_change_or_a_change_of_the_driver_s_volumes_rebuilds_the_whole_index() {
    let (cluster, mut updates, driver) = built();
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": "mock-sc"}, "provisioner": crate::driver::mock::PROVISIONER,
        "parameters": {"stork.libopenstorage.org/zone": "z1"}
    }))
    .unwrap();
    updates.apply_class(class);
    assert!(driver.claim_index().unwrap().current(&cluster).is_none(), "an index of old classes was served");
    assert_eq!(resolve(&cluster, &driver, &["v1"]).unwrap().bound[0].labels["stork.libopenstorage.org/zone"], "z1");
    assert_eq!(refresh(driver.as_ref(), &cluster), Refreshed::Whole { claims: 5 });
    resolve(&cluster, &driver, &["v1", "v2"]).unwrap();

    driver.claim_index().unwrap().volumes_changed();
    assert!(driver.claim_index().unwrap().current(&cluster).is_none());
    assert_eq!(refresh(driver.as_ref(), &cluster), Refreshed::Whole { claims: 5 });
    assert!(index_answers(&cluster, &driver, "v1"));
}

#[test]
fn an_index_built_for_another_view_is_never_used() {
    let (cluster, driver) = world().build();
    let (other, _) = world().build();
    assert!(driver.claim_index().unwrap().current(&other).is_none());
    assert!(driver.claim_index().unwrap().current(&cluster).is_some());
}

#[test]
fn reloading_the_mock_topology_marks_the_driver_s_volumes_changed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.yaml");
    let yaml =
        |replica: &str| format!("nodes:\n  - id: n1\n  - id: n2\nvolumes:\n  - id: pv-v1\n    replicas: [{replica}]\n");
    std::fs::write(&path, yaml("n1")).unwrap();
    let driver = Arc::new(MockDriver::load(&path).unwrap());
    let (cluster, _) = world().build();
    refresh(driver.as_ref(), &cluster);
    assert!(driver.claim_index().unwrap().current(&cluster).is_some());
    std::fs::write(&path, yaml("n2")).unwrap();
    driver.reload().unwrap();
    assert!(driver.claim_index().unwrap().current(&cluster).is_none());
    refresh(driver.as_ref(), &cluster);
    assert_eq!(resolve(&cluster, &driver, &["v1"]).unwrap().bound[0].volume.replicas, ["n2"]);
}

#[tokio::test]
async fn the_builder_task_folds_a_change_in_on_its_own_counts_it_and_stops_when_cancelled() {
    let (cluster, mut updates, driver) = built();
    let cancel = tokio_util::sync::CancellationToken::new();
    let metrics = crate::metrics::Metrics::new();
    let task = tokio::spawn(super::run(driver.clone(), cluster.clone(), metrics.clone(), cancel.clone()));
    updates.apply_pvc(claim("v1", "mock-sc", Some("pv-v1"), json!({"stork.libopenstorage.org/rack": "r7"})));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let index = driver.claim_index().and_then(|s| s.current(&cluster));
        let outcome = index.as_deref().and_then(|i| i.lookup(&cluster, &claim_key(NS, "v1")).map(|o| format!("{o:?}")));
        if outcome.as_deref().is_some_and(|o| o.contains("r7")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the builder did not redo v1 within 10 s; last saw {outcome:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await; // poll until the deadline
    }
    cancel.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(10), task).await.expect("builder stops").unwrap();
    let text = metrics.encode();
    assert!(text.contains("stork_claim_index_builds_total{kind=\"incremental\"}"), "{text}");
    assert!(text.contains("stork_claim_index_claims 5"), "{text}");
}
