//! The `openstorage` (Portworx) driver against the real OpenStorage SDK server (`osd-harness`:
//! the upstream gRPC server, cluster manager and fake backend; only its node list and runtime
//! replica sets are the harness's). Nodes, statuses and replica sets are read through the SDK,
//! the real kube-scheduler places pods with stork's scores, the health monitor fails pods over
//! from a node the SDK reports offline, snapshots are SDK snapshots, and an SDK that goes away
//! or refuses stork's token costs no pod and no node.
//!
//! The harness's stork is restarted with `--driver portworx` (health monitor on, short timings)
//! for each test and put back on the mock driver afterwards, even when a test fails.

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{PersistentVolume, PersistentVolumeClaim, Pod},
    storage::v1::StorageClass,
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams},
};
use serde_json::{Value, json};
use stork::model::crd::{VolumeSnapshot, VolumeSnapshotData};
use stork_e2e::{
    Cluster, delete_nodes, http_get_full, kwok_nodes, namespace,
    objects::{WAIT, bound_claim_with, create, pod, scheduled_node},
    osd::{OsdNode, OsdOptions, OsdServer},
    shared, wait_for,
};

// The SDK killed mid-run and SDK security (`openstorage::faults::`).
#[path = "openstorage_faults.rs"]
mod faults;

const CLASS: &str = "px-sc";

