//! `stork-sched-bench`: end-to-end scheduling throughput on a real control plane with KWOK
//! nodes — pods with driver PVCs through the `stork` profile (kube-scheduler + stork's extender)
//! versus the same pods through the default profile, in pods/s, and their ratio.
//!
//! ```text
//! stork-sched-bench [--nodes 1000] [--pods 1000] [--rounds 2] [--scheduler-qps 5000|default]
//!                   [--timeout 300] [--out target/bench/e2e-scheduling.json] [--keep] [--smoke]
//! ```
//! `--smoke` is 50 nodes, 50 pods, one round, written to `target/bench/e2e-scheduling-smoke.json`.
//! Each round runs both profiles on fresh claims, alternating which goes first; the figures are
//! the medians over rounds. stork is taken from `STORK_BIN` (default `target/debug/stork`).

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::json;
use stork_e2e::{
    Cluster,
    bench::{self, ClusterOptions, Profile, RunResult, WorkSet},
    client_for, namespace, objects, repo_root,
};

const USAGE: &str = "usage: stork-sched-bench [--nodes 1000] [--pods 1000] [--rounds 2] \
[--scheduler-qps 5000|default] [--timeout 300] [--out target/bench/e2e-scheduling.json] [--keep] [--smoke]";

/// A run starts once the cluster uses fewer CPUs than this (or after a minute).
const QUIET_CORES: f64 = 0.5;

/// The goal of issue 8: with the extender at least this share of the throughput without it.
const GOAL_RATIO: f64 = 0.8;

#[derive(Debug)]
struct Args {
    nodes: usize,
    pods: usize,
    rounds: usize,
    /// `clientConnection.qps`/`.burst` of both schedulers; `None` keeps kube-scheduler's 50/100.
    scheduler_qps: Option<(f32, u32)>,
    timeout: Duration,
    out: PathBuf,
    /// Keep the cluster's run directory (logs) after a successful run.
    keep: bool,
}

impl Args {
    fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args> {
        let mut a = Args {
            nodes: 1000,
            pods: 1000,
            rounds: 2,
            scheduler_qps: Some((5000.0, 10_000)),
            timeout: Duration::from_secs(300),
            out: repo_root().join("target/bench/e2e-scheduling.json"),
            keep: false,
        };
        let mut out = None;
        while let Some(flag) = argv.next() {
            let mut value = || argv.next().with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--nodes" => a.nodes = value()?.parse()?,
                "--pods" => a.pods = value()?.parse()?,
                "--rounds" => a.rounds = value()?.parse()?,
                "--timeout" => a.timeout = Duration::from_secs(value()?.parse()?),
                "--out" => out = Some(PathBuf::from(value()?)),
                "--keep" => a.keep = true,
                "--scheduler-qps" => {
                    a.scheduler_qps = match value()?.as_str() {
                        "default" => None,
                        q => {
                            let qps: f32 = q.parse()?;
                            Some((qps, (qps * 2.0) as u32))
                        }
                    }
                }
                "--smoke" => {
                    (a.nodes, a.pods, a.rounds) = (50, 50, 1);
                    a.out = repo_root().join("target/bench/e2e-scheduling-smoke.json");
                }
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?} (see --help)"),
            }
        }
        if let Some(out) = out {
            a.out = out;
        }
        if a.nodes < 3 || a.pods == 0 || a.rounds == 0 {
            bail!("need --nodes ≥ 3, --pods ≥ 1 and --rounds ≥ 1");
        }
        Ok(a)
    }
}

fn step(t0: Instant, msg: &str) {
    eprintln!("[bench {:>6.1}s] {msg}", t0.elapsed().as_secs_f64());
}

/// The command line as run, with `STORK_BIN` when set (it decides which stork was measured).
fn command() -> String {
    let args: Vec<String> = std::env::args().collect();
    match std::env::var("STORK_BIN") {
        Ok(bin) => format!("STORK_BIN={bin} {}", args.join(" ")),
        Err(_) => args.join(" "),
    }
}

