//! `kubectl stork` run as a subprocess against the harness, as a user runs it: every
//! subcommand, tables compared with golden files (`tests/golden/kubectl-stork/`, ages and the
//! test's namespace masked; `STORK_UPDATE_GOLDEN=1` rewrites them), and `explain` through the API
//! server's service proxy for a pod placed next to its data and one left Pending.

use std::{path::PathBuf, process::Command, time::Instant};

use k8s_openapi::api::{core::v1::Pod, events::v1::Event};
use kube::{Api, api::ListParams};
use serde_json::{Value, json};
use stork_e2e::{
    Cluster,
    apps::rule,
    kwok_nodes, namespace,
    objects::{WAIT, bound_claim, create, pod, scheduled_node, storage_class},
    repo_root, shared, wait_for,
};

/// The plugin binary: `KUBECTL_STORK_BIN`, else the workspace's debug build.
fn bin() -> PathBuf {
    let path = std::env::var_os("KUBECTL_STORK_BIN")
        .map(PathBuf::from)
        .unwrap_or(repo_root().join("target/debug/kubectl-stork"));
    assert!(path.exists(), "{} is missing: run `cargo build --bin kubectl-stork` (or `just e2e`)", path.display());
    path
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn plugin(cluster: &Cluster, ns: &str, args: &[&str]) -> Run {
    let out = Command::new(bin())
        .args(args)
        .args(["-n", ns])
        .env("KUBECONFIG", &cluster.info.kubeconfig)
        .output()
        .expect("kubectl-stork runs");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(cluster: &Cluster, ns: &str, args: &[&str]) -> String {
    let r = plugin(cluster, ns, args);
    assert!(r.ok, "kubectl stork {args:?} failed: {}{}", r.stdout, r.stderr);
    r.stdout
}

/// Masks what differs between runs: the namespace and ages (`12s`, `3m`, `in 59m`, `5s ago`).
fn mask(text: &str, ns: &str) -> String {
    let text = text.replace(ns, "<ns>");
    let mut out = String::new();
    for line in text.lines() {
        let words: Vec<String> = line
            .split_inclusive(' ')
            .map(|w| {
                let core = w.trim_end();
                let is_age = core.len() > 1
                    && core[..core.len() - 1].chars().all(|c| c.is_ascii_digit())
                    && core.ends_with(['s', 'm', 'h', 'd']);
                if is_age { format!("{}{}", "<age>", &w[core.len()..]) } else { w.to_string() }
            })
            .collect();
        out.push_str(&words.concat());
        out.push('\n');
    }
    out
}

/// Compares `text` (masked) with golden file `name`, or rewrites it with `STORK_UPDATE_GOLDEN=1`.
fn golden(name: &str, text: &str, ns: &str) {
    let path = repo_root().join("integration/e2e/tests/golden/kubectl-stork").join(name);
    let got = mask(text, ns);
    if std::env::var_os("STORK_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing; run with STORK_UPDATE_GOLDEN=1", path.display()));
    // Columns are padded to the widest cell, so compare with runs of spaces squeezed.
    let squeeze =
        |s: &str| s.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join("\n");
    assert_eq!(squeeze(&got), squeeze(&want), "{name} differs; got:\n{got}");
}

fn json_of(cluster: &Cluster, ns: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&ok(cluster, ns, &all)).expect("JSON output")
}