/// stork on the openstorage driver while alive; the mock driver again when dropped.
pub(crate) struct PxStork(&'static Cluster);

impl PxStork {
    pub(crate) fn start(cluster: &'static Cluster, endpoint: &str, extra: &[&str]) -> Self {
        cluster.stop_stork().expect("stop the mock-driver stork");
        let guard = PxStork(cluster);
        let endpoint = format!("--osd-endpoint={endpoint}");
        let mut args = vec![
            "--driver=portworx",
            &endpoint,
            "--osd-poll-interval=1s",
            "--osd-timeout=2s",
            "--monitor-interval=2s",
            "--monitor-allow-short-interval",
            "--monitor-backoff=1s",
            "--monitor-backoff-checks=3",
            "--monitor-batch-interval=1s",
        ];
        args.extend_from_slice(extra);
        cluster.start_stork_with(&args).expect("stork with --driver portworx");
        guard
    }

    pub(crate) fn readyz(&self) -> String {
        http_get_full(self.0.info.stork_admin_port, "/readyz").unwrap_or_else(|e| e.to_string())
    }

    pub(crate) fn metrics(&self) -> String {
        http_get_full(self.0.info.stork_admin_port, "/metrics").unwrap_or_default()
    }

    /// `/explain` of a pod: node name → (kept, score).
    pub(crate) fn explain(&self, ns: &str, pod: &str) -> Result<Vec<(String, bool, Option<i64>)>, String> {
        let raw = http_get_full(self.0.info.stork_admin_port, &format!("/explain/pods/{ns}/{pod}"))
            .map_err(|e| e.to_string())?;
        let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        let e: Value = serde_json::from_str(body).map_err(|e| format!("{e}: {raw}"))?;
        let nodes = e["nodes"].as_array().ok_or_else(|| raw.clone())?;
        Ok(nodes
            .iter()
            .map(|n| (n["name"].as_str().unwrap_or("").to_string(), n["kept"] == true, n["score"].as_i64()))
            .collect())
    }
}

impl Drop for PxStork {
    fn drop(&mut self) {
        let _ = self.0.stop_stork();
        self.0.start_stork().expect("stork back on the mock driver");
    }
}

/// Five KWOK nodes `<p>-n1..n5`; the SDK knows the first three (`px-<p>-1..3`).
pub(crate) async fn nodes(client: &Client, server: &OsdServer, p: &str, ip: u8) -> Vec<String> {
    let names: Vec<String> = (1..=5).map(|i| format!("{p}-n{i}")).collect();
    let ips: Vec<String> = (1..=5).map(|i| format!("10.{ip}.0.{i}")).collect();
    let pairs: Vec<(&str, &str)> = names.iter().map(String::as_str).zip(ips.iter().map(String::as_str)).collect();
    kwok_nodes(client, &pairs).await.unwrap();
    server.set_nodes(&sdk_nodes(p, &names, &ips)).unwrap();
    names
}

pub(crate) fn sdk_nodes(p: &str, names: &[String], ips: &[String]) -> Vec<OsdNode> {
    (0..3).map(|i| OsdNode::new(&format!("px-{p}-{}", i + 1), &names[i], &ips[i])).collect()
}

/// Volumes V1 on px-1+px-2 and V2 on px-2+px-3, made through the SDK; claims `data-1` (CSI PV,
/// handle = the volume's id, or its name with `by_name`) and `data-2` (in-tree Portworx PV,
/// by name) bound to them in a new namespace; returns the namespace and V1's id.
pub(crate) async fn volumes(client: &Client, server: &OsdServer, p: &str, by_name: bool) -> (String, String) {
    let v1 = server.create_volume(&format!("{p}-v1"), &[&format!("px-{p}-1"), &format!("px-{p}-2")]).await.unwrap();
    server.create_volume(&format!("{p}-v2"), &[&format!("px-{p}-2"), &format!("px-{p}-3")]).await.unwrap();
    create(
        &Api::<StorageClass>::all(client.clone()),
        json!({"metadata": {"name": CLASS}, "provisioner": "pxd.portworx.com", "volumeBindingMode": "Immediate"}),
    )
    .await;
    let ns = namespace(client, p).await.unwrap();
    let handle = if by_name { format!("{p}-v1") } else { v1.clone() };
    let csi = json!({"csi": {"driver": "pxd.portworx.com", "volumeHandle": handle}});
    bound_claim_with(client, &ns, "data-1", &format!("pv-{p}-v1"), CLASS, csi).await;
    let in_tree = json!({"portworxVolume": {"volumeID": format!("{p}-v2")}});
    bound_claim_with(client, &ns, "data-2", &format!("pv-{p}-v2"), CLASS, in_tree).await;
    (ns, v1)
}

/// Waits until `/explain` of the pod shows exactly these kept nodes and scores.
pub(crate) async fn explained(stork: &PxStork, ns: &str, pod: &str, want: &[(&str, i64)]) {
    let want: Vec<(String, Option<i64>)> = want.iter().map(|(n, s)| (n.to_string(), Some(*s))).collect();
    wait_for(&format!("explain {ns}/{pod} keeping and scoring {want:?}"), WAIT, || async {
        let kept: Vec<(String, Option<i64>)> =
            stork.explain(ns, pod)?.into_iter().filter(|(_, k, _)| *k).map(|(n, _, s)| (n, s)).collect();
        if kept == want { Ok(()) } else { Err(format!("{kept:?}")) }
    })
    .await;
}

/// A one-replica Deployment `db` using both claims, left to the webhook to route to stork.
pub(crate) async fn deployment(client: &Client, ns: &str) -> Api<Pod> {
    let volumes: Vec<Value> =
        ["data-1", "data-2"].iter().map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}})).collect();
    create(
        &Api::<Deployment>::namespaced(client.clone(), ns),
        json!({"metadata": {"name": "db"}, "spec": {
            "replicas": 1, "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {
                "containers": [{"name": "db", "image": "fake"}], "volumes": volumes}}}}),
    )
    .await;
    Api::namespaced(client.clone(), ns)
}

/// The running `db` pod: (name, uid, node, scheduler).
pub(crate) async fn running_db(pods: &Api<Pod>) -> (String, String, String, String) {
    wait_for("one db pod Running", WAIT, || async {
        let list = pods.list(&ListParams::default().labels("app=db")).await.map_err(|e| e.to_string())?;
        let live: Vec<&Pod> = list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
        match live.as_slice() {
            [p] if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") => {
                let spec = p.spec.clone().unwrap_or_default();
                Ok((
                    p.metadata.name.clone().unwrap_or_default(),
                    p.metadata.uid.clone().unwrap_or_default(),
                    spec.node_name.unwrap_or_default(),
                    spec.scheduler_name.unwrap_or_default(),
                ))
            }
            other => Err(format!("{} live pods", other.len())),
        }
    })
    .await
}

