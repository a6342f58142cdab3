//! An application for rules to run in: a Running pod on a KWOK node whose `exec` runs locally in
//! a test's directory (see [`crate::exec`]), Rules, and reading what the commands wrote.

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::{
    exec::{local_exec_for_namespace, wait_local_exec},
    objects::{WAIT, create},
    wait_for,
};

/// Creates pod `name` with `labels` bound to `node` (no scheduler involved), waits until it is
/// Running and its exec runs locally in `work_dir`.
pub async fn app_pod(client: &Client, ns: &str, name: &str, node: &str, labels: Value, work_dir: &Path) -> Api<Pod> {
    local_exec_for_namespace(client, ns, work_dir, &[]).await.expect("local exec for the namespace");
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    create(
        &pods,
        json!({"metadata": {"name": name, "labels": labels},
               "spec": {"nodeName": node, "containers": [{"name": "db", "image": "fake"}]}}),
    )
    .await;
    wait_for(&format!("pod {ns}/{name} Running"), WAIT, || async {
        let p = pods.get(name).await.map_err(|e| e.to_string())?;
        let phase = p.status.and_then(|s| s.phase).unwrap_or_default();
        if phase == "Running" { Ok(()) } else { Err(phase) }
    })
    .await;
    wait_local_exec(&pods, name, work_dir).await;
    pods
}

/// Creates Rule `name` with these items (Stork's YAML shape: `rules:` at the top level).
pub async fn rule(client: &Client, ns: &str, name: &str, items: Value) {
    let api: Api<stork::model::rule::Rule> = Api::namespaced(client.clone(), ns);
    create(
        &api,
        json!({"apiVersion": "stork.libopenstorage.org/v1alpha1", "kind": "Rule",
               "metadata": {"name": name, "namespace": ns}, "rules": items}),
    )
    .await;
}

/// A file the commands wrote in `dir`, trimmed; empty when absent.
pub fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// A nanosecond timestamp a command wrote with `date +%s%N`.
pub fn stamp(dir: &Path, file: &str) -> i128 {
    let text = read(dir, file);
    text.parse().unwrap_or_else(|_| panic!("{file} holds no nanosecond timestamp: {text:?}"))
}

/// Whether local process `pid` still runs (it is this machine's: KWOK's exec is local).
pub fn alive(pid: &str) -> bool {
    !pid.is_empty() && Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits until local process `pid` has ended.
pub async fn ended(pid: &str, what: &str) {
    wait_for(&format!("{what} (pid {pid}) to end"), WAIT, || async {
        if alive(pid) { Err(format!("/proc/{pid} still exists")) } else { Ok(()) }
    })
    .await
}

/// When the mock driver took snapshot `id`, from its state file (nanoseconds since the epoch).
pub fn driver_snapshot_time(state_file: &Path, id: &str) -> Option<i128> {
    let text = std::fs::read_to_string(state_file).ok()?;
    let state: Value = serde_saphyr::from_str(&text).ok()?;
    let created = state["snapshots"][id]["created"].as_str()?;
    let ts: k8s_openapi::jiff::Timestamp = created.parse().ok()?;
    Some(ts.as_nanosecond())
}

/// The messages of events about object `name` in `ns` (events.k8s.io, as stork records them).
pub async fn event_notes(client: &Client, ns: &str, name: &str) -> Vec<String> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let list = api.list(&Default::default()).await.map(|l| l.items).unwrap_or_default();
    list.into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| format!("{} {}", e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}
