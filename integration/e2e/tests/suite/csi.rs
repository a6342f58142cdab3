//! The `csi` driver on the real control plane, fed only what a real CSI deployment puts into
//! Kubernetes: a CSIDriver, a CSINode per node, a node-plugin DaemonSet's pods (run by KWOK),
//! PVs with node affinity or a replica annotation. Pods land next to their volume; a node whose
//! plugin breaks is filtered out and, after the backoff, its pods fail over; claims of a driver
//! stork was not told about are left alone.
//!
//! The harness's stork is restarted with `--driver csi` for these tests and put back on the mock
//! driver afterwards, even when a test fails ([`CsiStork`]).

use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment},
    core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Pod},
    storage::v1::{CSIDriver, CSINode, StorageClass},
};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use stork_e2e::{
    Cluster, kwok_nodes, namespace,
    objects::{WAIT, create, scheduled_node},
    shared, wait_for,
};

const DRIVER: &str = "e2e.csi.stork.dev";
const OTHER_DRIVER: &str = "other.csi.example.com";
const PLUGIN_NS: &str = "csi-plugins";
const NODES: [(&str, &str); 3] = [("csi-n1", "10.7.0.1"), ("csi-n2", "10.7.0.2"), ("csi-n3", "10.7.0.3")];

/// stork on the csi driver while alive; the mock driver again when dropped.
struct CsiStork(&'static Cluster);

impl CsiStork {
    fn start(cluster: &'static Cluster) -> Self {
        cluster.stop_stork().expect("stop the mock-driver stork");
        let guard = CsiStork(cluster);
        let plugin = format!("{PLUGIN_NS}/app=csi-node");
        cluster
            .start_stork_with(&[
                "--driver=csi",
                &format!("--csi-driver={DRIVER}"),
                &format!("--csi-node-plugin={plugin}"),
                "--snapshot-controllers=false",
                "--monitor-interval=2s",
                "--monitor-allow-short-interval",
                "--monitor-backoff=1s",
                "--monitor-backoff-checks=3",
                "--monitor-batch-interval=1s",
            ])
            .expect("stork with --driver csi");
        guard
    }
}

impl Drop for CsiStork {
    fn drop(&mut self) {
        let _ = self.0.stop_stork();
        self.0.start_stork().expect("stork back on the mock driver");
    }
}

/// The objects a CSI deployment creates: CSIDriver, CSINodes, the node-plugin DaemonSet (on
/// the labelled KWOK nodes), a StorageClass; waits until a plugin pod runs on every node.
async fn csi_deployment(client: &Client) {
    kwok_nodes(client, &NODES).await.unwrap();
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    for (name, _) in NODES {
        let label = json!({"metadata": {"labels": {"e2e-csi": "true"}}});
        nodes.patch(name, &PatchParams::default(), &Patch::Merge(&label)).await.unwrap();
        create(
            &Api::<CSINode>::all(client.clone()),
            json!({"metadata": {"name": name}, "spec": {"drivers": [
                {"name": DRIVER, "nodeID": name, "topologyKeys": ["topology.e2e.csi.stork.dev/zone"]}
            ]}}),
        )
        .await;
    }
    create(
        &Api::<CSIDriver>::all(client.clone()),
        json!({"metadata": {"name": DRIVER}, "spec": {"attachRequired": false}}),
    )
    .await;
    create(&Api::<Namespace>::all(client.clone()), json!({"metadata": {"name": PLUGIN_NS}})).await;
    create(
        &Api::<DaemonSet>::namespaced(client.clone(), PLUGIN_NS),
        json!({"metadata": {"name": "csi-node"}, "spec": {
            "selector": {"matchLabels": {"app": "csi-node"}},
            "template": {"metadata": {"labels": {"app": "csi-node"}}, "spec": {
                "nodeSelector": {"e2e-csi": "true"},
                "tolerations": [{"operator": "Exists"}],
                "containers": [{"name": "plugin", "image": "fake"}]}}}}),
    )
    .await;
    for (provisioner, name) in [(DRIVER, "csi-sc"), (OTHER_DRIVER, "other-sc")] {
        create(
            &Api::<StorageClass>::all(client.clone()),
            json!({"metadata": {"name": name}, "provisioner": provisioner, "volumeBindingMode": "Immediate"}),
        )
        .await;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), PLUGIN_NS);
    wait_for("a Ready node-plugin pod on every csi node", WAIT, || async {
        let list = pods.list(&ListParams::default().labels("app=csi-node")).await.map_err(|e| e.to_string())?;
        let ready: Vec<String> = list.items.iter().filter(|p| is_ready(p)).filter_map(node_of).collect();
        if NODES.iter().all(|(n, _)| ready.iter().any(|r| r == n)) { Ok(()) } else { Err(format!("{ready:?}")) }
    })
    .await;
}

