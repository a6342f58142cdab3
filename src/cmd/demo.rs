//! `stork demo`: the embedded default. Serves the seed scenario (files in `examples/seed/`,
//! compiled in) on localhost, sends the requests kube-scheduler would send over HTTP, and
//! prints the decisions — then the same after the driver on n2 goes Offline.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::json;

use stork::{
    app,
    cli::{DemoArgs, DriverKind, ServeArgs},
    driver::{Driver, NodeStatus},
    extender::wire::HostPriority,
};

const TOPOLOGY: &str = include_str!("../../examples/seed/topology.yaml");
const TOPOLOGY_N2_OFFLINE: &str = include_str!("../../examples/seed/topology-n2-offline.yaml");
const OBJECTS: &str = include_str!("../../examples/seed/objects.yaml");
const POD: &str = include_str!("../../examples/seed/pod.json");
const NODES: [&str; 5] = ["n1", "n2", "n3", "n4", "n5"];

/// Runs the demo; with `--once` it exits after printing, else it serves until Ctrl-C.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let topology = dir.join("topology.yaml");
    let objects = dir.join("objects.yaml");
    std::fs::write(&topology, TOPOLOGY)?;
    std::fs::write(&objects, OBJECTS)?;
    let running = app::start(ServeArgs {
        driver: DriverKind::Mock,
        mock_topology: Some(topology.clone()),
        mock_state: None,
        csi_drivers: Vec::new(),
        csi_node_plugins: Vec::new(),
        csi_snapshot_class: None,
        rack_label: "stork.libopenstorage.org/rack".into(),
        osd: Default::default(),
        objects: Some(objects),
        kubeconfig: None,
        listen: "127.0.0.1:0".parse()?,
        extender_listen: Some("127.0.0.1:0".parse()?),
        extender_client_ca: None,
        admin_listen: "127.0.0.1:0".parse()?,
        tls_cert: None,
        tls_key: None,
        namespace: "kube-system".into(),
        self_signed: Default::default(),
        webhook_skip_annotation: stork::webhook::DEFAULT_SKIP_ANNOTATION.into(),
        webhook_exclude_namespace: vec!["kube-system".into()],
        webhook_claim_wait: std::time::Duration::ZERO,
        limits: Default::default(),
        monitor: Default::default(),
    })
    .await?;
    let addr = running.addrs.extender.context("extender listener did not start")?;
    let client = reqwest::Client::new();

    println!("stork demo: the seed scenario, served at http://{addr} (topology {})\n", topology.display());
    println!("Pod default/p1 uses pvc data-1 -> volume pv-v1 (replicas n1, n2)");
    println!("               and pvc data-2 -> volume pv-v2 (replicas n2, n3).");
    println!("The storage driver runs on n1, n2, n3; n4 and n5 are not driver nodes.\n");
    schedule(&client, addr, "1. All driver nodes Online").await?;

    let mock = running.mock.clone().context("demo runs the mock driver")?;
    std::fs::write(&topology, TOPOLOGY_N2_OFFLINE)?;
    wait_until(Duration::from_secs(10), || {
        mock.nodes().ok().and_then(|inv| inv.by_id("n2").map(|n| n.status)) == Some(NodeStatus::Offline)
    })
    .await
    .context("the mock driver did not pick up the edited topology")?;
    schedule(&client, addr, "2. After the storage driver on n2 goes Offline (topology file edited, reloaded)").await?;

    if !args.once {
        println!("Serving until Ctrl-C. Try:");
        println!("  curl -s -XPOST http://{addr}/filter -d @examples/seed/filter-args.json");
        println!("  curl -s http://{}/metrics", running.addrs.admin);
        println!("  edit {} and repeat", topology.display());
        app::shutdown_signal().await;
    }
    running.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// One scheduling round as kube-scheduler does it: filter all nodes, prioritize the survivors.
async fn schedule(client: &reqwest::Client, addr: SocketAddr, title: &str) -> anyhow::Result<()> {
    let pod: serde_json::Value = serde_json::from_str(POD)?;
    let filter: serde_json::Value = client
        .post(format!("http://{addr}/filter"))
        .json(&json!({"Pod": pod, "Nodes": null, "NodeNames": NODES}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let kept: Vec<String> = serde_json::from_value(filter["NodeNames"].clone()).unwrap_or_default();
    let mut reasons: BTreeMap<String, String> =
        serde_json::from_value(filter["FailedNodes"].clone()).unwrap_or_default();
    let unresolvable: BTreeMap<String, String> =
        serde_json::from_value(filter["FailedAndUnresolvableNodes"].clone()).unwrap_or_default();
    reasons.extend(unresolvable);
    let scores: Vec<HostPriority> = if kept.len() > 1 {
        client
            .post(format!("http://{addr}/prioritize"))
            .json(&json!({"Pod": pod, "Nodes": null, "NodeNames": kept}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?
    } else {
        vec![]
    };
    println!("{title}\n");
    println!("  {:<6} {:<8} {:>6}  REASON", "NODE", "FILTER", "SCORE");
    for node in NODES {
        let score = scores.iter().find(|s| s.host == node).map_or("-".to_string(), |s| s.score.to_string());
        let verdict = if kept.iter().any(|k| k == node) { "kept" } else { "dropped" };
        let reason = reasons.get(node).map_or("", String::as_str);
        println!("  {node:<6} {verdict:<8} {score:>6}  {reason}");
    }
    if let Some(top) = scores.iter().map(|s| s.score).max() {
        let best: Vec<&str> = scores.iter().filter(|s| s.score == top).map(|s| s.host.as_str()).collect();
        let place = if best.len() == 1 {
            best[0].to_string()
        } else {
            format!("{} (a tie, broken at random)", best.join(" or "))
        };
        println!("\n  -> the scheduler places p1 on {place}: score x weight outweighs the default plugins\n");
    }
    Ok(())
}

/// Polls `ok` until it holds or `deadline` passes.
async fn wait_until(deadline: Duration, mut ok: impl FnMut() -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("condition not met within {deadline:?}")
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("stork-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    Ok(dir)
}