async fn bench(cluster: &Cluster, args: &Args, t0: Instant) -> Result<serde_json::Value> {
    let client = client_for(&cluster.info.kubeconfig).await?;
    let mut sets = Vec::new();
    for round in 0..args.rounds {
        let order =
            if round % 2 == 0 { [Profile::Stork, Profile::Default] } else { [Profile::Default, Profile::Stork] };
        for profile in order {
            let ns = namespace(&client, &format!("bench-{}-r{}", profile.label(), round + 1)).await?;
            sets.push(WorkSet { ns, profile, salt: sets.len() + 1 });
        }
    }
    let warm_ns = namespace(&client, "bench-warm-up").await?;
    cluster.update_topology(|t| *t = bench::topology(args.nodes, &sets, args.pods, &warm_ns))?;
    objects::storage_class(&client).await;

    let mut cpu = bench::cpu_seconds();
    let mut phase_cpu = |t0: Instant, what: &str| {
        let now = bench::cpu_seconds();
        step(t0, &format!("  {what}: CPU seconds {:?}", bench::cpu_delta(&cpu, &now)));
        cpu = now;
    };
    step(t0, &format!("creating {} KWOK nodes", args.nodes));
    bench::create_nodes(&client, args.nodes).await?;
    step(t0, "waiting until they are Ready and untainted");
    bench::wait_nodes_ready(&client, args.nodes).await?;
    phase_cpu(t0, "nodes");
    step(t0, &format!("creating {} bound PV/PVC pairs in {} sets", sets.len() * args.pods, sets.len()));
    bench::bind_claims(&client, &sets, args.pods).await?;
    phase_cpu(t0, "claims");
    step(t0, "warming up both schedulers and stork");
    bench::warm_up(&client, &warm_ns).await?;
    let setup_seconds = t0.elapsed().as_secs_f64();

    let mut runs: Vec<RunResult> = Vec::new();
    for set in &sets {
        let busy = bench::quiesce(QUIET_CORES, Duration::from_secs(60)).await;
        step(
            t0,
            &format!(
                "run: {} pods through the {} profile ({}); cluster idle at {busy:.2} CPUs",
                args.pods,
                set.profile.label(),
                set.ns
            ),
        );
        let r = bench::run(&client, &cluster.info, set, args.pods, args.nodes, args.timeout).await?;
        step(
            t0,
            &format!(
                "  {:.1} pods/s ({:.2} s; created in {:.2} s; {} extender filter calls, {:.3} ms mean in stork; {} on a replica node; {} FailedScheduling events)",
                r.pods_per_sec,
                r.seconds,
                r.create_seconds,
                r.extender_filter_calls,
                r.extender_filter_mean_ms,
                r.on_replica_node,
                r.failed_scheduling_events
            ),
        );
        if set.profile == Profile::Stork && r.extender_filter_calls < args.pods as u64 {
            bail!(
                "the stork run made {} extender filter calls for {} pods: the extender was not used",
                r.extender_filter_calls,
                args.pods
            );
        }
        step(t0, &format!("  scheduler: {:?}", r.scheduler));
        step(t0, &format!("  CPU seconds: {:?}", r.cpu_seconds));
        let left = bench::settle(&client, &set.ns, Duration::from_secs(120)).await;
        if left != 0 {
            step(t0, "  warning: KWOK had not made every pod Running after 120 s; the next run shares the load");
        }
        runs.push(r);
    }

    let per = bench::by_profile(&runs);
    let stork = bench::median(per.get("stork").map(Vec::as_slice).unwrap_or_default());
    let default = bench::median(per.get("default").map(Vec::as_slice).unwrap_or_default());
    let ratio = if default > 0.0 { stork / default } else { 0.0 };
    Ok(json!({
        "nodes": args.nodes,
        "pods": args.pods,
        "stork_pods_per_sec": round2(stork),
        "default_pods_per_sec": round2(default),
        "ratio": (ratio * 1000.0).round() / 1000.0,
        "command": command(),
        "goal_ratio": GOAL_RATIO,
        "meets_goal": ratio >= GOAL_RATIO,
        "rounds": args.rounds,
        "scheduler_client_qps": args.scheduler_qps.map(|(q, b)| json!({"qps": q, "burst": b})),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "setup_seconds": round2(setup_seconds),
        "total_seconds": round2(t0.elapsed().as_secs_f64()),
        "runs": runs,
    }))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn main() -> Result<()> {
    let args = Args::parse(std::env::args().skip(1))?;
    let t0 = Instant::now();
    step(t0, &format!("starting the cluster ({} nodes, {} pods, {} rounds)", args.nodes, args.pods, args.rounds));
    // stork at `info`, as deployed: the harness's debug level logs every extender response.
    let opts = ClusterOptions {
        scheduler_client_qps: args.scheduler_qps,
        stork_log: Some("info".into()),
        scheduler_metrics_open: true,
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start_with(opts)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = rt.block_on(bench(&cluster, &args, t0));
    cluster.shutdown();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("logs of every component are in {}", cluster.info.dir.display());
            return Err(e);
        }
    };
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)?;
    if args.keep {
        eprintln!("logs of every component are in {}", cluster.info.dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&cluster.info.dir);
    }
    println!(
        "e2e scheduling, {} nodes, {} pods: stork {} pods/s, default {} pods/s, ratio {} (goal ≥ {GOAL_RATIO}: {}); {} rounds in {:.0} s → {}",
        args.nodes,
        args.pods,
        report["stork_pods_per_sec"],
        report["default_pods_per_sec"],
        report["ratio"],
        if report["meets_goal"] == true { "met" } else { "missed" },
        args.rounds,
        t0.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
