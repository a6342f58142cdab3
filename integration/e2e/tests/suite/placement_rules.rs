//! Every placement rule through the real kube-scheduler: each test asserts where the scheduler
//! put the pod (or why it stays Pending, from its events), not what the extender answered.
//!
//! Each test confines its pods to its own node group (see `stork_e2e::placement`). Tests share
//! one cluster and run one at a time (`--test-threads=1`, see `just e2e`).
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};
use stork_e2e::{
    Cluster,
    objects::{bound_claim, scheduled_node, storage_class},
    placement::{
        GroupNode, GroupPod, annotate_node, cordon, failed_scheduling, filler, group_nodes, node_of, topology_served,
    },
    shared, wait_for,
};

#[path = "node_lost.rs"]
mod node_lost;
#[path = "provisioned.rs"]
mod provisioned;

const WAIT: Duration = Duration::from_secs(90);
/// How soon a pod must be placed once what kept it Pending is gone.
const REQUEUE: Duration = Duration::from_secs(60);

/// A driver node entry with its place in the failure domains.
fn located(id: &str, ip: &str, rack: &str, zone: &str, region: &str) -> Value {
    json!({"id": id, "ips": [ip], "status": "Online", "rack": rack, "zone": zone, "region": region})
}

/// Adds driver nodes and volumes to the mock topology; returns once stork serves them.
async fn add_topology(cluster: &Cluster, nodes: Vec<Value>, volumes: Vec<Value>) {
    cluster
        .update_topology(|t| {
            t["nodes"].as_array_mut().expect("nodes").extend(nodes);
            t["volumes"].as_array_mut().expect("volumes").extend(volumes);
        })
        .expect("topology written");
    topology_served(cluster).await;
}

/// Sets the driver status of `nodes`; returns once stork serves the change.
async fn set_status(cluster: &Cluster, nodes: &[&str], status: &str) {
    cluster
        .update_topology(|t| {
            for n in t["nodes"].as_array_mut().expect("nodes") {
                if nodes.iter().any(|id| n["id"] == *id) {
                    n["status"] = json!(status);
                }
            }
        })
        .expect("topology written");
    topology_served(cluster).await;
}

fn online(names: &[&str], ip: u8) -> Vec<Value> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| stork_e2e::objects::driver_node(n, &format!("10.{ip}.0.{}", i + 1), "Online"))
        .collect()
}

fn group(names: &[&str], ip: u8) -> Vec<GroupNode> {
    names.iter().enumerate().map(|(i, n)| GroupNode::new(n, &format!("10.{ip}.0.{}", i + 1))).collect()
}

async fn setup(client: &Client, prefix: &str) -> String {
    storage_class(client).await;
    stork_e2e::namespace(client, prefix).await.expect("namespace")
}

#[tokio::test]
async fn rack_then_zone_then_region_win_when_no_replica_node_has_room() {
    let (cluster, client) = shared().await;
    let g = "loc";
    // One replica node; the others share its rack, its zone, its region, or nothing.
    let layout = [
        ("loc-replica", "r1", "z1", "east"),
        ("loc-rack", "r1", "z1", "east"),
        ("loc-zone", "r2", "z1", "east"),
        ("loc-region", "r3", "z2", "east"),
        ("loc-far", "r4", "z3", "west"),
    ];
    let mut nodes = Vec::new();
    let mut entries = Vec::new();
    for (i, (name, rack, zone, region)) in layout.iter().enumerate() {
        let ip = format!("10.40.0.{}", i + 1);
        entries.push(located(name, &ip, rack, zone, region));
        nodes.push(
            GroupNode::new(name, &ip)
                .label("stork.libopenstorage.org/rack", rack)
                .label("topology.kubernetes.io/zone", zone)
                .label("topology.kubernetes.io/region", region),
        );
    }
    let volumes = (1..=4).map(|i| json!({"id": format!("pv-loc-{i}"), "replicas": ["loc-replica"]})).collect();
    add_topology(cluster, entries, volumes).await;
    group_nodes(&client, g, &nodes).await;
    let ns = setup(&client, g).await;
    cordon(&client, "loc-replica", true).await;

    // Each step cordons the node the previous pod took: the next best level must win.
    for (i, expected) in ["loc-rack", "loc-zone", "loc-region", "loc-far"].into_iter().enumerate() {
        let claim = format!("data-{}", i + 1);
        bound_claim(&client, &ns, &claim, &format!("pv-loc-{}", i + 1)).await;
        let name = format!("p{}", i + 1);
        let pods = GroupPod::new(g, &name).claim(&claim).create(&client, &ns).await;
        assert_eq!(scheduled_node(&pods, &name).await, expected, "{name}: replica node cordoned, best level left");
        cordon(&client, expected, true).await;
    }
}

