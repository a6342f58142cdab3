//! Test support for stork's end-to-end suite: a real local control plane (see [`Cluster`]),
//! kube clients, and helpers that wait for state by polling with a deadline.

pub mod apps;
pub mod bench;
mod boot;
mod certs;
mod cluster;
pub mod deploy;
pub mod exec;
pub mod https;
mod install;
mod locate;
pub mod objects;
pub mod osd;
pub mod placement;
mod procs;
pub mod provisioner;
mod readiness;
pub mod replica;
mod stork_cmd;

use std::{fmt::Debug, future::Future, path::Path, time::Duration};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::{
    Api, Client, Config,
    api::{DeleteParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::json;

pub use certs::STORK_SERVICE_DNS;
pub use cluster::{Cluster, ClusterInfo, ClusterOptions, http_get_full, repo_root};

/// A client for the cluster behind `kubeconfig` (one per test: clients are tied to a runtime).
pub async fn client_for(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

/// The shared cluster and a fresh client for it.
pub async fn shared() -> (&'static Cluster, Client) {
    let cluster = tokio::task::spawn_blocking(Cluster::shared).await.expect("cluster start thread");
    let client = client_for(&cluster.info.kubeconfig).await.expect("kube client");
    (cluster, client)
}

/// Polls `probe` every 250 ms until it yields `Ok`, or panics after `timeout` with the last
/// thing it saw. Tests never sleep a fixed time.
pub async fn wait_for<T, E: Debug, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last saw: {last:?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await, // poll until the deadline
        }
    }
}

/// A new namespace `<prefix>-<n>` for one test.
pub async fn namespace(client: &Client, prefix: &str) -> Result<String> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"generateName": format!("{prefix}-")}}))?;
    let created = api.create(&PostParams::default(), &ns).await?;
    let name = created.metadata.name.context("namespace without name")?;
    // The service-account controller must have run before pods can be created here.
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), &name);
    wait_for("the default ServiceAccount", Duration::from_secs(60), || async { sa.get("default").await }).await;
    Ok(name)
}

/// Creates KWOK nodes (Ready, pods on them Running) with a Hostname and InternalIP address,
/// and waits until the scheduler may use them (Ready, no not-ready taint).
pub async fn kwok_nodes(client: &Client, nodes: &[(&str, &str)]) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    for (name, ip) in nodes {
        let node: Node = serde_json::from_value(json!({
            "metadata": {
                "name": name,
                "annotations": {"kwok.x-k8s.io/node": "fake"},
                "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"}
            },
            "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]}
        }))?;
        match api.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for (name, _) in nodes {
        wait_for(&format!("node {name} Ready and untainted"), Duration::from_secs(90), || async {
            let n = api.get(name).await.map_err(|e| e.to_string())?;
            let ready = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let taints: Vec<String> =
                n.spec.and_then(|s| s.taints).unwrap_or_default().into_iter().map(|t| t.key).collect();
            if ready && taints.is_empty() { Ok(()) } else { Err(format!("ready={ready} taints={taints:?}")) }
        })
        .await;
    }
    Ok(())
}

/// Deletes nodes (best effort), so a test leaves the shared cluster as it found it.
pub async fn delete_nodes(client: &Client, names: &[&str]) {
    let api: Api<Node> = Api::all(client.clone());
    for n in names {
        let _ = api.delete(n, &DeleteParams::default()).await;
    }
}
