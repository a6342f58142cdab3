//! Snapshots through Kubernetes alone, on the real control plane: a `VolumeSnapshot` of a bound
//! mock claim becomes Ready with its `VolumeSnapshotData`; a `stork-snapshot-sc` claim naming it
//! is provisioned by stork and bound by the real PV controller; its pod lands next to the
//! restored volume's replica; cross-namespace restores follow the snapshot's patterns; an
//! in-place restore holds the application Pending while it runs; deletions clean the driver up.

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{PersistentVolume, PersistentVolumeClaim, Pod},
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, PostParams},
};
use serde_json::json;
use stork::model::crd::{VolumeSnapshot, VolumeSnapshotData, VolumeSnapshotRestore};
use stork_e2e::{
    Cluster, kwok_nodes, namespace,
    objects::{WAIT, bound_claim, create, storage_class},
    shared, wait_for,
};

/// The mock driver's persisted snapshot state, as text.
fn mock_state(cluster: &Cluster) -> String {
    let path = stork::driver::mock::state_path(&cluster.info.topology);
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Creates VolumeSnapshot `name` of `claim` (with `annotations`) and waits until it is Ready;
/// returns the driver snapshot id from its VolumeSnapshotData.
async fn ready_snapshot(client: &Client, ns: &str, name: &str, claim: &str, annotations: serde_json::Value) -> String {
    let snaps: Api<VolumeSnapshot> = Api::namespaced(client.clone(), ns);
    create(
        &snaps,
        json!({
            "apiVersion": "volumesnapshot.external-storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"persistentVolumeClaimName": claim}
        }),
    )
    .await;
    let data_name = wait_for(&format!("snapshot {ns}/{name} Ready"), WAIT, || async {
        let s = snaps.get(name).await.map_err(|e| e.to_string())?;
        let conditions = s.status.as_ref().map(|st| st.conditions.clone()).unwrap_or_default();
        match s.status.as_ref().is_some_and(|st| st.is_ready()) && !s.spec.snapshot_data_name.is_empty() {
            true => Ok(s.spec.snapshot_data_name),
            false => Err(format!("{conditions:?}")),
        }
    })
    .await;
    let data = Api::<VolumeSnapshotData>::all(client.clone()).get(&data_name).await.expect("VolumeSnapshotData");
    let source = data.spec.driver_snapshot.expect("driverSnapshot source");
    assert_eq!(source.driver, "mock");
    let snap_ref = data.spec.volume_snapshot_ref.expect("volumeSnapshotRef");
    assert_eq!((snap_ref.namespace.as_deref(), snap_ref.name.as_deref()), (Some(ns), Some(name)));
    source.snapshot_id
}

/// Creates a restore claim of class `stork-snapshot-sc`; returns the creation result.
async fn restore_claim(
    client: &Client,
    ns: &str,
    name: &str,
    annotations: serde_json::Value,
) -> Result<PersistentVolumeClaim, kube::Error> {
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"storageClassName": "stork-snapshot-sc", "accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "2Gi"}}}
    }))
    .unwrap();
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns).create(&PostParams::default(), &pvc).await
}

/// Waits until the claim is Bound and returns its PV.
async fn bound_pv(client: &Client, ns: &str, claim: &str) -> PersistentVolume {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pv_name = wait_for(&format!("pvc {ns}/{claim} Bound by the PV controller"), WAIT, || async {
        let c = pvcs.get(claim).await.map_err(|e| e.to_string())?;
        let phase = c.status.and_then(|s| s.phase).unwrap_or_default();
        let volume = c.spec.and_then(|s| s.volume_name).unwrap_or_default();
        if phase == "Bound" && !volume.is_empty() { Ok(volume) } else { Err(format!("{phase} {volume:?}")) }
    })
    .await;
    Api::<PersistentVolume>::all(client.clone()).get(&pv_name).await.expect("bound PV")
}