pub(crate) async fn cleanup(client: &Client, ns: &str, names: &[String]) {
    let _ =
        Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()).delete(ns, &DeleteParams::default()).await;
    delete_nodes(client, &names.iter().map(String::as_str).collect::<Vec<_>>()).await;
}

/// One test's world: the real SDK server, stork on it, five nodes (the SDK knows three) and
/// the two claims of [`volumes`] in a new namespace.
pub(crate) struct PxWorld {
    pub(crate) client: Client,
    pub(crate) server: OsdServer,
    pub(crate) stork: PxStork,
    pub(crate) names: Vec<String>,
    pub(crate) ns: String,
    /// V1's SDK id.
    pub(crate) v1: String,
}

impl PxWorld {
    /// Builds it for prefix `p` (node IPs `10.<ip>.0.*`); `by_name` as in [`volumes`].
    pub(crate) async fn new(p: &str, ip: u8, by_name: bool) -> Self {
        let (cluster, client) = shared().await;
        let server = OsdServer::start(OsdOptions::default()).expect("osd-harness");
        let stork = PxStork::start(cluster, &server.endpoint, &[]);
        let names = nodes(&client, &server, p, ip).await;
        let (ns, v1) = volumes(&client, &server, p, by_name).await;
        Self { client, server, stork, names, ns, v1 }
    }

    /// Puts stork back on the mock driver and removes the namespace and nodes.
    pub(crate) async fn finish(self) {
        let Self { client, server, stork, names, ns, .. } = self;
        drop(stork);
        drop(server);
        cleanup(&client, &ns, &names).await;
    }
}

#[tokio::test]
async fn the_seed_scenario_through_the_sdk_scores_n2_highest_and_the_scheduler_places_the_pod_there() {
    let w = PxWorld::new("pxs", 41, false).await;
    let (client, server, stork, ns) = (&w.client, &w.server, &w.stork, w.ns.as_str());

    let pods = pod(client, ns, "p1", &["data-1", "data-2"]).await;
    assert_eq!(scheduled_node(&pods, "p1").await, "pxs-n2", "V1 on n1+n2 and V2 on n2+n3 put P1 on n2");
    // Filter keeps the three driver nodes; prioritize gives 100 per local replica.
    explained(stork, ns, "p1", &[("pxs-n1", 100), ("pxs-n2", 200), ("pxs-n3", 100)]).await;

    // Storage down on n2: still a candidate, at Stork's StorageDown score (25 per replica).
    server.set_status("px-pxs-2", "STATUS_STORAGE_DOWN").unwrap();
    explained(stork, ns, "p1", &[("pxs-n1", 100), ("pxs-n2", 50), ("pxs-n3", 100)]).await;
    let pods = pod(client, ns, "p2", &["data-1", "data-2"]).await;
    assert_ne!(scheduled_node(&pods, "p2").await, "pxs-n2", "a node with its storage down is not preferred");
    w.finish().await;
}

#[tokio::test]
async fn a_node_the_sdk_reports_offline_is_filtered_and_the_health_monitor_fails_its_pod_over() {
    let w = PxWorld::new("pxo", 42, false).await;
    let (client, server, stork, ns) = (&w.client, &w.server, &w.stork, w.ns.as_str());
    let pods = deployment(client, ns).await;
    let (name, uid, node, scheduler) = running_db(&pods).await;
    assert_eq!((node.as_str(), scheduler.as_str()), ("pxo-n2", "stork"), "the webhook routed the pod to stork");

    server.set_status("px-pxo-2", "STATUS_OFFLINE").unwrap();
    let (new_name, new_uid, new_node, _) = wait_for("the db pod failed over off pxo-n2", WAIT, || async {
        let now = running_db(&pods).await;
        if now.1 != uid { Ok(now) } else { Err(format!("{name} still on {node}")) }
    })
    .await;
    assert!(["pxo-n1", "pxo-n3"].contains(&new_node.as_str()), "{new_name} went to {new_node}");
    explained(stork, ns, &new_name, &[("pxo-n1", 100), ("pxo-n3", 100)]).await;
    assert!(stork.metrics().contains("stork_pods_rescheduled_total 1"), "{}", stork.metrics());
    assert_ne!(new_uid, uid);
    w.finish().await;
}