#[tokio::test]
async fn every_subcommand_works_against_the_cluster_and_prints_what_a_user_needs() {
    let (cluster, client) = shared().await;
    let node = ("kst-n1", "10.10.0.1");
    cluster.add_storage(&[node], "Online", &[("pv-kst", &["kst-n1"])]).unwrap();
    kwok_nodes(&client, &[node]).await.unwrap();
    storage_class(&client).await;
    create(
        &Api::<k8s_openapi::api::storage::v1::StorageClass>::all(client.clone()),
        json!({"metadata": {"name": "stork-snapshot-sc"}, "provisioner": "stork-snapshot"}),
    )
    .await;
    let ns = namespace(&client, "kst").await.unwrap();
    bound_claim(&client, &ns, "data", "pv-kst").await;
    rule(
        &client,
        &ns,
        "flush",
        json!([{"podSelector": {"app": "db"}, "actions": [{"type": "command", "value": "sync"}]}]),
    )
    .await;
    let c = cluster;
    let t0 = Instant::now();
    let lap = |what: &str| println!("{what}: {:?}", t0.elapsed());

    // Snapshots.
    assert!(ok(c, &ns, &["create", "snapshot", "nightly", "--pvc", "data"]).contains("volumesnapshot nightly created"));
    wait_for("snapshot nightly Ready in get", WAIT, || async {
        let out = ok(c, &ns, &["get", "snapshots"]);
        if out.contains("Ready") { Ok(()) } else { Err(out) }
    })
    .await;
    golden("get-snapshots.txt", &ok(c, &ns, &["get", "snapshots"]), &ns);
    let listed = json_of(c, &ns, &["get", "snapshot", "nightly"]);
    assert_eq!(listed[0]["spec"]["persistentVolumeClaimName"], "data", "{listed}");
    let missing = plugin(c, &ns, &["get", "snapshots", "nightlyy"]);
    assert!(
        !missing.ok
            && missing
                .stderr
                .contains(&format!("snapshot nightlyy not found in namespace {ns}; did you mean nightly?")),
        "{}",
        missing.stderr
    );

    lap("snapshots");
    // Policies and schedules.
    let policy = format!("hourly-{ns}");
    let bad = plugin(c, &ns, &["create", "policy", &policy, "--interval", "0"]);
    assert!(!bad.ok && bad.stderr.contains("intervalMinutes is 0"), "{}", bad.stderr);
    assert!(ok(c, &ns, &["create", "policy", &policy, "--interval", "60", "--retain", "5"]).contains("created"));
    golden("get-policies.txt", &ok(c, &ns, &["get", "policies", &policy]), &ns);
    assert!(ok(c, &ns, &["create", "schedule", "db-hourly", "--pvc", "data", "--policy", &policy]).contains("created"));
    wait_for("the schedule's first snapshot retained", WAIT, || async {
        let v = json_of(c, &ns, &["get", "schedules", "db-hourly"]);
        let ready = v[0]["status"]["items"]["Interval"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|i| i["status"] == "Ready").count());
        if ready == 1 { Ok(()) } else { Err(v.to_string()) }
    })
    .await;
    assert_eq!(ok(c, &ns, &["suspend", "schedule", "db-hourly"]).trim(), "volumesnapshotschedule db-hourly suspended");
    golden("get-schedules-suspended.txt", &ok(c, &ns, &["get", "schedules"]), &ns);
    assert_eq!(ok(c, &ns, &["resume", "schedule", "db-hourly"]).trim(), "volumesnapshotschedule db-hourly resumed");
    let running = ok(c, &ns, &["get", "schedules"]);
    assert!(
        running.contains("false") && running.contains("in "),
        "a resumed schedule shows its next trigger: {running}"
    );
    let nope = plugin(c, &ns, &["suspend", "schedule", "db-hourli"]);
    assert!(!nope.ok && nope.stderr.contains("did you mean db-hourly?"), "{}", nope.stderr);

    lap("schedules");
    golden("get-rules.txt", &ok(c, &ns, &["get", "rules"]), &ns);
    golden("get-groupsnapshots-none.txt", &ok(c, &ns, &["get", "groupsnapshots"]), &ns);

    // Restores: into a new claim, then in place.
    let restored = ok(c, &ns, &["restore", "copy", "--snapshot", "nightly"]);
    assert!(restored.contains("persistentvolumeclaim copy created from snapshot nightly"), "{restored}");
    assert!(restored.trim_end().ends_with("claim copy is Bound: restored"), "{restored}");
    lap("restore into a new claim");
    let in_place = ok(c, &ns, &["restore", "data", "--snapshot", "nightly", "--in-place"]);
    assert!(in_place.contains("Successful: data holds snapshot nightly's data"), "{in_place}");
    let wrong = plugin(c, &ns, &["restore", "copy", "--snapshot", "nightly", "--in-place"]);
    assert!(!wrong.ok && wrong.stderr.contains("was taken of claim data, not copy"), "{}", wrong.stderr);

    lap("restore in place");
    assert!(ok(c, &ns, &["completion", "bash"]).contains("kubectl-stork"));
}