#[tokio::test]
async fn a_snapshot_restores_into_a_new_claim_whose_pod_lands_on_the_replica_and_deletion_cleans_up() {
    let (cluster, client) = shared().await;
    let nodes = [("snap-n1", "10.6.0.1"), ("snap-n2", "10.6.0.2"), ("snap-n3", "10.6.0.3")];
    cluster.add_storage(&nodes, "Online", &[("pv-snap-src", &["snap-n3"])]).unwrap();
    kwok_nodes(&client, &nodes).await.unwrap();
    storage_class(&client).await;
    let ns = namespace(&client, "snap").await.unwrap();
    bound_claim(&client, &ns, "data", "pv-snap-src").await;

    let snapshot_id = ready_snapshot(&client, &ns, "nightly", "data", json!({})).await;
    assert!(mock_state(cluster).contains(&snapshot_id), "the driver holds snapshot {snapshot_id}");

    let claim =
        restore_claim(&client, &ns, "restored", json!({"snapshot.alpha.kubernetes.io/snapshot": "nightly"})).await;
    let claim = claim.expect("a restore claim naming a Ready snapshot is admitted");
    let pv = bound_pv(&client, &ns, "restored").await;
    let annotations = pv.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.get("pv.kubernetes.io/provisioned-by").map(String::as_str), Some("stork-snapshot"));
    let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.clone()).expect("claimRef");
    assert_eq!(claim_ref.uid, claim.metadata.uid, "stork pre-bound the PV to this very claim");

    // No schedulerName: the webhook routes the pod to stork, the extender to the replica node.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    create(
        &pods,
        json!({"metadata": {"name": "reader"}, "spec": {"containers": [{"name": "app", "image": "fake"}],
               "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "restored"}}]}}),
    )
    .await;
    let node = stork_e2e::objects::scheduled_node(&pods, "reader").await;
    assert_eq!(node, "snap-n3", "the restored volume's replica is where the source's was");

    // Releasing the claim deletes the restored volume and its PV.
    pods.delete("reader", &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() }).await.unwrap();
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
        .delete("restored", &DeleteParams::default())
        .await
        .unwrap();
    let pv_name = pv.metadata.name.clone().unwrap();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    wait_for(&format!("released PV {pv_name} deleted by stork"), WAIT, || async {
        match pvs.get_opt(&pv_name).await {
            Ok(None) if !mock_state(cluster).contains(&pv_name) => Ok(()),
            other => Err(format!("{:?}", other.map(|p| p.and_then(|p| p.status).and_then(|s| s.phase)))),
        }
    })
    .await;

    // Deleting the snapshot deletes the driver snapshot and the VolumeSnapshotData.
    let snaps: Api<VolumeSnapshot> = Api::namespaced(client.clone(), &ns);
    let data_name = snaps.get("nightly").await.unwrap().spec.snapshot_data_name;
    snaps.delete("nightly", &DeleteParams::default()).await.unwrap();
    let datas: Api<VolumeSnapshotData> = Api::all(client.clone());
    wait_for("snapshot, its data and the driver snapshot gone", WAIT, || async {
        let snap = snaps.get_opt("nightly").await.map_err(|e| e.to_string())?.is_some();
        let data = datas.get_opt(&data_name).await.map_err(|e| e.to_string())?.is_some();
        let driver = mock_state(cluster).contains(&snapshot_id);
        if !snap && !data && !driver { Ok(()) } else { Err(format!("snapshot={snap} data={data} driver={driver}")) }
    })
    .await;
}

#[tokio::test]
async fn a_cross_namespace_restore_is_allowed_only_where_the_snapshots_patterns_match() {
    let (cluster, client) = shared().await;
    let nodes = [("xns-n1", "10.6.1.1"), ("xns-n2", "10.6.1.2")];
    cluster.add_storage(&nodes, "Online", &[("pv-xns-src", &["xns-n2"])]).unwrap();
    kwok_nodes(&client, &nodes).await.unwrap();
    storage_class(&client).await;
    let source = namespace(&client, "xns-src").await.unwrap();
    bound_claim(&client, &source, "data", "pv-xns-src").await;
    let patterns = json!({"stork.libopenstorage.org/snapshot-restore-namespaces": "xns-ok-.*, other"});
    ready_snapshot(&client, &source, "shared", "data", patterns).await;

    let from_source = json!({
        "snapshot.alpha.kubernetes.io/snapshot": "shared",
        "stork.libopenstorage.org/snapshot-source-namespace": source,
    });
    let allowed = namespace(&client, "xns-ok").await.unwrap();
    restore_claim(&client, &allowed, "copy", from_source.clone()).await.expect("a namespace the patterns match");
    bound_pv(&client, &allowed, "copy").await;

    // "pre-xns-ok-…" contains a match of "xns-ok-.*", but patterns are anchored at both ends.
    let refused = namespace(&client, "pre-xns-ok").await.unwrap();
    match restore_claim(&client, &refused, "copy", from_source).await {
        Err(kube::Error::Api(e)) => {
            assert!(e.message.contains("cannot be restored into namespace"), "{}", e.message);
            assert!(e.message.contains("snapshot-restore-namespaces"), "says which annotation to change");
        }
        other => panic!("expected the validating webhook to refuse, got {other:?}"),
    }
}

