//! stork's admission webhooks called by the real kube-apiserver through the manifests'
//! service-based configuration: pods with driver volumes are routed to the `stork` scheduler
//! without anyone setting `schedulerName`; nothing else is touched; a stork outage never blocks
//! pod creation; bad restore PVCs are refused with a message saying what to fix.

use std::time::{Duration, Instant};

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{PersistentVolumeClaim, Pod},
};
use kube::{
    Api,
    api::{ListParams, PostParams},
};
use serde_json::json;
use stork_e2e::{
    kwok_nodes, namespace,
    objects::{WAIT, bound_claim, create, storage_class},
    shared, wait_for,
};

fn pod_spec(claim: Option<&str>) -> serde_json::Value {
    let volumes = match claim {
        Some(c) => json!([{"name": "data", "persistentVolumeClaim": {"claimName": c}}]),
        None => json!([{"name": "scratch", "emptyDir": {}}]),
    };
    json!({"containers": [{"name": "app", "image": "fake"}], "volumes": volumes})
}

#[tokio::test]
async fn a_deployment_with_a_driver_pvc_gets_stork_scheduled_pods_on_the_replica_node() {
    let (cluster, client) = shared().await;
    let nodes = [("adm-n1", "10.4.0.1"), ("adm-n2", "10.4.0.2"), ("adm-n3", "10.4.0.3")];
    cluster.add_storage(&nodes, "Online", &[("pv-adm-v1", &["adm-n2"])]).unwrap();
    kwok_nodes(&client, &nodes).await.unwrap();
    storage_class(&client).await;
    let ns = namespace(&client, "admission").await.unwrap();
    bound_claim(&client, &ns, "data", "pv-adm-v1").await;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    create(
        &deployments,
        json!({
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": pod_spec(Some("data"))}
            }
        }),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let (scheduler, node) = wait_for("the deployment's pod to be scheduled", WAIT, || async {
        let list = pods.list(&ListParams::default().labels("app=db")).await.map_err(|e| e.to_string())?;
        let p = list.items.into_iter().next().ok_or("no pod yet")?;
        let spec = p.spec.ok_or("no spec")?;
        let node = spec.node_name.ok_or(format!("pending on {:?}", spec.scheduler_name))?;
        Ok::<_, String>((spec.scheduler_name.unwrap_or_default(), node))
    })
    .await;
    assert_eq!(scheduler, "stork", "the webhook routed the pod to the stork scheduler");
    assert_eq!(node, "adm-n2", "and the extender placed it on the replica node");
}

#[tokio::test]
async fn a_pod_with_only_an_empty_dir_is_not_touched() {
    let (_, client) = shared().await;
    let ns = namespace(&client, "emptydir").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "plain"}, "spec": pod_spec(None)})).unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    assert_eq!(created.spec.unwrap().scheduler_name.as_deref(), Some("default-scheduler"));
}

#[tokio::test]
async fn with_stork_stopped_pod_creation_still_succeeds_within_the_webhook_timeout() {
    let (cluster, client) = shared().await;
    let ns = namespace(&client, "no-stork").await.unwrap();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    create(
        &pvcs,
        json!({"metadata": {"name": "data"}, "spec": {"storageClassName": "mock-sc", "accessModes": ["ReadWriteOnce"],
               "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    cluster.stop_stork().expect("stork exits 0 on SIGTERM");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": pod_spec(Some("data"))})).unwrap();
    let started = Instant::now();
    let result = pods.create(&PostParams::default(), &pod).await;
    let took = started.elapsed();
    cluster.start_stork().expect("stork restarts");
    let created = result.expect("pod creation must not fail while stork is down");
    assert_eq!(created.spec.unwrap().scheduler_name.as_deref(), Some("default-scheduler"));
    // failurePolicy Ignore with timeoutSeconds 3: the apiserver gives up on the webhook quickly.
    assert!(took < Duration::from_secs(10), "creation took {took:?}");
}

#[tokio::test]
async fn a_restore_pvc_without_its_snapshot_annotation_is_refused_with_what_to_fix() {
    let (_, client) = shared().await;
    let ns = namespace(&client, "restore").await.unwrap();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "restored"},
        "spec": {"storageClassName": "stork-snapshot-sc", "accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .unwrap();
    match pvcs.create(&PostParams::default(), &pvc).await {
        Err(kube::Error::Api(e)) => {
            assert!(e.message.contains("snapshot.alpha.kubernetes.io/snapshot"), "{}", e.message);
            assert!(e.message.contains("denied the request"), "{}", e.message);
        }
        other => panic!("expected a denial, got {other:?}"),
    }
}
