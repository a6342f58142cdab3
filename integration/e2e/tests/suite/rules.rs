//! Application-consistent snapshots on the real control plane: Rules run real shell commands in
//! the application's pods through the API server's `exec` (KWOK runs them as local processes in a
//! test directory), and the files those commands write prove what ran, in which order, and that
//! nothing is left running.

use std::time::Instant;

use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use stork::model::crd::VolumeSnapshot;
use stork_e2e::{
    Cluster,
    apps::{alive, app_pod, driver_snapshot_time, ended, event_notes, read, rule, stamp},
    kwok_nodes, namespace,
    objects::{WAIT, bound_claim, create, storage_class},
    shared, wait_for,
};

/// A namespace with a bound mock claim `data` (volume `pv`) on `node` and a Running pod `db-0`
/// (label app=db) whose exec runs in the returned directory.
async fn app(cluster: &Cluster, client: &Client, node: (&str, &str), pv: &str) -> (String, tempfile::TempDir) {
    cluster.add_storage(&[node], "Online", &[(pv, &[node.0])]).unwrap();
    kwok_nodes(client, &[node]).await.unwrap();
    storage_class(client).await;
    let ns = namespace(client, "rules").await.unwrap();
    bound_claim(client, &ns, "data", pv).await;
    let dir = tempfile::tempdir().unwrap();
    app_pod(client, &ns, "db-0", node.0, json!({"app": "db"}), dir.path()).await;
    (ns, dir)
}

async fn snapshot(client: &Client, ns: &str, name: &str, annotations: Value) -> Api<VolumeSnapshot> {
    let snaps: Api<VolumeSnapshot> = Api::namespaced(client.clone(), ns);
    create(
        &snaps,
        json!({"apiVersion": "volumesnapshot.external-storage.k8s.io/v1", "kind": "VolumeSnapshot",
               "metadata": {"name": name, "annotations": annotations},
               "spec": {"persistentVolumeClaimName": "data"}}),
    )
    .await;
    snaps
}

/// Waits until the snapshot is Ready; returns its driver snapshot id.
async fn ready(snaps: &Api<VolumeSnapshot>, name: &str) -> String {
    wait_for(&format!("snapshot {name} Ready"), WAIT, || async {
        let s = snaps.get(name).await.map_err(|e| e.to_string())?;
        let st = s.status.clone().unwrap_or_default();
        if st.is_ready() && !s.spec.snapshot_data_name.is_empty() {
            Ok(s.spec.snapshot_data_name)
        } else {
            Err(format!("{:?}", st.conditions))
        }
    })
    .await
}

#[tokio::test]
async fn pre_and_post_rules_run_around_the_snapshot_and_a_background_command_holds_until_it_is_taken() {
    let (cluster, client) = shared().await;
    let (ns, dir) = app(cluster, &client, ("rule-n1", "10.7.0.1"), "pv-rule-order").await;
    let d = dir.path();
    rule(
        &client,
        &ns,
        "freeze",
        json!([{"podSelector": {"app": "db"}, "actions": [
            {"type": "command", "value": "date +%s%N > pre.ts"},
            {"type": "command", "background": true,
             "value": "echo $$ > bg.pid; date +%s%N > bg-start.ts; ${WAIT_PLACEHOLDER}; date +%s%N > bg-released.ts"}
        ]}]),
    )
    .await;
    rule(
        &client,
        &ns,
        "thaw",
        json!([{"podSelector": {"app": "db"}, "actions": [{"type": "command", "value": "date +%s%N > post.ts"}]}]),
    )
    .await;

    let snaps = snapshot(
        &client,
        &ns,
        "consistent",
        json!({"stork.libopenstorage.org/pre-snapshot-rule": "freeze", "stork.libopenstorage.org/post-snapshot-rule": "thaw"}),
    )
    .await;
    let id = ready(&snaps, "consistent").await;
    let state = stork::driver::mock::state_path(&cluster.info.topology);
    let taken =
        driver_snapshot_time(&state, &id).unwrap_or_else(|| panic!("driver snapshot {id} in {}", state.display()));

    let (pre, bg_start, released, post) =
        (stamp(d, "pre.ts"), stamp(d, "bg-start.ts"), stamp(d, "bg-released.ts"), stamp(d, "post.ts"));
    assert!(pre <= bg_start, "the foreground action ran first: pre {pre}, background {bg_start}");
    assert!(bg_start < taken, "the background command was holding before the snapshot: {bg_start} !< {taken}");
    assert!(taken < released, "it was released only after the driver snapshot: {taken} !< {released}");
    assert!(released <= post, "the post rule ran after the release: {released} !<= {post}");
    ended(&read(d, "bg.pid"), "the background command").await;

    let s = snaps.get("consistent").await.unwrap();
    assert!(!s.annotations().contains_key("stork.libopenstorage.org/pods-with-running-cmds"), "record cleared");
    let notes = event_notes(&client, &ns, "consistent").await;
    assert!(notes.iter().any(|n| n.contains("pre-snapshot rule freeze ran")), "{notes:?}");
    assert!(notes.iter().any(|n| n.contains("post-snapshot rule thaw ran")), "{notes:?}");
}

