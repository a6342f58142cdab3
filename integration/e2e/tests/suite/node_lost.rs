//! NodeLost: a node whose kubelet stops answering, with a driver pod on it. The control plane
//! marks the node unreachable and evicts the pod, which then hangs in Terminating because no
//! kubelet confirms the deletion. stork's monitor force-deletes it, so its StatefulSet or
//! Deployment can start a replacement, and removes the driver's VolumeAttachment from that node,
//! and only the driver's.

use std::time::Duration;

use k8s_openapi::api::{
    core::v1::{Node, PersistentVolume},
    storage::v1::VolumeAttachment,
};
use kube::{Api, Client};
use serde_json::json;
use stork_e2e::{
    objects::{PROVISIONER, bound_claim, create, scheduled_node},
    placement::{GroupPod, group_nodes, partition},
    replica::Replica,
    shared, wait_for,
};

use super::{WAIT, add_topology, group, online, setup};

/// The node lifecycle controller's grace period (50 s by default), its 5 s monitor period, the
/// eviction and stork's 2 s monitor interval, with room to spare on a loaded machine.
const LOST: Duration = Duration::from_secs(180);

#[tokio::test]
async fn a_lost_node_s_terminating_pod_is_force_deleted_and_only_the_driver_s_attachment_removed() {
    let (cluster, client) = shared().await;
    let g = "lost";
    let names = ["lost-n1", "lost-n2"];
    add_topology(cluster, online(&names, 49), vec![json!({"id": "pv-lost", "replicas": ["lost-n1"]})]).await;
    group_nodes(&client, g, &group(&names, 49)).await;
    let ns = setup(&client, g).await;
    bound_claim(&client, &ns, "data", "pv-lost").await;
    let monitor = Replica::start(cluster, "stork-lost", &monitor_flags()).expect("monitor replica");

    // Evicted as soon as its node is unreachable, instead of after the default 300 s.
    let toleration = json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 0}]);
    let pods = GroupPod::new(g, "stranded").claim("data").spec("tolerations", toleration).create(&client, &ns).await;
    assert_eq!(scheduled_node(&pods, "stranded").await, "lost-n1");
    let uid = pods.get("stranded").await.expect("pod").metadata.uid.expect("uid");
    attachments(&client).await;

    partition(&client, "lost-n1").await;
    wait_for("the stranded pod force-deleted", LOST, || async {
        match pods.get_opt("stranded").await.map_err(|e| e.to_string())? {
            Some(p) if p.metadata.uid.as_deref() == Some(uid.as_str()) => Err(format!(
                "still there: deletionTimestamp={:?}, node taints={:?}",
                p.metadata.deletion_timestamp.map(|t| t.0.to_string()),
                taints(&client, "lost-n1").await
            )),
            _ => Ok(()),
        }
    })
    .await;
    let vas: Api<VolumeAttachment> = Api::all(client.clone());
    wait_for("the driver's attachment removed", WAIT, || async {
        match vas.get_opt("lost-mock").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err("lost-mock still there".to_string()),
        }
    })
    .await;
    assert!(vas.get_opt("lost-other").await.expect("get").is_some(), "another driver's attachment must stay");
    let deleted = monitor.metric("stork_pods_rescheduled_total");
    assert_eq!(deleted, 1.0, "the monitor replica force-deleted exactly the stranded pod");

    let _ = vas.delete("lost-other", &Default::default()).await;
    let _ = Api::<Node>::all(client.clone()).delete("lost-n1", &Default::default()).await;
}

/// A replica of stork that runs only the health monitor, on a short interval.
fn monitor_flags() -> Vec<&'static str> {
    vec![
        "--monitor-interval=2s",
        "--monitor-allow-short-interval",
        "--leader-lease=stork-lost-monitor",
        "--leader-lease-duration=6s",
        "--leader-renew-deadline=4s",
        "--leader-retry-period=1s",
        "--snapshot-controllers=false",
    ]
}

/// Two VolumeAttachments on lost-n1: the mock driver's (`lost-mock`) and another driver's
/// (`lost-other`).
async fn attachments(client: &Client) {
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let other_pv = json!({
        "metadata": {"name": "pv-lost-other"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "csi": {"driver": "other.csi.example.com", "volumeHandle": "x"}}
    });
    create(&pvs, other_pv).await;
    let vas: Api<VolumeAttachment> = Api::all(client.clone());
    for (name, attacher, pv) in
        [("lost-mock", PROVISIONER, "pv-lost"), ("lost-other", "other.csi.example.com", "pv-lost-other")]
    {
        let va = json!({"metadata": {"name": name},
                        "spec": {"attacher": attacher, "nodeName": "lost-n1", "source": {"persistentVolumeName": pv}}});
        create(&vas, va).await;
    }
}

/// The node's taint keys, for the timeout report.
async fn taints(client: &Client, node: &str) -> Vec<String> {
    let node = Api::<Node>::all(client.clone()).get_opt(node).await.ok().flatten();
    let taints = node.and_then(|n| n.spec).and_then(|s| s.taints).unwrap_or_default();
    taints.into_iter().map(|t| format!("{}:{}", t.key, t.effect)).collect()
}
