//! `stork-osd-bench`: what one read of the `openstorage` driver costs at scale — the
//! `OpenStorageNode/EnumerateWithFilters` plus `OpenStorageVolume/InspectWithFilters` (every
//! volume) that its background task makes each poll interval ([`OsdDriver::refresh`]), against
//! the real OpenStorage SDK server (`osd-harness`, the upstream fake backend).
//!
//! ```text
//! stork-osd-bench [--volumes 1000,5000,20000] [--nodes 100] [--reads 7] [--in-flight 16]
//!                 [--setup-limit 300]
//! ```
//! For each volume count N: a fresh `osd-harness` with `--nodes` SDK nodes (`px-1`…), then N
//! volumes with 2 or 3 replicas on pseudo-random nodes (a fixed seed), made through the SDK
//! `--in-flight` at a time. The answer's size is taken from one direct `InspectWithFilters`.
//! The reads run in a child process of this binary (`--measure`), so its RSS growth is the
//! driver's alone and not memory the setup freed and the allocator kept; it uses stork's
//! allocator (jemalloc), whose freed pages stay resident for a while, so the growth is the
//! driver's state plus what its last reads freed. One JSON line per N on stdout; progress on
//! stderr.
//!
//! The fake backend reads (and JSON-decodes) every stored volume on each `Create` — and on
//! each non-deep `Inspect`, so no SDK call makes volumes in constant time — which makes the
//! setup quadratic: 2.5–3 min for 5,000 volumes on 2 cores, about 50 (projected) for 20,000.
//! A count whose setup, projected from the time so far, would pass `--setup-limit` seconds is
//! abandoned with an `error` line, and so are the counts after it.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use prost::Message;
use serde_json::{Value, json};
use stork::{
    cluster::ClusterView,
    driver::{
        Driver,
        openstorage::{
            OsdConfig, OsdDriver, SdkClient,
            proto::{SdkVolumeInspectWithFiltersRequest, SdkVolumeInspectWithFiltersResponse},
        },
    },
};
use stork_e2e::osd::{OsdNode, OsdOptions, OsdServer};

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const USAGE: &str = "usage: stork-osd-bench [--volumes 1000,5000,20000] [--nodes 100] [--reads 7] \
[--in-flight 16] [--setup-limit 300]";

/// Volumes created between two progress lines (and two checks of `--setup-limit`).
const CHUNK: usize = 1000;

/// The command line.
#[derive(Debug)]
struct Args {
    volumes: Vec<usize>,
    nodes: usize,
    reads: usize,
    in_flight: usize,
    setup_limit: Duration,
    /// Child mode: read the SDK at this endpoint and print the timings and RSS as JSON.
    measure: Option<String>,
}

impl Args {
    fn parse(mut argv: impl Iterator<Item = String>) -> Result<Self> {
        let mut a = Args {
            volumes: vec![1000, 5000, 20_000],
            nodes: 100,
            reads: 7,
            in_flight: 16,
            setup_limit: Duration::from_secs(300),
            measure: None,
        };
        while let Some(flag) = argv.next() {
            let mut value = || argv.next().with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--volumes" => {
                    a.volumes = value()?.split(',').map(|n| n.trim().parse()).collect::<Result<_, _>>()?;
                }
                "--nodes" => a.nodes = value()?.parse()?,
                "--reads" => a.reads = value()?.parse()?,
                "--in-flight" => a.in_flight = value()?.parse()?,
                "--setup-limit" => a.setup_limit = Duration::from_secs(value()?.parse()?),
                "--measure" => a.measure = Some(value()?),
                "-h" | "--help" => {
                    eprintln!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?} (see --help)"),
            }
        }
        if a.nodes < 3 || a.reads == 0 || a.in_flight == 0 || a.volumes.is_empty() {
            bail!("need --nodes ≥ 3, --reads ≥ 1, --in-flight ≥ 1 and a volume count");
        }
        Ok(a)
    }
}

fn step(t0: Instant, msg: &str) {
    eprintln!("[osd-bench {:>7.1}s] {msg}", t0.elapsed().as_secs_f64());
}

/// A field of /proc/self/status in KiB: `VmRSS` (resident now) or `VmHWM` (its peak).
fn status_kib(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line =
        status.lines().find(|l| l.starts_with(field)).with_context(|| format!("no {field} in /proc/self/status"))?;
    Ok(line.split_whitespace().nth(1).with_context(|| format!("bad {field} line"))?.parse()?)
}