#[tokio::test]
async fn a_snapshot_of_a_portworx_claim_is_an_sdk_snapshot_and_a_stork_snapshot_sc_claim_restores_from_it() {
    let w = PxWorld::new("pxn", 43, false).await;
    let (client, server, ns) = (&w.client, &w.server, w.ns.as_str());
    let v1 = w.v1.clone();

    let snaps: Api<VolumeSnapshot> = Api::namespaced(client.clone(), ns);
    create(
        &snaps,
        json!({"apiVersion": "volumesnapshot.external-storage.k8s.io/v1", "kind": "VolumeSnapshot",
               "metadata": {"name": "nightly"}, "spec": {"persistentVolumeClaimName": "data-1"}}),
    )
    .await;
    let data_name = wait_for("snapshot nightly Ready", WAIT, || async {
        let s = snaps.get("nightly").await.map_err(|e| e.to_string())?;
        let ready = s.status.as_ref().is_some_and(|st| st.is_ready()) && !s.spec.snapshot_data_name.is_empty();
        if ready { Ok(s.spec.snapshot_data_name) } else { Err(format!("{:?}", s.status)) }
    })
    .await;
    let data = Api::<VolumeSnapshotData>::all(client.clone()).get(&data_name).await.unwrap();
    let source = data.spec.driver_snapshot.expect("driverSnapshot");
    assert_eq!((source.driver.as_str(), source.volume_id.as_str()), ("openstorage", v1.as_str()));
    let in_sdk = server.snapshots_of(&v1).await.unwrap();
    assert_eq!(in_sdk, std::slice::from_ref(&source.snapshot_id), "the SDK lists the snapshot under stork's id");

    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    create(
        &pvcs,
        json!({"metadata": {"name": "restored", "annotations": {"snapshot.alpha.kubernetes.io/snapshot": "nightly"}},
               "spec": {"storageClassName": "stork-snapshot-sc", "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    let pv_name = wait_for("the restored claim Bound", WAIT, || async {
        let c = pvcs.get("restored").await.map_err(|e| e.to_string())?;
        let phase = c.status.and_then(|s| s.phase).unwrap_or_default();
        let pv = c.spec.and_then(|s| s.volume_name).unwrap_or_default();
        if phase == "Bound" { Ok(pv) } else { Err(phase) }
    })
    .await;
    let pv = Api::<PersistentVolume>::all(client.clone()).get(&pv_name).await.unwrap();
    let csi = pv.spec.and_then(|s| s.csi).expect("a CSI PV");
    assert_eq!(csi.driver, "pxd.portworx.com");
    let (_, _, parent) = server.volume(&csi.volume_handle).await.unwrap();
    let (snapshot_sdk_id, _, _) = server.volume(&source.snapshot_id).await.unwrap();
    assert_eq!(parent, snapshot_sdk_id, "the restored volume is a clone of the SDK snapshot");
    let pods = pod(client, ns, "reader", &["restored"]).await;
    let node = scheduled_node(&pods, "reader").await;
    assert!(["pxn-n1", "pxn-n2"].contains(&node.as_str()), "next to the restored replicas, on {node}");

    snaps.delete("nightly", &DeleteParams::default()).await.unwrap();
    wait_for("the SDK snapshot deleted with the VolumeSnapshot", WAIT, || async {
        let left = server.snapshots_of(&v1).await.map_err(|e| e.to_string())?;
        // The clone made for the restore has the snapshot as its parent, not V1.
        if left.is_empty() { Ok(()) } else { Err(format!("{left:?}")) }
    })
    .await;
    w.finish().await;
}
