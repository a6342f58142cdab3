//! The health monitor on the real control plane: a StatefulSet on KWOK nodes whose mock volumes
//! each have two replicas. A node whose driver stays Offline loses its pods, which come back on
//! the other replica node; a node that comes back during the backoff loses nothing; with two
//! replicas, killing the leader hands the work to the other one.
//!
//! The harness's own stork runs with `--health-monitor=false`; each test starts its own stork
//! replicas ([`Replica`]) with short timings and a lease of its own.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{Namespace, Pod},
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams},
};
use serde_json::json;
use stork_e2e::{
    Cluster, delete_nodes, kwok_nodes, namespace,
    objects::{bound_claim, create, driver_node, storage_class},
    replica::Replica,
    shared, wait_for,
};

const WAIT: Duration = Duration::from_secs(90);

/// Short monitor and election timings; `backoff` is the first re-check wait (3 checks).
fn monitor_flags(lease: &str, backoff: &str) -> Vec<String> {
    [
        "--monitor-interval=2s",
        "--monitor-allow-short-interval",
        "--monitor-backoff-checks=3",
        "--monitor-batch-interval=1s",
        "--leader-lease-duration=6s",
        "--leader-renew-deadline=4s",
        "--leader-retry-period=1s",
        // The harness's own stork runs the snapshot controllers under its lease.
        "--snapshot-controllers=false",
    ]
    .into_iter()
    .map(String::from)
    .chain([format!("--monitor-backoff={backoff}"), format!("--leader-lease={lease}")])
    .collect()
}

fn start(cluster: &Cluster, name: &str, flags: &[String]) -> Replica {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Replica::start(cluster, name, &flags).expect("stork replica")
}

/// Four online driver nodes `<p>-n1..n4` (KWOK too), volumes `pv-<p>-0..2` on two nodes each,
/// claims `data-web-0..2` bound to them, and a StatefulSet `web` of 3 using them; returns the
/// namespace and each pod's (node, uid) once all three run.
async fn stateful_set(
    cluster: &Cluster,
    client: &Client,
    p: &str,
    ip: u8,
) -> (String, BTreeMap<String, (String, String)>) {
    let names: Vec<String> = (1..=4).map(|i| format!("{p}-n{i}")).collect();
    let ips: Vec<String> = (1..=4).map(|i| format!("10.{ip}.0.{i}")).collect();
    let replicas = [[0, 1], [1, 2], [2, 0]];
    cluster
        .update_topology(|t| {
            for (n, a) in names.iter().zip(&ips) {
                t["nodes"].as_array_mut().unwrap().push(driver_node(n, a, "Online"));
            }
            for (i, r) in replicas.iter().enumerate() {
                let nodes = [&names[r[0]], &names[r[1]]];
                t["volumes"].as_array_mut().unwrap().push(json!({"id": format!("pv-{p}-{i}"), "replicas": nodes}));
            }
        })
        .unwrap();
    let nodes: Vec<(&str, &str)> = names.iter().map(String::as_str).zip(ips.iter().map(String::as_str)).collect();
    kwok_nodes(client, &nodes).await.unwrap();
    storage_class(client).await;
    let ns = namespace(client, p).await.unwrap();
    for i in 0..3 {
        bound_claim(client, &ns, &format!("data-web-{i}"), &format!("pv-{p}-{i}")).await;
    }
    let sts = json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3, "podManagementPolicy": "Parallel", "serviceName": "web",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"schedulerName": "stork", "containers": [{"name": "app", "image": "fake"}]}
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "storageClassName": "mock-sc", "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    });
    // Each pod's claim comes from volumeClaimTemplates: `data-web-<i>`, pre-bound above.
    create(&Api::<StatefulSet>::namespaced(client.clone(), &ns), sts).await;
    let placed = running(client, &ns, 3).await;
    for (pod, (node, _)) in &placed {
        let i: usize = pod.trim_start_matches("web-").parse().unwrap();
        let holders: Vec<&String> = replicas[i].iter().map(|&r| &names[r]).collect();
        assert!(holders.contains(&node), "{pod} on {node}, replicas on {holders:?}");
    }
    (ns, placed)
}

/// Waits until `n` pods run in `ns`, none terminating; returns name → (node, uid).
async fn running(client: &Client, ns: &str, n: usize) -> BTreeMap<String, (String, String)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_for(&format!("{n} pods Running in {ns}"), WAIT, || async {
        let list = pods.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
        let mut out = BTreeMap::new();
        for p in list {
            let phase = p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
            if phase == "Running" && p.metadata.deletion_timestamp.is_none() {
                let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
                out.insert(p.metadata.name.clone().unwrap(), (node, p.metadata.uid.clone().unwrap()));
            }
        }
        if out.len() == n { Ok(out) } else { Err(format!("{out:?}")) }
    })
    .await
}

/// Deletes the namespace (so the StatefulSet stops recreating pods) and the test's nodes.
async fn cleanup(client: &Client, ns: &str, p: &str) {
    let _ = Api::<Namespace>::all(client.clone()).delete(ns, &DeleteParams::default()).await;
    let names: Vec<String> = (1..=4).map(|i| format!("{p}-n{i}")).collect();
    delete_nodes(client, &names.iter().map(String::as_str).collect::<Vec<_>>()).await;
}

