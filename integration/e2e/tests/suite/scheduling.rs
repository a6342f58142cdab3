//! The extender through the real kube-scheduler: pods with driver volumes land next to their
//! replicas, stay Pending with stork's reason when no replica is online, and keep being scheduled
//! (without locality) while stork is down.
//!
//! Tests share one cluster and run one at a time (`--test-threads=1`, see `just e2e`); each uses
//! its own namespace, node names and volumes.

use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use kube::{Api, api::ListParams};
use stork_e2e::{
    delete_nodes,
    https::{ClientCert, post},
    kwok_nodes, namespace,
    objects::{bound_claim, pod, scheduled_node, storage_class},
    shared, wait_for,
};

const WAIT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn the_seed_scenario_places_pods_next_to_their_replicas() {
    let (cluster, client) = shared().await;
    let nodes = [
        ("seed-n1", "10.1.0.1"),
        ("seed-n2", "10.1.0.2"),
        ("seed-n3", "10.1.0.3"),
        ("seed-n4", "10.1.0.4"),
        ("seed-n5", "10.1.0.5"),
    ];
    let volumes: [(&str, &[&str]); 3] = [
        ("pv-seed-v1", &["seed-n1", "seed-n2"]),
        ("pv-seed-v2", &["seed-n2", "seed-n3"]),
        ("pv-seed-v3", &["seed-n3"]),
    ];
    cluster.add_storage(&nodes[..3], "Online", &volumes).unwrap();
    kwok_nodes(&client, &nodes).await.unwrap();
    storage_class(&client).await;
    let ns = namespace(&client, "seed").await.unwrap();
    bound_claim(&client, &ns, "data-1", "pv-seed-v1").await;
    bound_claim(&client, &ns, "data-2", "pv-seed-v2").await;
    bound_claim(&client, &ns, "data-3", "pv-seed-v3").await;

    let pods = pod(&client, &ns, "p1", &["data-1", "data-2"]).await;
    assert_eq!(scheduled_node(&pods, "p1").await, "seed-n2", "V1 on n1+n2 and V2 on n2+n3 put P1 on n2");

    pod(&client, &ns, "on-n3", &["data-3"]).await;
    assert_eq!(scheduled_node(&pods, "on-n3").await, "seed-n3");

    pod(&client, &ns, "stateless", &[]).await;
    let node = scheduled_node(&pods, "stateless").await;
    assert!(!node.is_empty());

    wait_for("p1 Running on its KWOK node", WAIT, || async {
        let p = pods.get("p1").await.map_err(|e| e.to_string())?;
        let phase = p.status.and_then(|s| s.phase).unwrap_or_default();
        if phase == "Running" { Ok(()) } else { Err(phase) }
    })
    .await;

    // Stork's placement gauge: p1 runs on the node with the most replicas of its volumes.
    let series = format!("stork_hyperconverged_pods_total{{pod=\"p1\",namespace=\"{ns}\"}} 1");
    wait_for("p1 counted as hyperconverged in /metrics", WAIT, || async {
        let metrics = stork_e2e::http_get_full(cluster.info.stork_admin_port, "/metrics").map_err(|e| e.to_string())?;
        if metrics.contains(&series) {
            Ok(())
        } else {
            Err(metrics.lines().filter(|l| l.contains("p1")).collect::<Vec<_>>().join("; "))
        }
    })
    .await;
}

#[tokio::test]
async fn a_pod_whose_replicas_are_all_offline_stays_pending_with_storks_reason() {
    let (cluster, client) = shared().await;
    let nodes = [("off-n1", "10.2.0.1"), ("off-n2", "10.2.0.2")];
    cluster.add_storage(&nodes, "Offline", &[("pv-off-v1", &["off-n1", "off-n2"])]).unwrap();
    kwok_nodes(&client, &nodes).await.unwrap();
    storage_class(&client).await;
    let ns = namespace(&client, "offline").await.unwrap();
    bound_claim(&client, &ns, "data", "pv-off-v1").await;
    let pods = pod(&client, &ns, "stuck", &["data"]).await;

    let needle = "no online node holds a replica of volume pv-off-v1";
    let message = stork_e2e::placement::failed_scheduling(&client, &ns, "stuck", needle, WAIT).await;
    eprintln!("scheduling event: {message}");
    let p = pods.get("stuck").await.unwrap();
    assert_eq!(p.spec.and_then(|s| s.node_name), None, "the pod must stay Pending");
    delete_nodes(&client, &["off-n1", "off-n2"]).await;
}