/// SplitMix64: replica placement that is the same on every run, without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// `bench-vol-<i>` with 2 or 3 replicas on distinct pseudo-random nodes of `px-1..=px-<nodes>`.
fn volume_plan(count: usize, nodes: usize) -> Vec<(String, Vec<String>)> {
    let mut rng = Rng(0x5eed);
    (0..count)
        .map(|i| {
            let want = 2 + rng.below(2);
            let mut replicas: Vec<String> = Vec::with_capacity(want);
            while replicas.len() < want {
                let id = format!("px-{}", 1 + rng.below(nodes));
                if !replicas.contains(&id) {
                    replicas.push(id);
                }
            }
            (format!("bench-vol-{i}"), replicas)
        })
        .collect()
}

/// `px-1..=px-<count>` on Kubernetes nodes `node-<i>`, all online.
fn sdk_nodes(count: usize) -> Vec<OsdNode> {
    (1..=count)
        .map(|i| OsdNode::new(&format!("px-{i}"), &format!("node-{i}"), &format!("10.1.{}.{}", i / 256, i % 256)))
        .collect()
}

/// Child mode: a fresh driver reads the SDK `reads` times, then a bare client makes the same
/// `InspectWithFilters` call `reads` times (the SDK, transport and decoding without stork's
/// work). Prints `{"refresh_ms": [...], "inspect_ms": [...], "rss_before_kib",
/// "rss_after_kib", "rss_peak_kib"}`, memory as it was after the driver's reads; the baseline is
/// taken with the runtime already up, so the peak's growth is the driver's too.
async fn measure(endpoint: &str, reads: usize, nodes: usize) -> Result<Value> {
    let rss_before = status_kib("VmRSS:")?;
    let config = OsdConfig::new(Some(endpoint), "kube-system/portworx-service", "px-sdk", None)?;
    let driver = OsdDriver::new(config, ClusterView::new().0, Default::default());
    let mut times = Vec::with_capacity(reads);
    for _ in 0..reads {
        let t = Instant::now();
        driver.refresh(None).await.context("OsdDriver::refresh")?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let seen = driver.nodes()?.nodes().len();
    if seen != nodes {
        bail!("the driver saw {seen} nodes, not {nodes}");
    }
    let (rss_after, rss_peak) = (status_kib("VmRSS:")?, status_kib("VmHWM:")?);
    drop(driver);
    let sdk = SdkClient::new(endpoint, None, None, Duration::from_secs(60))?;
    let mut bare = Vec::with_capacity(reads);
    for _ in 0..reads {
        let t = Instant::now();
        drop(inspect_all(&sdk).await?);
        bare.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(json!({"refresh_ms": times, "inspect_ms": bare, "rss_before_kib": rss_before, "rss_after_kib": rss_after,
              "rss_peak_kib": rss_peak}))
}

/// Runs this binary in `--measure` mode against `endpoint` and parses what it prints.
fn measure_in_child(endpoint: &str, args: &Args) -> Result<Value> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(["--measure", endpoint, "--reads", &args.reads.to_string(), "--nodes", &args.nodes.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("starting the measuring child")?;
    if !out.status.success() {
        bail!("the measuring child failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout).context("the measuring child's output")
}

/// How a setup that gave up went.
struct GaveUp {
    made: usize,
    /// Seconds the whole setup would have taken, projected as quadratic.
    projected_secs: f64,
}

/// Creates `count` volumes chunk by chunk. Gives up when the setup, projected as quadratic
/// from the time so far, would pass `--setup-limit`.
async fn create_all(server: &OsdServer, args: &Args, count: usize, t0: Instant) -> Result<Result<(), GaveUp>> {
    let started = Instant::now();
    let mut made = 0;
    for chunk in volume_plan(count, args.nodes).chunks(CHUNK) {
        let t = Instant::now();
        server.create_volumes(chunk.to_vec(), args.in_flight).await?;
        made += chunk.len();
        let rate = chunk.len() as f64 / t.elapsed().as_secs_f64();
        let projected_secs = started.elapsed().as_secs_f64() * (count as f64 / made as f64).powi(2);
        step(
            t0,
            &format!(
                "  {made}/{count} volumes ({rate:.0}/s over the last {}; setup projected at {projected_secs:.0} s)",
                chunk.len()
            ),
        );
        if made < count && projected_secs > args.setup_limit.as_secs_f64() {
            return Ok(Err(GaveUp { made, projected_secs }));
        }
    }
    Ok(Ok(()))
}

/// Every volume, as the driver asks for them (`InspectWithFilters`, no filters).
async fn inspect_all(sdk: &SdkClient) -> Result<SdkVolumeInspectWithFiltersResponse> {
    let request = sdk.request(SdkVolumeInspectWithFiltersRequest::default())?;
    let answer = sdk.volumes().inspect_with_filters(request).await;
    Ok(answer.map_err(|s| anyhow::anyhow!("InspectWithFilters: {s}"))?.into_inner())
}

/// The size of the SDK's answer with every volume: `(encoded bytes, volumes)`.
async fn answer_size(server: &OsdServer) -> Result<(usize, usize)> {
    let answer = inspect_all(&server.client().await?).await?;
    Ok((answer.encoded_len(), answer.volumes.len()))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Median of a non-empty list (the lower middle one of an even count).
fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}

/// One volume count, start to end: its JSON line, or `None` when its setup ran out of time.
fn bench_one(rt: &tokio::runtime::Runtime, args: &Args, count: usize, t0: Instant) -> Result<Option<Value>> {
    step(t0, &format!("{count} volumes: starting osd-harness with {} nodes", args.nodes));
    // On this (the main) thread: the harness dies with the thread that started it.
    let server = OsdServer::start(OsdOptions::default())?;
    server.set_nodes(&sdk_nodes(args.nodes))?;
    let started = Instant::now();
    let created = rt.block_on(create_all(&server, args, count, t0))?;
    let create_secs = started.elapsed().as_secs_f64();
    if let Err(GaveUp { made, projected_secs }) = created {
        let error = format!(
            "setup projected at {projected_secs:.0} s after {made} of {count} volumes, past --setup-limit {} s",
            args.setup_limit.as_secs()
        );
        step(t0, &format!("  {error}; giving up on this count and the ones after it"));
        let line = json!({"volumes": count, "nodes": args.nodes, "error": error, "created": made,
                          "create_secs": round2(create_secs), "projected_setup_secs": projected_secs.round()});
        println!("{line}");
        return Ok(None);
    }
    let (answer_bytes, listed) = rt.block_on(answer_size(&server))?;
    if listed != count {
        bail!("InspectWithFilters listed {listed} volumes, not {count}");
    }
    step(t0, &format!("  answer: {answer_bytes} bytes; {} reads in a child process", args.reads));
    let m = measure_in_child(&server.endpoint, args)?;
    let times: Vec<f64> = serde_json::from_value(m["refresh_ms"].clone())?;
    let bare: Vec<f64> = serde_json::from_value(m["inspect_ms"].clone())?;
    let kib = |k: &str| m[k].as_u64().unwrap_or(0) as f64;
    let growth_mb = |k: &str| (kib(k) - kib("rss_before_kib")) / 1024.0;
    Ok(Some(json!({
        "volumes": count,
        "nodes": args.nodes,
        "refresh_ms_median": round2(median(&times)),
        "refresh_ms_max": round2(times.iter().copied().fold(0.0, f64::max)),
        "refresh_ms_first": round2(times[0]),
        "inspect_ms_median": round2(median(&bare)),
        "reads": args.reads,
        "answer_bytes": answer_bytes,
        "rss_growth_mb": round2(growth_mb("rss_after_kib")),
        "rss_peak_growth_mb": round2(growth_mb("rss_peak_kib")),
        "rss_after_mb": round2(kib("rss_after_kib") / 1024.0),
        "create_secs": round2(create_secs),
        "create_per_sec": round2(count as f64 / create_secs),
        "in_flight": args.in_flight,
    })))
}

fn main() -> Result<()> {
    let args = Args::parse(std::env::args().skip(1))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if let Some(endpoint) = &args.measure {
        let report = rt.block_on(measure(endpoint, args.reads, args.nodes))?;
        println!("{report}");
        return Ok(());
    }
    let t0 = Instant::now();
    for &count in &args.volumes {
        match bench_one(&rt, &args, count, t0)? {
            Some(line) => println!("{line}"),
            None => break,
        }
    }
    Ok(())
}