fn set_status(cluster: &Cluster, node: &str, status: &str) {
    cluster
        .update_topology(|t| {
            for n in t["nodes"].as_array_mut().unwrap() {
                if n["id"] == node {
                    n["status"] = json!(status);
                }
            }
        })
        .unwrap();
}

/// Waits until every pod that ran on `down` was replaced by a pod elsewhere and every other
/// pod is untouched; returns the new placement.
async fn failed_over(
    client: &Client,
    ns: &str,
    before: &BTreeMap<String, (String, String)>,
    down: &str,
) -> BTreeMap<String, (String, String)> {
    wait_for(&format!("pods on {down} recreated elsewhere"), WAIT, || async {
        let now = running(client, ns, 3).await;
        for (pod, (node, uid)) in before {
            let (new_node, new_uid) = &now[pod];
            let ok = if node == down { new_uid != uid && new_node != down } else { new_uid == uid };
            if !ok {
                return Err(format!("{pod}: before {node}/{uid}, now {new_node}/{new_uid}"));
            }
        }
        Ok(now)
    })
    .await
}

#[tokio::test]
async fn pods_leave_a_node_whose_driver_stays_offline_but_not_one_that_comes_back() {
    let (cluster, client) = shared().await;
    let (ns, placed) = stateful_set(cluster, &client, "mon", 31).await;
    let stork = start(cluster, "monitor-a", &monitor_flags("mon-lease", "1s"));
    wait_for("monitor-a leads", WAIT, || async { if stork.is_leader() { Ok(()) } else { Err(()) } }).await;

    let down = placed["web-0"].0.clone();
    let on_down = placed.values().filter(|(n, _)| *n == down).count();
    set_status(cluster, &down, "Offline");
    let now = failed_over(&client, &ns, &placed, &down).await;
    assert_eq!(stork.metric("stork_pods_rescheduled_total"), on_down as f64, "{}", stork.log_tail(30));
    drop(stork);
    set_status(cluster, &down, "Online");

    // A long backoff (4 s, then 8 s): the node comes back while the monitor re-checks it, and
    // the monitor records the recovery instead of deleting anything.
    let stork = start(cluster, "monitor-b", &monitor_flags("mon-lease", "4s"));
    wait_for("monitor-b leads", WAIT, || async { if stork.is_leader() { Ok(()) } else { Err(()) } }).await;
    let flap = now["web-1"].0.clone();
    set_status(cluster, &flap, "Offline");
    let tracked = "stork_monitor_nodes_tracked";
    wait_for("the monitor re-checking the node", WAIT, || async {
        if stork.metric(tracked) == 1.0 { Ok(()) } else { Err(stork.metric(tracked)) }
    })
    .await;
    set_status(cluster, &flap, "Online");
    let recovered = r#"stork_monitor_skipped_total{reason="recovered"}"#;
    wait_for("the monitor recording the node's recovery", WAIT, || async {
        match (stork.metric(recovered), stork.metric(tracked)) {
            (1.0, 0.0) => Ok(()),
            seen => Err(seen),
        }
    })
    .await;
    assert_eq!(running(&client, &ns, 3).await, now, "a flapping node loses no pod");
    assert_eq!(stork.metric("stork_pods_rescheduled_total"), 0.0);
    drop(stork);
    cleanup(&client, &ns, "mon").await;
}

#[tokio::test]
async fn when_the_leader_dies_the_other_replica_takes_over_and_deletes_each_pod_once() {
    let (cluster, client) = shared().await;
    let (ns, placed) = stateful_set(cluster, &client, "ha", 32).await;
    let flags = monitor_flags("ha-lease", "1s");
    let a = start(cluster, "ha-a", &flags);
    let b = start(cluster, "ha-b", &flags);
    let first = wait_for("one leader", WAIT, || async {
        match (a.is_leader(), b.is_leader()) {
            (true, false) => Ok("ha-a"),
            (false, true) => Ok("ha-b"),
            other => Err(other),
        }
    })
    .await;
    let (leader, other) = if first == "ha-a" { (a, b) } else { (b, a) };
    leader.kill();
    wait_for("the other replica leads", WAIT, || async { if other.is_leader() { Ok(()) } else { Err(()) } }).await;

    let down = placed["web-2"].0.clone();
    let on_down = placed.values().filter(|(n, _)| *n == down).count();
    set_status(cluster, &down, "Offline");
    let now = failed_over(&client, &ns, &placed, &down).await;
    // The node stays Offline: recreated pods are elsewhere and are never deleted again. Watch
    // that placement and the deletion count hold over three more passes of the monitor.
    let passes = other.metric("stork_monitor_passes_total");
    wait_for("three monitor passes with the placement and deletions unchanged", WAIT, || async {
        assert_eq!(running(&client, &ns, 3).await, now);
        assert_eq!(other.metric("stork_pods_rescheduled_total"), on_down as f64, "{}", other.log_tail(30));
        let seen = other.metric("stork_monitor_passes_total");
        if seen >= passes + 3.0 { Ok(()) } else { Err(format!("{seen} passes, from {passes}")) }
    })
    .await;
    set_status(cluster, &down, "Online");
    drop(other);
    cleanup(&client, &ns, "ha").await;
}