fn is_ready(p: &Pod) -> bool {
    let conditions = p.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref().and_then(|s| s.node_name.clone())
}

/// A CSI PV of `driver` (with `affinity` hostnames or a `replica-nodes` annotation) and a claim
/// bound to it by the real PV controller.
async fn csi_claim(client: &Client, ns: &str, claim: &str, driver: &str, placement: Value) {
    let class = if driver == DRIVER { "csi-sc" } else { "other-sc" };
    let pv_name = format!("pv-{ns}-{claim}");
    let mut pv = json!({
        "metadata": {"name": pv_name},
        "spec": {"storageClassName": class, "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "claimRef": {"namespace": ns, "name": claim},
                 "csi": {"driver": driver, "volumeHandle": pv_name}}
    });
    if let Some(hosts) = placement.get("affinity") {
        pv["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": hosts}]}]}});
    }
    if let Some(replicas) = placement.get("replicas") {
        pv["metadata"]["annotations"] = json!({"stork.libopenstorage.org/replica-nodes": replicas});
    }
    create(&Api::<PersistentVolume>::all(client.clone()), pv).await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    create(
        &pvcs,
        json!({"metadata": {"name": claim}, "spec": {"storageClassName": class, "volumeName": pv_name,
               "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    wait_for(&format!("pvc {ns}/{claim} Bound"), WAIT, || async {
        let phase = pvcs.get(claim).await.map_err(|e| e.to_string())?.status.and_then(|s| s.phase);
        if phase.as_deref() == Some("Bound") { Ok(()) } else { Err(phase) }
    })
    .await;
}

/// A bare pod using `claim`, without `schedulerName` (the webhook decides).
async fn pod_using(client: &Client, ns: &str, name: &str, claim: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {
        "containers": [{"name": "app", "image": "fake"}],
        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.expect("pod")
}

#[tokio::test]
async fn with_the_csi_driver_pods_follow_their_volume_and_leave_a_node_whose_plugin_breaks() {
    let (cluster, client) = shared().await;
    csi_deployment(&client).await;
    let _stork = CsiStork::start(cluster);
    let ns = namespace(&client, "csi").await.unwrap();

    // Locality from the replica annotation (only stork steers this: the PV has no affinity).
    csi_claim(&client, &ns, "replicated", DRIVER, json!({"replicas": "csi-n3"})).await;
    let created = pod_using(&client, &ns, "follows-annotation", "replicated").await;
    assert_eq!(created.spec.unwrap().scheduler_name.as_deref(), Some("stork"), "the webhook routed it");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    assert_eq!(scheduled_node(&pods, "follows-annotation").await, "csi-n3");
    // Locality from hostname node affinity.
    csi_claim(&client, &ns, "pinned", DRIVER, json!({"affinity": ["csi-n2"]})).await;
    pod_using(&client, &ns, "follows-affinity", "pinned").await;
    assert_eq!(scheduled_node(&pods, "follows-affinity").await, "csi-n2");

    // A Deployment on a volume replicated on csi-n1 and csi-n3; then the node plugin on the
    // node its pod runs on crash-loops.
    csi_claim(&client, &ns, "app-data", DRIVER, json!({"replicas": "csi-n1,csi-n3"})).await;
    create(
        &Api::<Deployment>::namespaced(client.clone(), &ns),
        json!({"metadata": {"name": "app"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "app"}},
               "template": {"metadata": {"labels": {"app": "app"}}, "spec": {
                   "containers": [{"name": "app", "image": "fake"}],
                   "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "app-data"}}]}}}}),
    )
    .await;
    let app_pod = || async {
        let list = pods.list(&ListParams::default().labels("app=app")).await.map_err(|e| e.to_string())?;
        let running: Vec<(String, String)> = list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
            .filter_map(|p| Some((p.metadata.uid.clone()?, node_of(p)?)))
            .collect();
        running.into_iter().next().ok_or_else(|| "no running app pod".to_string())
    };
    let (first_uid, broken) = wait_for("the app pod running", WAIT, app_pod).await;
    assert!(broken == "csi-n1" || broken == "csi-n3", "placed on a replica node, not {broken}");
    let healthy = if broken == "csi-n1" { "csi-n3" } else { "csi-n1" };
    break_plugin_on(&client, &broken).await;

    // Filtered: a new pod of a volume replicated on the broken node and csi-n2 goes to csi-n2.
    csi_claim(&client, &ns, "both", DRIVER, json!({"replicas": format!("{broken},csi-n2")})).await;
    pod_using(&client, &ns, "avoids-broken-plugin", "both").await;
    assert_eq!(scheduled_node(&pods, "avoids-broken-plugin").await, "csi-n2");
    // Failed over after the backoff: the app pod is replaced by one on the other replica node.
    let (uid, node) = wait_for("the app pod failed over to the healthy replica", Duration::from_secs(120), || async {
        let (uid, node) = app_pod().await?;
        if uid != first_uid && node == healthy { Ok((uid, node)) } else { Err(format!("{uid} on {node}")) }
    })
    .await;
    assert_ne!((uid.as_str(), node.as_str()), (first_uid.as_str(), broken.as_str()));
}

#[tokio::test]
async fn claims_of_a_csi_driver_stork_was_not_told_about_are_left_alone() {
    let (cluster, client) = shared().await;
    csi_deployment(&client).await;
    let _stork = CsiStork::start(cluster);
    let ns = namespace(&client, "csi-other").await.unwrap();
    csi_claim(&client, &ns, "foreign", OTHER_DRIVER, json!({"replicas": "csi-n3"})).await;
    let created = pod_using(&client, &ns, "untouched", "foreign").await;
    assert_eq!(created.spec.unwrap().scheduler_name.as_deref(), Some("default-scheduler"), "not mutated");
    // Sent to stork by hand, it is scheduled as if it had no driver volume at all.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "by-hand"}, "spec": {
        "schedulerName": "stork", "containers": [{"name": "app", "image": "fake"}],
        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "foreign"}}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    scheduled_node(&pods, "by-hand").await;
}

/// Makes the node-plugin pod on `node` crash-loop: Running, not Ready, its container waiting
/// in CrashLoopBackOff (what the kubelet reports for a plugin that keeps dying).
async fn break_plugin_on(client: &Client, node: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), PLUGIN_NS);
    let list = pods.list(&ListParams::default().labels("app=csi-node")).await.unwrap();
    let pod = list.items.into_iter().find(|p| node_of(p).as_deref() == Some(node)).expect("plugin pod on the node");
    let name = pod.metadata.name.clone().unwrap();
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "False"}],
        "containerStatuses": [{"name": "plugin", "image": "fake", "imageID": "", "ready": false, "restartCount": 7,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    wait_for(&format!("plugin pod {name} reported not Ready"), WAIT, || async {
        let p = pods.get(&name).await.map_err(|e| e.to_string())?;
        if is_ready(&p) { Err("still Ready (KWOK put it back?)".to_string()) } else { Ok(()) }
    })
    .await;
}
