//! The results file: everything BENCHMARKS.md is rendered from.

use std::{path::Path, process::Command};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::{
    fixtures::Mode,
    oha::{Protocol, Stats},
};

/// One `stork-bench run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// Where it ran.
    pub machine: Machine,
    /// The CI-sized variant (not published).
    pub smoke: bool,
    /// The harness command line.
    pub command: String,
    /// Wall time of the whole run.
    pub total_secs: f64,
    /// Extender section.
    pub extender: Section<ExtenderPoint>,
    /// Webhook section.
    pub webhook: Section<WebhookPoint>,
    /// Memory section (not in smoke runs).
    pub memory: Option<MemoryResult>,
    /// In-process criterion benchmarks found under target/criterion (not in smoke runs).
    #[serde(default)]
    pub micro: Vec<crate::criterion::MicroBench>,
    /// Single claim-index updates at 50,000 claims, timed by the criterion suite (not in smoke runs).
    #[serde(default)]
    pub claims: Option<crate::criterion::Percentiles>,
}

/// A table of points and the commands that produced them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Section<P> {
    /// `stork serve` command lines (one per cluster size), fixture directory as `$DIR`.
    pub servers: Vec<String>,
    /// One oha command line per kind of run, as an example of the rest.
    pub loads: Vec<String>,
    /// The measurements.
    pub points: Vec<P>,
}

impl<P> Default for Section<P> {
    fn default() -> Self {
        Self { servers: vec![], loads: vec![], points: vec![] }
    }
}

/// Latency at concurrency 1 over several runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    /// Each run.
    pub runs: Vec<Stats>,
    /// Median over runs of each run's p50.
    pub p50_ms: f64,
    /// Median over runs of each run's p99.
    pub p99_ms: f64,
    /// Worst run's p99.
    pub p99_worst_ms: f64,
}

impl Latency {
    /// Summarises runs.
    pub fn of(runs: Vec<Stats>) -> Self {
        let p50_ms = median(runs.iter().map(|r| r.p50_ms));
        let p99_ms = median(runs.iter().map(|r| r.p99_ms));
        let p99_worst_ms = runs.iter().map(|r| r.p99_ms).fold(0.0, f64::max);
        Self { runs, p50_ms, p99_ms, p99_worst_ms }
    }
}

/// Median (mean of the middle two for an even count); 0 when empty.
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Filter and prioritize for one cluster size, body shape, pod and transport.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtenderPoint {
    /// Nodes in the cluster and in the request.
    pub nodes: usize,
    /// Body shape.
    pub mode: Mode,
    /// Claims of the pod.
    pub volumes: usize,
    /// Transport.
    pub protocol: Protocol,
    /// Request body size.
    pub body_bytes: u64,
    /// /filter at concurrency 1.
    pub filter: Latency,
    /// /prioritize at concurrency 1.
    pub prioritize: Latency,
    /// /filter at the throughput concurrency.
    pub filter_load: Stats,
    /// /prioritize at the throughput concurrency.
    pub prioritize_load: Stats,
    /// The throughput concurrency.
    pub concurrency: usize,
}

impl ExtenderPoint {
    /// Filter+prioritize latency: the sum of the two medians of p50.
    pub fn pair_p50_ms(&self) -> f64 {
        self.filter.p50_ms + self.prioritize.p50_ms
    }

    /// Filter+prioritize p99: the sum of the two medians of p99 (an upper bound of the pair's p99).
    pub fn pair_p99_ms(&self) -> f64 {
        self.filter.p99_ms + self.prioritize.p99_ms
    }

    /// Sum of the worst runs' p99s.
    pub fn pair_p99_worst_ms(&self) -> f64 {
        self.filter.p99_worst_ms + self.prioritize.p99_worst_ms
    }

    /// Requests that did not get a 200, over every run of this point.
    pub fn not_ok(&self) -> u64 {
        let runs = self.filter.runs.iter().chain(&self.prioritize.runs);
        runs.chain([&self.filter_load, &self.prioritize_load]).map(Stats::not_ok).sum()
    }
}