#[tokio::test]
async fn explain_shows_why_a_pod_runs_next_to_its_data_and_why_another_is_pending_as_describe_does() {
    let (cluster, client) = shared().await;
    let nodes = [("kex-n1", "10.10.1.1"), ("kex-n2", "10.10.1.2"), ("kex-n3", "10.10.1.3")];
    cluster.add_storage(&nodes, "Online", &[("pv-kex-a", &["kex-n2"]), ("pv-kex-b", &["kex-n3"])]).unwrap();
    kwok_nodes(&client, &nodes).await.unwrap();
    storage_class(&client).await;
    let ns = namespace(&client, "kex").await.unwrap();
    bound_claim(&client, &ns, "data-a", "pv-kex-a").await;
    bound_claim(&client, &ns, "data-b", "pv-kex-b").await;

    let pods = pod(&client, &ns, "placed", &["data-a"]).await;
    assert_eq!(scheduled_node(&pods, "placed").await, "kex-n2");
    let started = Instant::now();
    let out = ok(cluster, &ns, &["explain", "pod", "placed"]);
    let round_trip = started.elapsed();
    println!("kubectl stork explain round trip (process start included): {round_trip:?}\n{out}");
    assert!(out.contains(&format!("Pod {ns}/placed (Running, on kex-n2, scheduler stork; driver mock)")), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("{ns}/data-a")) && l.contains("pv-kex-a") && l.contains("kex-n2 (Online)")),
        "{out}"
    );
    let row = |out: &str, node: &str| out.lines().find(|l| l.starts_with(node)).unwrap_or_default().to_string();
    assert!(row(&out, "kex-n2").contains("kept") && row(&out, "kex-n2").contains("replica of pv-kex-a here"), "{out}");
    assert!(out.contains("placed on kex-n2; stork ranks kex-n2 highest"), "{out}");
    let e = json_of(cluster, &ns, &["explain", "pod", "placed"]);
    assert_eq!(e["node"], "kex-n2");

    // Every replica node of data-b down: Pending, and explain gives the reasons describe shows.
    cluster
        .update_topology(|t| {
            for n in t["nodes"].as_array_mut().unwrap() {
                if n["id"] == "kex-n3" {
                    n["status"] = json!("Offline");
                }
            }
        })
        .unwrap();
    stork_e2e::placement::topology_served(cluster).await;
    pod(&client, &ns, "stuck", &["data-b"]).await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let describe = wait_for("FailedScheduling of the stuck pod", WAIT, || async {
        let list = events.list(&ListParams::default()).await.map_err(|e| e.to_string())?.items;
        list.into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("FailedScheduling")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("stuck")
            })
            .and_then(|e| e.note)
            .ok_or_else(|| "no FailedScheduling yet".to_string())
    })
    .await;
    let out = ok(cluster, &ns, &["explain", "pod", "stuck"]);
    assert!(out.contains("(Pending, not placed, scheduler stork"), "{out}");
    let reason = row(&out, "kex-n3");
    assert!(reason.contains("dropped"), "{out}");
    let why = reason
        .split_once("dropped")
        .map(|(_, r)| r.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    assert!(!why.is_empty() && describe.contains(&why), "explain's reason {why:?} is what describe shows: {describe}");
    let p = Api::<Pod>::namespaced(client.clone(), &ns).get("stuck").await.unwrap();
    assert!(p.spec.and_then(|s| s.node_name).is_none());

    let gone = plugin(cluster, &ns, &["explain", "pod", "nobody"]);
    assert!(!gone.ok && gone.stderr.contains("is not in stork's cache"), "{}", gone.stderr);
}