/// Group `<g>-n1..n3` with volume `pv-<g>` replicated on n1 and n2, bound to claim `data` in a
/// new namespace; returns the namespace.
async fn two_replica_group(cluster: &Cluster, client: &Client, g: &str, ip: u8) -> String {
    let names: Vec<String> = (1..=3).map(|i| format!("{g}-n{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let volume = json!({"id": format!("pv-{g}"), "replicas": [names[0], names[1]]});
    add_topology(cluster, online(&names, ip), vec![volume]).await;
    group_nodes(client, g, &group(&names, ip)).await;
    let ns = setup(client, g).await;
    bound_claim(client, &ns, "data", &format!("pv-{g}")).await;
    ns
}

/// Creates pod `local` of claim `data` with `preferLocalNodeOnly`.
async fn local_only_pod(client: &Client, ns: &str, g: &str) -> Api<Pod> {
    GroupPod::new(g, "local")
        .claim("data")
        .annotate("stork.libopenstorage.org/preferLocalNodeOnly", "true")
        .create(client, ns)
        .await
}

/// The node pod `local` gets within [`REQUEUE`].
async fn placed_after_requeue(pods: &Api<Pod>, what: &str) -> String {
    wait_for(what, REQUEUE, || async { node_of(pods, "local").await.ok_or("still Pending") }).await
}

#[tokio::test]
async fn prefer_local_node_only_stays_pending_until_a_cordoned_replica_node_is_uncordoned() {
    let (cluster, client) = shared().await;
    let ns = two_replica_group(cluster, &client, "plo", 41).await;
    cordon(&client, "plo-n1", true).await;
    cordon(&client, "plo-n2", true).await;

    let pods = local_only_pod(&client, &ns, "plo").await;
    let why = failed_scheduling(&client, &ns, "local", "(preferLocalNodeOnly)", WAIT).await;
    eprintln!("pending: {why}");
    assert_eq!(node_of(&pods, "local").await, None);

    cordon(&client, "plo-n2", false).await;
    assert_eq!(placed_after_requeue(&pods, "the pod placed on the uncordoned replica node").await, "plo-n2");
}

#[tokio::test]
async fn prefer_local_node_only_stays_pending_until_the_driver_on_a_replica_node_is_back() {
    let (cluster, client) = shared().await;
    let ns = two_replica_group(cluster, &client, "plb", 42).await;
    set_status(cluster, &["plb-n1", "plb-n2"], "Offline").await;

    let pods = local_only_pod(&client, &ns, "plb").await;
    let why = failed_scheduling(&client, &ns, "local", "no online node holds a replica of volume pv-plb", WAIT).await;
    eprintln!("pending: {why}");

    // No Kubernetes object changes when the driver comes back: the scheduler must retry on its own.
    set_status(cluster, &["plb-n1"], "Online").await;
    let node = placed_after_requeue(&pods, "the pod placed once the driver is back on a replica node").await;
    assert_eq!(node, "plb-n1");
}

#[tokio::test]
async fn prefer_remote_node_only_keeps_pods_off_replica_nodes_and_prefer_remote_node_only_prefers_to() {
    let (cluster, client) = shared().await;
    let g = "anti";
    let names = ["anti-n1", "anti-n2", "anti-n3"];
    let anti = |id: &str, only: bool| {
        let labels = if only { json!({"stork.libopenstorage.org/preferRemoteNodeOnly": "true"}) } else { json!({}) };
        json!({"id": id, "replicas": ["anti-n1", "anti-n2"], "antiHyperconvergence": true, "labels": labels})
    };
    let volumes = vec![anti("pv-anti-only", true), anti("pv-anti-pref", false), anti("pv-anti-pref2", false)];
    add_topology(cluster, online(&names, 43), volumes).await;
    group_nodes(&client, g, &group(&names, 43)).await;
    let ns = setup(&client, g).await;
    for (claim, pv) in [("only", "pv-anti-only"), ("pref", "pv-anti-pref"), ("pref2", "pv-anti-pref2")] {
        bound_claim(&client, &ns, claim, pv).await;
    }

    let pods = GroupPod::new(g, "remote-only").claim("only").create(&client, &ns).await;
    assert_eq!(scheduled_node(&pods, "remote-only").await, "anti-n3", "the one node without a replica");
    let pods = GroupPod::new(g, "remote-pref").claim("pref").create(&client, &ns).await;
    assert_eq!(scheduled_node(&pods, "remote-pref").await, "anti-n3", "preferRemoteNode scores non-replica nodes up");

    // Without a non-replica node: preferRemoteNodeOnly waits, preferRemoteNode settles for a replica node.
    cordon(&client, "anti-n3", true).await;
    GroupPod::new(g, "remote-only-2").claim("only").create(&client, &ns).await;
    let why = failed_scheduling(&client, &ns, "remote-only-2", "(preferRemoteNodeOnly)", WAIT).await;
    eprintln!("pending: {why}");
    GroupPod::new(g, "remote-pref-2").claim("pref2").create(&client, &ns).await;
    let node = scheduled_node(&pods, "remote-pref-2").await;
    assert!(["anti-n1", "anti-n2"].contains(&node.as_str()), "remote-pref-2 on {node}");
    assert_eq!(node_of(&pods, "remote-only-2").await, None, "remote-only-2 must stay Pending");
    cordon(&client, "anti-n3", false).await;
}

#[tokio::test]
async fn disable_hyperconvergence_and_skip_scheduler_scoring_leave_placement_to_the_default_plugins() {
    let (cluster, client) = shared().await;
    let g = "neutral";
    let names = ["neutral-n1", "neutral-n2"];
    let volumes =
        ["pv-neutral-1", "pv-neutral-2", "pv-neutral-3"].map(|id| json!({"id": id, "replicas": ["neutral-n1"]}));
    add_topology(cluster, online(&names, 44), volumes.to_vec()).await;
    let nodes: Vec<GroupNode> = group(&names, 44).into_iter().map(GroupNode::small).collect();
    group_nodes(&client, g, &nodes).await;
    let ns = setup(&client, g).await;
    // The replica node is 3/4 busy, so the default plugins prefer the other one.
    filler(&client, &ns, "neutral-n1", "3").await;
    for i in 1..=3 {
        bound_claim(&client, &ns, &format!("data-{i}"), &format!("pv-neutral-{i}")).await;
    }

    // Annotated up front: by the time its pod comes, two pods have been scheduled since.
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let patch = json!({"metadata": {"annotations": {"stork.libopenstorage.org/skipSchedulerScoring": "true"}}});
    claims.patch("data-3", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("annotate claim");

    let pods = GroupPod::new(g, "hyper").claim("data-1").create(&client, &ns).await;
    assert_eq!(scheduled_node(&pods, "hyper").await, "neutral-n1", "locality outweighs a busy node");
    GroupPod::new(g, "disabled")
        .claim("data-2")
        .annotate("stork.libopenstorage.org/disableHyperconvergence", "true")
        .create(&client, &ns)
        .await;
    assert_eq!(scheduled_node(&pods, "disabled").await, "neutral-n2", "no locality: the idle node wins");
    GroupPod::new(g, "skipped").claim("data-3").create(&client, &ns).await;
    assert_eq!(scheduled_node(&pods, "skipped").await, "neutral-n2", "a skipped volume gives no locality");
}

#[tokio::test]
async fn a_node_annotated_unschedulable_for_storage_gets_no_driver_pods_and_says_why() {
    let (cluster, client) = shared().await;
    let g = "unsched";
    let names = ["unsched-n1", "unsched-n2"];
    let volumes = vec![json!({"id": "pv-unsched", "replicas": ["unsched-n1", "unsched-n2"]})];
    add_topology(cluster, online(&names, 45), volumes).await;
    group_nodes(&client, g, &group(&names, 45)).await;
    let ns = setup(&client, g).await;
    bound_claim(&client, &ns, "data", "pv-unsched").await;
    let knob = "operator.libopenstorage.org/unschedulable";
    annotate_node(&client, "unsched-n1", knob, Some("true")).await;

    let pods = GroupPod::new(g, "first").claim("data").create(&client, &ns).await;
    assert_eq!(scheduled_node(&pods, "first").await, "unsched-n2");
    annotate_node(&client, "unsched-n2", knob, Some("true")).await;
    GroupPod::new(g, "second").claim("data").create(&client, &ns).await;
    let why = failed_scheduling(&client, &ns, "second", "unschedulable for storage", WAIT).await;
    eprintln!("pending: {why}");
    // Pods without driver volumes are not affected.
    GroupPod::new(g, "stateless").create(&client, &ns).await;
    assert!(names.contains(&scheduled_node(&pods, "stateless").await.as_str()));
    annotate_node(&client, "unsched-n1", knob, None).await;
    assert_eq!(
        wait_for("second placed once n1 is schedulable again", REQUEUE, || async {
            node_of(&pods, "second").await.ok_or("still Pending")
        })
        .await,
        "unsched-n1"
    );
}
