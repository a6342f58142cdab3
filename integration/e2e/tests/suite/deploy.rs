//! The deploy suite: stork installed exactly as the README's install guide says
//! (`kubectl apply -k examples/mock-demo`, then the demo app), on a bare control plane, with
//! stork and the stork scheduler running as their rendered Deployments say and as their own
//! ServiceAccounts (see `stork_e2e::deploy`). Each test starts a bare control plane of its own:
//! the shared one runs the harness's stork.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::{
    apps::v1::Deployment,
    coordination::v1::Lease,
    core::v1::{PersistentVolumeClaim, Pod, Secret},
    rbac::v1::ClusterRole,
};
use kube::{Api, Client, api::PostParams};
use serde_json::Value;
use stork_e2e::{
    deploy::{Install, Rendered},
    kwok_nodes, wait_for,
};

/// kind's worker names, as examples/mock-demo/topology.yaml (and examples/mock-demo/kind.yaml) has them.
const KIND_WORKERS: &[(&str, &str)] =
    &[("kind-worker", "10.89.0.2"), ("kind-worker2", "10.89.0.3"), ("kind-worker3", "10.89.0.4")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_demo_installs_from_the_rendered_manifests_and_runs_as_its_service_accounts() {
    let (mut inst, client, rendered) = install("examples/mock-demo").await;

    // Both stork replicas start and become ready; exactly one leads.
    let (stork, names) = start_ready(&mut inst, &rendered, "stork").await;
    let leader = lease_holder(&client, "stork", &names, &inst).await;

    // Both stork-scheduler replicas start (their CA volume waits for stork's Secret, as the
    // kubelet would); one takes the `stork-scheduler` Lease.
    let (scheduler, _) = start_ready(&mut inst, &rendered, "stork-scheduler").await;
    let leases = Api::<Lease>::namespaced(client.clone(), "kube-system");
    let forbidden = || inst.forbidden_summary();
    wait_for("a holder of Lease kube-system/stork-scheduler", Duration::from_secs(60), || async {
        let holder = leases.get("stork-scheduler").await.ok().and_then(|l| l.spec?.holder_identity);
        holder.ok_or_else(|| format!("no holder; {}", forbidden()))
    })
    .await;
    let acquired =
        scheduler.iter().filter(|&&i| inst.pods[i].pod.log().contains("successfully acquired lease")).count();
    assert_eq!(acquired, 1, "exactly one stork-scheduler leads\n{}", inst.log_tails(20));

    // The demo app, applied after the rollout as the guide says: its pods name no scheduler; the
    // webhook (reached through the Service) routes them to `stork`, which places each next to
    // one of its volume's replicas.
    eprintln!("{}", inst.apply("examples/mock-demo/app").expect("kubectl apply -k examples/mock-demo/app"));
    let replicas = topology_replicas(&rendered);
    let pods = Api::<Pod>::namespaced(client.clone(), "stork-demo");
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "stork-demo");
    for n in 0..3 {
        let pod_name = format!("demo-{n}");
        let pod = wait_for(&format!("{pod_name} scheduled"), Duration::from_secs(120), || async {
            let pod = pods.get(&pod_name).await.map_err(|e| e.to_string())?;
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            if node.is_some() {
                return Ok(pod);
            }
            // A pre-bound claim left Pending by the PV controller shows up here, not as a pod problem.
            let claim = claims.get_opt(&format!("data-{pod_name}")).await.ok().flatten();
            let phase = claim.and_then(|c| c.status).and_then(|s| s.phase);
            Err(format!("{:?}; claim phase {phase:?}; {}", pod.status, forbidden()))
        })
        .await;
        let spec = pod.spec.expect("pod spec");
        assert_eq!(spec.scheduler_name.as_deref(), Some("stork"), "{pod_name} was not routed to stork by the webhook");
        let claim = claims.get(&format!("data-{pod_name}")).await.expect("demo claim");
        let pv = claim.spec.and_then(|s| s.volume_name).expect("demo claim bound");
        let node = spec.node_name.expect("node");
        assert!(replicas[&pv].contains(&node), "{pod_name} on {node}, not next to {pv}'s replicas {:?}", replicas[&pv]);
    }

    // Only the stork scheduler's client certificate (issued into stork's Secret) may call the
    // extender: the same call without one is refused, while the webhook stays open.
    let secret = Api::<Secret>::namespaced(client.clone(), "kube-system").get("stork-webhook-tls").await.unwrap();
    let ca = inst.cluster.info.dir.join("stork-webhook-tls.ca.crt");
    std::fs::write(&ca, &secret.data.unwrap()["ca.crt"].0).unwrap();
    let https = inst.pods[stork[0]].pod.port("https").expect("stork's https port");
    let dns = stork_e2e::STORK_SERVICE_DNS;
    let args = br#"{"Pod":{"metadata":{"name":"intruder","namespace":"stork-demo"}},"NodeNames":["kind-worker"]}"#;
    let (status, body) = stork_e2e::https::post(https, &ca, dns, None, "/filter", args).await.unwrap();
    assert_eq!(status, 401, "an extender call without the scheduler's certificate: {body}");
    let (status, _) = stork_e2e::https::post(https, &ca, dns, None, "/mutate", b"{}").await.unwrap();
    assert_eq!(status, 200, "the webhook path stays open");

    // Killing the leading stork (SIGTERM, as the kubelet stops a pod) moves leadership within 15 s.
    let leader_idx = stork.iter().copied().find(|&i| inst.pods[i].pod.name == leader).expect("leader is ours");
    let t0 = tokio::time::Instant::now();
    inst.terminate(leader_idx);
    let rest: Vec<String> = names.iter().filter(|n| **n != leader).cloned().collect();
    let next = lease_holder(&client, "stork", &rest, &inst).await;
    let took = t0.elapsed();
    eprintln!("[deploy] leadership moved from {leader} to {next} in {took:?}");
    assert!(took <= Duration::from_secs(15), "leadership took {took:?} to move from {leader} to {next}");
    let status = tokio::task::block_in_place(|| inst.wait_exit(leader_idx));
    assert!(status.is_some_and(|s| s.success()), "{leader} did not exit cleanly: {status:?}");

    let forbidden = inst.forbidden();
    inst.stop_all();
    assert!(
        forbidden.is_empty(),
        "the API server refused requests of stork or the stork scheduler:\n{}",
        forbidden.join("\n")
    );

    // Uninstall as the guide says; what is left is what it lists (created by stork at run time).
    let t0 = tokio::time::Instant::now();
    eprintln!("{}", inst.delete("examples/mock-demo/app").expect("kubectl delete -k examples/mock-demo/app"));
    eprintln!("{}", inst.delete("examples/mock-demo").expect("kubectl delete -k examples/mock-demo"));
    eprintln!("[deploy] uninstalled in {:?}", t0.elapsed());
    let secrets = Api::<Secret>::namespaced(client.clone(), "kube-system");
    assert!(
        secrets.get_opt("stork-webhook-tls").await.unwrap().is_some(),
        "the guide lists Secret stork-webhook-tls as left behind"
    );
    for lease in ["stork", "stork-scheduler"] {
        assert!(leases.get_opt(lease).await.unwrap().is_some(), "the guide lists Lease {lease} as left behind");
    }
    let deployments = Api::<Deployment>::namespaced(client.clone(), "kube-system");
    assert!(deployments.get_opt("stork").await.unwrap().is_none(), "delete -k removed the stork Deployment");
    inst.cluster.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_csi_overlay_runs_as_its_service_account_without_a_forbidden_request() {
    let (mut inst, client, rendered) = install("examples/csi").await;

    let (_, names) = start_ready(&mut inst, &rendered, "stork").await;
    lease_holder(&client, "stork", &names, &inst).await;
    let args =
        rendered.get("Deployment", "stork").unwrap()["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    assert!(args.to_string().contains("--driver=csi"), "the overlay's args: {args}");

    let forbidden = inst.forbidden();
    inst.stop_all();
    assert!(forbidden.is_empty(), "the API server refused requests of stork (CSI overlay):\n{}", forbidden.join("\n"));
    inst.cluster.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_role_short_of_a_permission_shows_up_as_the_forbidden_request_named() {
    let mut inst = Install::start("manifests").expect("bare cluster");
    let client = inst.client.clone();
    let rendered = Rendered::of("manifests").expect("render manifests");
    eprintln!("{}", inst.apply("manifests").expect("kubectl apply -k manifests"));
    // The rule stork's node cache needs, taken out after the apply.
    let roles = Api::<ClusterRole>::all(client.clone());
    let mut role = roles.get("stork").await.expect("ClusterRole stork");
    let rules = role.rules.as_mut().expect("rules");
    let before = rules.len();
    rules.retain(|r| !r.resources.iter().flatten().any(|res| res == "nodes"));
    assert_eq!(rules.len(), before - 1, "exactly one rule grants nodes");
    roles.replace("stork", &PostParams::default(), &role).await.expect("replace ClusterRole");

    inst.start_deployment(&rendered, "stork").await.expect("start stork pods");
    let lines = wait_for("a Forbidden line naming nodes", Duration::from_secs(60), || async {
        let lines = inst.forbidden();
        if lines.iter().any(|l| l.contains("nodes")) { Ok(lines) } else { Err(inst.log_tails(5)) }
    })
    .await;
    eprintln!("[deploy] as expected:\n{}", lines.join("\n"));
    inst.stop_all();
    inst.cluster.shutdown();
}

/// A bare cluster with kind's worker names as KWOK nodes and `dir` applied with
/// `kubectl apply -k`, after checking it deploys the versioned image.
async fn install(dir: &str) -> (Install, Client, Rendered) {
    let inst = Install::start("manifests").expect("bare cluster");
    let client = inst.client.clone();
    kwok_nodes(&client, KIND_WORKERS).await.expect("kind-named KWOK nodes");
    let rendered = Rendered::of(dir).unwrap_or_else(|e| panic!("render {dir}: {e:#}"));
    assert_image_is_versioned(&rendered);
    eprintln!("{}", inst.apply(dir).unwrap_or_else(|e| panic!("kubectl apply -k {dir}: {e:#}")));
    (inst, client, rendered)
}

/// Starts the rendered Deployment's replicas and waits for their startup and readiness probes;
/// their indices in `inst.pods` and their names.
async fn start_ready(inst: &mut Install, rendered: &Rendered, deployment: &str) -> (Vec<usize>, Vec<String>) {
    let started =
        inst.start_deployment(rendered, deployment).await.unwrap_or_else(|e| panic!("start {deployment}: {e:#}"));
    for &i in &started {
        inst.pods[i].pod.wait_ready(Duration::from_secs(120)).await;
    }
    let names = started.iter().map(|&i| inst.pods[i].pod.name.clone()).collect();
    (started, names)
}

/// Waits until the Lease `name` in kube-system is held by one of `candidates`; the holder.
async fn lease_holder(client: &Client, name: &str, candidates: &[String], inst: &Install) -> String {
    let leases = Api::<Lease>::namespaced(client.clone(), "kube-system");
    wait_for(&format!("Lease kube-system/{name} held by one of {candidates:?}"), Duration::from_secs(60), || async {
        let holder = leases.get(name).await.ok().and_then(|l| l.spec?.holder_identity).unwrap_or_default();
        if candidates.contains(&holder) {
            Ok(holder)
        } else {
            Err(format!("holder {holder:?}; {}\n{}", inst.forbidden_summary(), inst.log_tails(10)))
        }
    })
    .await
}

/// The mock topology's volume → replica node names, from the rendered ConfigMap.
fn topology_replicas(rendered: &Rendered) -> BTreeMap<String, Vec<String>> {
    let cm = rendered.get("ConfigMap", "stork-mock-topology").expect("topology ConfigMap");
    let text = cm["data"]["topology.yaml"].as_str().expect("topology.yaml key");
    let topo: Value = serde_saphyr::from_str(text).expect("topology parses");
    topo["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| {
            let replicas = v["replicas"].as_array().expect("replicas").iter().map(|r| r.as_str().unwrap().to_string());
            (v["id"].as_str().unwrap().to_string(), replicas.collect())
        })
        .collect()
}

/// Deployments name a versioned stork image (the Cargo version), never `latest`.
fn assert_image_is_versioned(rendered: &Rendered) {
    let image = rendered.get("Deployment", "stork").unwrap()["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string();
    let version = stork::cli::VERSION.split(' ').next().unwrap();
    assert_eq!(
        image,
        format!("ghcr.io/stork-rs/stork:{version}"),
        "the rendered stork image (kustomization.yaml images:)"
    );
}
