//! Volumes provisioned on demand (a WaitForFirstConsumer class and the mock provisioner, see
//! `stork_e2e::provisioner`) through the real kube-scheduler: a StatefulSet scaled down and up,
//! a rolling restart, and a pod's generic ephemeral volume. Each pod must run next to a replica
//! of its volume.

use std::time::Duration;

use k8s_openapi::api::{apps::v1::StatefulSet, core::v1::Pod};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::{Value, json};
use stork_e2e::{
    Cluster,
    objects::{PROVISIONER, create, scheduled_node},
    placement::{GroupPod, group_nodes},
    provisioner, shared, wait_for,
};

use super::{WAIT, add_topology, group, online, setup};

/// A StatefulSet of 3 on nodes `<g>-n1..n4` whose claims come from `volumeClaimTemplates` of
/// `class`, with its pods confined to the group.
fn stateful_set(g: &str, class: &str) -> Value {
    let template = GroupPod::new(g, "unused").json().clone();
    json!({
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 3, "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": template["spec"]},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "storageClassName": class, "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    })
}

/// Waits until `n` pods of `ns` run (none terminating), then checks each sits on a node holding
/// a replica of its claim `data-<pod>`; returns pod → (node, uid).
async fn running_next_to_replicas(
    cluster: &Cluster,
    client: &Client,
    ns: &str,
    n: usize,
) -> std::collections::BTreeMap<String, (String, String)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let placed = wait_for(&format!("{n} pods Running in {ns}"), WAIT, || async {
        let list = pods.list(&ListParams::default().labels("app=db")).await.map_err(|e| e.to_string())?;
        let mut out = std::collections::BTreeMap::new();
        for p in list {
            let phase = p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
            if phase == "Running" && p.metadata.deletion_timestamp.is_none() {
                let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
                out.insert(
                    p.metadata.name.clone().unwrap_or_default(),
                    (node, p.metadata.uid.clone().unwrap_or_default()),
                );
            }
        }
        if out.len() == n { Ok(out) } else { Err(format!("{out:?}")) }
    })
    .await;
    let replicas = provisioner::replicas_by_claim(cluster, client, ns).await;
    for (pod, (node, _)) in &placed {
        let holders = replicas.get(&format!("data-{pod}")).cloned().unwrap_or_default();
        assert!(holders.contains(node), "{pod} on {node}; its volume's replicas are on {holders:?}");
    }
    placed
}

async fn scale(client: &Client, ns: &str, replicas: i32) {
    let patch = json!({"spec": {"replicas": replicas}});
    Api::<StatefulSet>::namespaced(client.clone(), ns)
        .patch("db", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("scale");
}

/// The node after `node` in `names`, cyclically: a provisioned volume's second replica.
fn next_of(names: &'static [&'static str]) -> impl Fn(&str) -> String + Send + Sync + 'static {
    move |node: &str| {
        let i = names.iter().position(|n| *n == node).unwrap_or(0);
        names[(i + 1) % names.len()].to_string()
    }
}

async fn wffc_class(client: &Client) {
    let sc = json!({"metadata": {"name": "mock-wffc"}, "provisioner": PROVISIONER, "volumeBindingMode": "WaitForFirstConsumer"});
    create(&Api::<k8s_openapi::api::storage::v1::StorageClass>::all(client.clone()), sc).await;
}