#[tokio::test]
async fn with_stork_down_pods_still_schedule_and_locality_returns_with_stork() {
    let (cluster, client) = shared().await;
    let nodes = [("down-n1", "10.3.0.1"), ("down-n2", "10.3.0.2"), ("down-n3", "10.3.0.3")];
    cluster.add_storage(&nodes, "Online", &[("pv-down-v1", &["down-n1"]), ("pv-down-v3", &["down-n3"])]).unwrap();
    kwok_nodes(&client, &nodes).await.unwrap();
    storage_class(&client).await;
    let ns = namespace(&client, "down").await.unwrap();
    bound_claim(&client, &ns, "data-1", "pv-down-v1").await;
    bound_claim(&client, &ns, "data-3", "pv-down-v3").await;

    cluster.stop_stork().expect("stork exits 0 on SIGTERM");
    let pods = pod(&client, &ns, "while-down", &["data-1"]).await;
    let node = scheduled_node(&pods, "while-down").await;
    eprintln!("scheduled without stork (ignorable extender) on {node}");

    cluster.start_stork().expect("stork restarts");
    let pods = pod(&client, &ns, "after-return", &["data-3"]).await;
    assert_eq!(scheduled_node(&pods, "after-return").await, "down-n3");
}

#[tokio::test]
async fn the_extender_refuses_a_caller_without_the_schedulers_client_certificate_and_records_nothing() {
    let (cluster, client) = shared().await;
    let ns = namespace(&client, "mtls").await.unwrap();
    let dir = &cluster.info.dir;
    let ca = dir.join("ca.crt");
    // A pod naming a claim that does not exist: a filter call that gets as far as deciding
    // records a FailedScheduling event on it.
    let args = |name: &str| {
        serde_json::to_vec(&serde_json::json!({
            "Pod": {
                "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}")},
                "spec": {"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "missing"}}]}
            },
            "NodeNames": ["mtls-n1"]
        }))
        .unwrap()
    };
    let dns = stork_e2e::STORK_SERVICE_DNS;
    for path in ["/filter", "/prioritize"] {
        let (status, body) = post(cluster.info.stork_port, &ca, dns, None, path, &args("intruder")).await.unwrap();
        assert_eq!(status, 401, "{path} without a client certificate: {body}");
    }
    let (status, body) = post(cluster.info.stork_port, &ca, dns, None, "/mutate", b"{}").await.unwrap();
    assert_eq!(status, 200, "the webhook stays open to callers without a certificate: {body}");
    let cert = ClientCert { cert: &dir.join("stork-scheduler.crt"), key: &dir.join("stork-scheduler.key") };
    let (status, body) =
        post(cluster.info.stork_port, &ca, dns, Some(cert), "/filter", &args("visitor")).await.unwrap();
    assert_eq!(status, 200, "with the scheduler's certificate: {body}");

    // The certified call's event arrives; the refused calls' never did.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let seen = wait_for("the certified call's FailedScheduling event", WAIT, || async {
        let list = events.list(&ListParams::default()).await.map_err(|e| vec![e.to_string()])?;
        let about: Vec<String> = list.items.into_iter().filter_map(|e| e.involved_object.name).collect();
        if about.iter().any(|n| n == "visitor") { Ok(about) } else { Err(about) }
    })
    .await;
    assert!(!seen.iter().any(|n| n == "intruder"), "a refused call wrote an event: {seen:?}");
}