#[tokio::test]
async fn a_failing_foreground_action_takes_no_snapshot_and_names_the_pod_and_exit_code() {
    let (cluster, client) = shared().await;
    let (ns, dir) = app(cluster, &client, ("rule-n2", "10.7.0.2"), "pv-rule-fail").await;
    rule(
        &client,
        &ns,
        "broken",
        json!([{"podSelector": {"app": "db"}, "actions": [
            {"type": "command", "value": "echo attempt >> attempts; echo 'cannot lock tables' >&2; exit 3"}
        ]}]),
    )
    .await;
    let snaps = snapshot(&client, &ns, "doomed", json!({"stork.libopenstorage.org/pre-snapshot-rule": "broken"})).await;
    let message = wait_for("the snapshot's Error condition", WAIT, || async {
        let s = snaps.get("doomed").await.map_err(|e| e.to_string())?;
        match s.status.as_ref().and_then(|st| st.error()) {
            Some(m) => Ok(m.to_string()),
            None => Err(format!("{:?}", s.status)),
        }
    })
    .await;
    for part in
        ["rule broken", &format!("pod {ns}/db-0"), "exited with code 3", "cannot lock tables", "no snapshot was taken"]
    {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    assert_eq!(
        read(dir.path(), "attempts").lines().count(),
        3,
        "one attempt and the two retries of --rule-exec-retries"
    );
    let uid = snaps.get("doomed").await.unwrap().metadata.uid.unwrap();
    let state = std::fs::read_to_string(stork::driver::mock::state_path(&cluster.info.topology)).unwrap_or_default();
    assert!(!state.contains(&uid), "no driver snapshot was taken:\n{state}");
    let notes = event_notes(&client, &ns, "doomed").await;
    assert!(notes.iter().any(|n| n.contains("exited with code 3") && n.contains("db-0")), "{notes:?}");
}

#[tokio::test]
async fn a_background_command_left_by_a_killed_stork_is_released_by_the_next_leader() {
    let (cluster, client) = shared().await;
    let (ns, dir) = app(cluster, &client, ("rule-n3", "10.7.0.3"), "pv-rule-crash").await;
    let d = dir.path();
    // The second action blocks the first time only, so stork can be killed while the first holds.
    rule(
        &client,
        &ns,
        "hold",
        json!([{"podSelector": {"app": "db"}, "actions": [
            {"type": "command", "background": true, "value": "echo $$ >> held.pids; ${WAIT_PLACEHOLDER}"},
            {"type": "command", "value": "if [ ! -e blocked-once ]; then touch blocked-once; echo $$ > block.pid; exec sleep 600; fi"}
        ]}]),
    )
    .await;
    let snaps = snapshot(&client, &ns, "crash", json!({"stork.libopenstorage.org/pre-snapshot-rule": "hold"})).await;
    let first = wait_for("the background command running and the rule blocked", WAIT, || async {
        let (pids, blocked) = (read(d, "held.pids"), read(d, "block.pid"));
        match (pids.lines().next(), blocked.is_empty()) {
            (Some(pid), false) if alive(pid) => Ok(pid.to_string()),
            _ => Err(format!("held.pids {pids:?}, block.pid {blocked:?}")),
        }
    })
    .await;
    let recorded = snaps.get("crash").await.unwrap();
    let record =
        recorded.annotations().get("stork.libopenstorage.org/pods-with-running-cmds").cloned().unwrap_or_default();
    assert!(record.contains("db-0") && record.contains("taskID"), "recorded before it started: {record:?}");

    cluster.kill_stork().unwrap();
    assert!(alive(&first), "a killed stork leaves the command holding");
    let restarted = Instant::now();
    cluster.start_stork().unwrap();
    ended(&first, "the background command of the killed leader").await;
    println!("released {:?} after the restart", restarted.elapsed());
    ready(&snaps, "crash").await;
    for pid in read(d, "held.pids").lines() {
        ended(pid, "every background command").await;
    }
    let s = snaps.get("crash").await.unwrap();
    assert!(!s.annotations().contains_key("stork.libopenstorage.org/pods-with-running-cmds"), "record cleared");
    // The blocked foreground command of the first attempt is the test's to end.
    let blocked = read(d, "block.pid");
    if alive(&blocked) {
        let _ = std::process::Command::new("kill").arg(&blocked).status();
    }
}