#[tokio::test]
async fn a_wait_for_first_consumer_stateful_set_binds_runs_and_survives_repeated_scale_down_and_up() {
    static NAMES: [&str; 4] = ["wffc-n1", "wffc-n2", "wffc-n3", "wffc-n4"];
    let (cluster, client) = shared().await;
    let g = "wffc";
    add_topology(cluster, online(&NAMES, 46), vec![]).await;
    group_nodes(&client, g, &group(&NAMES, 46)).await;
    wffc_class(&client).await;
    let ns = setup(&client, g).await;
    let _provisioner = provisioner::spawn(cluster, client.clone(), &ns, next_of(&NAMES));
    create(&Api::<StatefulSet>::namespaced(client.clone(), &ns), stateful_set(g, "mock-wffc")).await;
    let first = running_next_to_replicas(cluster, &client, &ns, 3).await;
    eprintln!("placed: {first:?}");

    for round in 1..=2 {
        scale(&client, &ns, 1).await;
        running_next_to_replicas(cluster, &client, &ns, 1).await;
        scale(&client, &ns, 3).await;
        let again = running_next_to_replicas(cluster, &client, &ns, 3).await;
        eprintln!("round {round}: {again:?}");
    }
    let replicas = provisioner::replicas_by_claim(cluster, &client, &ns).await;
    assert_eq!(replicas.len(), 3, "one volume per claim, made once: {replicas:?}");
}

#[tokio::test]
async fn a_rolling_restart_brings_every_stateful_set_pod_back_next_to_its_replica() {
    static NAMES: [&str; 4] = ["roll-n1", "roll-n2", "roll-n3", "roll-n4"];
    let (cluster, client) = shared().await;
    let g = "roll";
    add_topology(cluster, online(&NAMES, 47), vec![]).await;
    group_nodes(&client, g, &group(&NAMES, 47)).await;
    wffc_class(&client).await;
    let ns = setup(&client, g).await;
    let _provisioner = provisioner::spawn(cluster, client.clone(), &ns, next_of(&NAMES));
    create(&Api::<StatefulSet>::namespaced(client.clone(), &ns), stateful_set(g, "mock-wffc")).await;
    let before = running_next_to_replicas(cluster, &client, &ns, 3).await;

    // What `kubectl rollout restart` does.
    let patch =
        json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}}}}});
    Api::<StatefulSet>::namespaced(client.clone(), &ns)
        .patch("db", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("restart");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    wait_for("every pod replaced", Duration::from_secs(180), || async {
        let list = pods.list(&ListParams::default().labels("app=db")).await.map_err(|e| e.to_string())?;
        let fresh = list
            .items
            .iter()
            .filter(|p| {
                let name = p.metadata.name.clone().unwrap_or_default();
                let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                running && before.get(&name).is_some_and(|(_, uid)| Some(uid) != p.metadata.uid.as_ref())
            })
            .count();
        if fresh == 3 { Ok(()) } else { Err(format!("{fresh} of 3 replaced and Running")) }
    })
    .await;
    running_next_to_replicas(cluster, &client, &ns, 3).await;
}

#[tokio::test]
async fn a_pod_with_a_generic_ephemeral_volume_of_a_driver_class_is_routed_to_stork_and_runs_on_a_driver_node() {
    static NAMES: [&str; 2] = ["eph-n1", "eph-n2"];
    let (cluster, client) = shared().await;
    let g = "eph";
    // eph-n2 has no driver: a pod with a driver volume must not land there.
    add_topology(cluster, online(&NAMES[..1], 48), vec![]).await;
    group_nodes(&client, g, &group(&NAMES, 48)).await;
    wffc_class(&client).await;
    let ns = setup(&client, g).await;
    let _provisioner = provisioner::spawn(cluster, client.clone(), &ns, |n: &str| n.to_string());

    let pods =
        GroupPod::new(g, "scratchy").default_scheduler().ephemeral("scratch", "mock-wffc").create(&client, &ns).await;
    let pod = pods.get("scratchy").await.expect("pod");
    assert_eq!(pod.spec.and_then(|s| s.scheduler_name).as_deref(), Some("stork"), "routed by the webhook");
    assert_eq!(scheduled_node(&pods, "scratchy").await, "eph-n1");
    wait_for("scratchy Running with its claim bound", WAIT, || async {
        let p = pods.get("scratchy").await.map_err(|e| e.to_string())?;
        let phase = p.status.and_then(|s| s.phase).unwrap_or_default();
        if phase == "Running" { Ok(()) } else { Err(phase) }
    })
    .await;
}