/// `/mutate` at one concurrency and transport.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookPoint {
    /// Transport (always TLS).
    pub protocol: Protocol,
    /// Connections.
    pub concurrency: usize,
    /// Each run.
    pub runs: Vec<Stats>,
    /// Median requests/s over runs.
    pub rps: f64,
    /// Latency summary over runs.
    pub latency: Latency,
}

/// Resident memory of stork holding a large cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemoryResult {
    /// Cached Nodes.
    pub nodes: usize,
    /// Cached PVCs (and as many PVs).
    pub pvcs: usize,
    /// Volumes in the mock topology.
    pub topology_volumes: usize,
    /// Size of the objects file.
    pub objects_bytes: u64,
    /// Start to ready (load included).
    pub ready_secs: f64,
    /// VmHWM once ready.
    pub peak_kib: u64,
    /// VmRSS once ready.
    pub rss_kib: u64,
    /// VmHWM of the same binary on an empty cluster (fixed cost).
    pub empty_peak_kib: u64,
    /// The `stork serve` command line.
    pub command: String,
}

/// The machine and tools.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Online CPUs.
    pub cores: usize,
    /// Total memory.
    pub memory_mib: u64,
    /// `rustc --version`.
    pub rustc: String,
    /// `oha --version`.
    pub oha: String,
    /// UTC date and time.
    pub date: String,
    /// `git rev-parse --short HEAD`, with `-dirty` for local changes.
    pub commit: String,
    /// /proc/loadavg (1, 5, 15 minutes) when the run started.
    pub load_start: String,
    /// /proc/loadavg when the run ended (filled in by the runner).
    #[serde(default)]
    pub load_end: String,
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews every figure.
pub fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

impl Machine {
    /// Reads /proc and asks the tools.
    pub fn detect(root: &Path, oha_version: String) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: u64 =
            field(&meminfo, "MemTotal").and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0);
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let commit = tool(root, "git", &["rev-parse", "--short", "HEAD"]);
        let dirty = !tool(root, "git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
        let date =
            time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        Self {
            cpu,
            cores,
            memory_mib: memory_kib / 1024,
            rustc: tool(root, "rustc", &["--version"]),
            oha: oha_version,
            date,
            commit: if dirty { format!("{commit}-dirty") } else { commit },
            load_start: load_average(),
            load_end: String::new(),
        }
    }
}

fn field(text: &str, name: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

fn tool(root: &Path, program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .current_dir(root)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Results of the end-to-end scheduling benchmark (written by integration/e2e).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct E2eResults {
    /// Nodes (KWOK).
    pub nodes: usize,
    /// Pods scheduled.
    pub pods: usize,
    /// Through the `stork` profile with the extender.
    pub stork_pods_per_sec: f64,
    /// Through the default profile without extender.
    pub default_pods_per_sec: f64,
    /// stork / default.
    pub ratio: f64,
    /// The command that produced them.
    pub command: String,
    /// Rounds (each runs both profiles); the pods/s above are medians over them.
    #[serde(default)]
    pub rounds: usize,
    /// Every run, in order.
    #[serde(default)]
    pub runs: Vec<E2eRun>,
}

/// One run of the end-to-end benchmark (the fields BENCHMARKS.md shows).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct E2eRun {
    /// `stork` or `default`.
    pub profile: String,
    /// Pods per second, first create to last bound.
    pub pods_per_sec: f64,
    /// Mean time in stork per filter call, ms (0 for the default profile).
    pub extender_filter_mean_ms: f64,
    /// Mean time in stork per prioritize call, ms.
    pub extender_prioritize_mean_ms: f64,
    /// Pods placed on a node holding a replica of their volume.
    pub on_replica_node: usize,
    /// The profile's kube-scheduler, from its metrics (`algorithm_mean_ms`, `attempt_mean_ms`, …).
    #[serde(default)]
    pub scheduler: std::collections::BTreeMap<String, f64>,
}

/// Reads a JSON file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
}