#[tokio::test]
async fn an_in_place_restore_holds_the_pod_pending_while_it_runs_and_brings_it_back_running() {
    let (cluster, client) = shared().await;
    let nodes = [("ipr-n1", "10.6.2.1"), ("ipr-n2", "10.6.2.2")];
    cluster.add_storage(&nodes, "Online", &[("pv-ipr", &["ipr-n1"])]).unwrap();
    kwok_nodes(&client, &nodes).await.unwrap();
    storage_class(&client).await;
    let ns = namespace(&client, "inplace").await.unwrap();
    bound_claim(&client, &ns, "data", "pv-ipr").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    create(
        &deployments,
        json!({"metadata": {"name": "db"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "db"}},
               "template": {"metadata": {"labels": {"app": "db"}}, "spec": {
                   "containers": [{"name": "db", "image": "fake"}],
                   "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}}}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let running = |not_uid: Option<String>| {
        let pods = pods.clone();
        async move {
            let list = pods.list(&ListParams::default().labels("app=db")).await.map_err(|e| e.to_string())?;
            let seen: Vec<_> = list.items.iter().map(|p| (p.metadata.uid.clone(), phase_and_node(p))).collect();
            list.items
                .into_iter()
                .find(|p| p.metadata.uid != not_uid && phase_and_node(p) == ("Running".into(), "ipr-n1".into()))
                .and_then(|p| p.metadata.uid)
                .ok_or(format!("{seen:?}"))
        }
    };
    let first = wait_for("the database pod Running on ipr-n1", WAIT, || running(None)).await;
    let snapshot_id = ready_snapshot(&client, &ns, "before-upgrade", "data", json!({})).await;

    let restores: Api<VolumeSnapshotRestore> = Api::namespaced(client.clone(), &ns);
    create(
        &restores,
        json!({"apiVersion": "stork.libopenstorage.org/v1alpha1", "kind": "VolumeSnapshotRestore",
               "metadata": {"name": "rollback"}, "spec": {"sourceName": "before-upgrade"}}),
    )
    .await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    wait_for("the claim marked restore-in-progress with its new pod held Pending", WAIT, || async {
        let claim = pvcs.get("data").await.map_err(|e| e.to_string())?;
        let marked = claim
            .metadata
            .annotations
            .is_some_and(|a| a.get("stork.libopenstorage.org/restore-in-progress").map(String::as_str) == Some("true"));
        let list = pods.list(&ListParams::default().labels("app=db")).await.map_err(|e| e.to_string())?;
        let held = list.items.iter().any(|p| p.metadata.uid.as_ref() != Some(&first) && phase_and_node(p).1.is_empty());
        if marked && held { Ok(()) } else { Err(format!("marked={marked} held_pending={held}")) }
    })
    .await;
    wait_for("the restore Successful", WAIT, || async {
        let r = restores.get("rollback").await.map_err(|e| e.to_string())?;
        let status = r.status.unwrap_or_default();
        if status.status == "Successful" { Ok(()) } else { Err(format!("{} {}", status.status, status.reason)) }
    })
    .await;
    wait_for("a new database pod Running on ipr-n1", WAIT, || running(Some(first.clone()))).await;
    let claim = pvcs.get("data").await.unwrap();
    let annotations = claim.metadata.annotations.unwrap_or_default();
    assert!(!annotations.contains_key("stork.libopenstorage.org/restore-in-progress"), "{annotations:?}");
    let state = mock_state(cluster);
    assert!(state.contains(&format!("restoredFrom: {snapshot_id}")), "the driver restored the volume:\n{state}");
}

fn phase_and_node(p: &Pod) -> (String, String) {
    let phase = p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    (phase, node)
}
