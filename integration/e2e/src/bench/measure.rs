//! One measured run: pods created as fast as the apiserver takes them, timed until all are
//! bound, with the extender's and the schedulers' own metrics around it.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::{Api, Client, api::ListParams};
use serde_json::json;

use super::{LABEL, Profile, WorkSet, concurrently, cpu_delta, cpu_seconds, create_pod, pod_json, poll};

/// What one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunResult {
    /// `stork` or `default`.
    pub profile: &'static str,
    /// Namespace of its pods.
    pub namespace: String,
    /// Pods created and scheduled.
    pub pods: usize,
    /// From the first create until the apiserver had taken them all.
    pub create_seconds: f64,
    /// From the first create until every pod had `spec.nodeName`.
    pub seconds: f64,
    /// `pods / seconds`.
    pub pods_per_sec: f64,
    /// Extender filter calls during the run (stork's `/metrics`).
    pub extender_filter_calls: u64,
    /// Extender prioritize calls during the run.
    pub extender_prioritize_calls: u64,
    /// Mean time stork spent in a filter call (body read to response), in ms.
    pub extender_filter_mean_ms: f64,
    /// Mean time stork spent in a prioritize call, in ms.
    pub extender_prioritize_mean_ms: f64,
    /// Pods that landed on a node holding a replica of their volume.
    pub on_replica_node: usize,
    /// `FailedScheduling` events in the namespace (retries slow a run down).
    pub failed_scheduling_events: usize,
    /// The profile's kube-scheduler on this run, from its metrics: attempts and mean ms per
    /// attempt of the whole scheduling cycle, of the algorithm (filter + score, extender
    /// included), and of the Filter and Score plugins alone. Empty if they could not be read.
    pub scheduler: BTreeMap<String, f64>,
    /// CPU seconds each cluster component (and `bench`, this process) used during the run, and
    /// `machine` (all CPUs busy, every process on the machine: the rest is someone else's load).
    pub cpu_seconds: BTreeMap<String, f64>,
}

/// A counter from the text exposition: the value of the series `name{labels}`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The sum of every series of `name` whose labels include all of `labels` (`key="value"`).
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (set, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            labels
                .iter()
                .all(|want| set.split(',').any(|have| have == *want))
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// A kube-scheduler's `/metrics` (`which`: `scheduler` or `stork-scheduler`), read on its secure
/// port (found in its log); the cluster must be started with
/// [`ClusterOptions::scheduler_metrics_open`].
pub async fn scheduler_metrics(info: &crate::ClusterInfo, which: &str) -> Result<String> {
    let log = std::fs::read_to_string(info.dir.join(format!("{which}.log")))?;
    let port = log
        .lines()
        .find_map(|l| l.split("Serving securely on 127.0.0.1:").nth(1))
        .and_then(|p| p.split(|c: char| !c.is_ascii_digit()).next())
        .context("secure port not in the scheduler's log")?;
    let mut cfg = kube::Config::new(format!("https://127.0.0.1:{port}").parse()?);
    // The scheduler serves a self-signed certificate.
    cfg.accept_invalid_certs = true;
    let client = Client::try_from(cfg)?;
    Ok(client.request_text(http::Request::get("/metrics").body(Vec::new())?).await?)
}

/// Where a scheduler's time went, from its metrics (sums of seconds; `count` attempts).
#[derive(Debug, Clone, Copy, Default)]
struct SchedulerTotals {
    attempts: f64,
    attempt_secs: f64,
    algorithm_secs: f64,
    filter_secs: f64,
    score_secs: f64,
}

impl SchedulerTotals {
    async fn read(info: &crate::ClusterInfo, profile: Profile) -> Result<Self> {
        let which = match profile {
            Profile::Stork => "stork-scheduler",
            Profile::Default => "scheduler",
        };
        let text = scheduler_metrics(info, which).await?;
        let p = format!("profile=\"{}\"", profile.scheduler_name());
        let ext = |point: &str| {
            let point = format!("extension_point=\"{point}\"");
            metric_sum(&text, "scheduler_framework_extension_point_duration_seconds_sum", &[&p, &point])
        };
        Ok(Self {
            attempts: metric_sum(&text, "scheduler_scheduling_attempt_duration_seconds_count", &[&p]),
            attempt_secs: metric_sum(&text, "scheduler_scheduling_attempt_duration_seconds_sum", &[&p]),
            algorithm_secs: metric_sum(&text, "scheduler_scheduling_algorithm_duration_seconds_sum", &[]),
            filter_secs: ext("Filter"),
            score_secs: ext("Score"),
        })
    }

    /// Per-attempt means in ms since `before`: attempt, algorithm, Filter plugins, Score plugins.
    fn since(self, before: Self) -> BTreeMap<String, f64> {
        let n = (self.attempts - before.attempts).max(1.0);
        let ms = |a: f64, b: f64| ((a - b) * 1000.0 / n * 1000.0).round() / 1000.0;
        BTreeMap::from([
            ("attempts".to_string(), self.attempts - before.attempts),
            ("attempt_mean_ms".to_string(), ms(self.attempt_secs, before.attempt_secs)),
            ("algorithm_mean_ms".to_string(), ms(self.algorithm_secs, before.algorithm_secs)),
            ("filter_plugins_mean_ms".to_string(), ms(self.filter_secs, before.filter_secs)),
            ("score_plugins_mean_ms".to_string(), ms(self.score_secs, before.score_secs)),
        ])
    }
}

/// Calls and total seconds of the extender's filter and prioritize, from stork's `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
struct ExtenderTotals {
    filter: (f64, f64),
    prioritize: (f64, f64),
}

impl ExtenderTotals {
    fn read(admin_port: u16) -> Result<Self> {
        let text = crate::http_get_full(admin_port, "/metrics")?;
        let get = |verb: &str| {
            let series = |what: &str| format!("stork_extender_request_duration_seconds_{what}{{verb=\"{verb}\"}}");
            (metric(&text, &series("count")).unwrap_or(0.0), metric(&text, &series("sum")).unwrap_or(0.0))
        };
        Ok(Self { filter: get("filter"), prioritize: get("prioritize") })
    }

    /// Calls since `before`, and their mean duration in ms.
    fn since(self, before: Self) -> [(u64, f64); 2] {
        [(self.filter, before.filter), (self.prioritize, before.prioritize)].map(|((n1, s1), (n0, s0))| {
            let n = (n1 - n0).max(0.0);
            (n as u64, if n > 0.0 { (s1 - s0) * 1000.0 / n } else { 0.0 })
        })
    }
}

/// Creates one pod per claim of `set` as fast as the apiserver takes them, and measures until
/// all are bound to nodes, or fails after `timeout`. Every 100 ms it asks the apiserver for one
/// unscheduled pod: a consistent read served from the watch cache, whose cost does not grow with
/// the number of pods still pending (a slower run is not loaded more).
pub async fn run(
    client: &Client,
    info: &crate::ClusterInfo,
    set: &WorkSet,
    pods: usize,
    nodes: usize,
    timeout: Duration,
) -> Result<RunResult> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &set.ns);
    let before = ExtenderTotals::read(info.stork_admin_port)?;
    let sched0 = SchedulerTotals::read(info, set.profile).await;
    let cpu0 = cpu_seconds();
    let created = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let (a, c, profile) = (api.clone(), created.clone(), set.profile);
    let mut creator = tokio::spawn(concurrently(pods, move |i| {
        let (api, created) = (a.clone(), c.clone());
        async move {
            let pod = pod_json(&format!("p-{i}"), &format!("c-{i}"), profile, json!({LABEL: "measure"}), json!({}));
            create_pod(&api, pod, profile).await?;
            created.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }));
    let mut create_seconds = None;
    let unscheduled = ListParams::default().labels(&format!("{LABEL}=measure")).fields("spec.nodeName=");
    let any_unscheduled = unscheduled.clone().limit(1);
    let deadline = t0 + timeout;
    let seconds = loop {
        if create_seconds.is_none() && creator.is_finished() {
            (&mut creator).await??;
            create_seconds = Some(t0.elapsed().as_secs_f64());
        }
        let asked = t0.elapsed().as_secs_f64();
        let pending = api.list_metadata(&any_unscheduled).await?;
        if create_seconds.is_some() && pending.items.is_empty() {
            break asked;
        }
        if Instant::now() >= deadline {
            creator.abort();
            let pending = api.list_metadata(&unscheduled).await?;
            let sample: Vec<String> = pending.items.iter().take(3).filter_map(|p| p.metadata.name.clone()).collect();
            let why = match sample.first() {
                Some(name) => {
                    format!("{:?}", api.get(name).await.ok().and_then(|p| p.status).and_then(|s| s.conditions))
                }
                None => String::new(),
            };
            bail!(
                "{} run in {}: not all pods scheduled after {timeout:?}; last saw {} created, {} unscheduled (e.g. {sample:?}: {why})",
                set.profile.label(),
                set.ns,
                created.load(Ordering::Relaxed),
                pending.items.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await; // poll until the deadline
    };
    let cpu = cpu_delta(&cpu0, &cpu_seconds());
    let [filter, prioritize] = ExtenderTotals::read(info.stork_admin_port)?.since(before);
    let scheduler = match (sched0, SchedulerTotals::read(info, set.profile).await) {
        (Ok(a), Ok(b)) => b.since(a),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("scheduler metrics unavailable: {e:#}");
            BTreeMap::new()
        }
    };
    let list = api.list(&ListParams::default().labels(&format!("{LABEL}=measure"))).await?;
    let on_replica_node = list
        .items
        .iter()
        .filter(|p| {
            let i = p.metadata.name.as_deref().and_then(|n| n.strip_prefix("p-")).and_then(|n| n.parse().ok());
            let node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
            matches!((i, node), (Some(i), Some(node)) if set.replicas(i, nodes).iter().any(|r| r == node))
        })
        .count();
    let events: Api<Event> = Api::namespaced(client.clone(), &set.ns);
    let failed = events.list(&ListParams::default().fields("reason=FailedScheduling")).await?.items.len();
    Ok(RunResult {
        profile: set.profile.label(),
        namespace: set.ns.clone(),
        pods,
        create_seconds: create_seconds.unwrap_or(seconds),
        seconds,
        pods_per_sec: pods as f64 / seconds,
        extender_filter_calls: filter.0,
        extender_prioritize_calls: prioritize.0,
        extender_filter_mean_ms: (filter.1 * 1000.0).round() / 1000.0,
        extender_prioritize_mean_ms: (prioritize.1 * 1000.0).round() / 1000.0,
        on_replica_node,
        failed_scheduling_events: failed,
        scheduler,
        cpu_seconds: cpu,
    })
}

/// Waits until KWOK has every measured pod of `ns` Running, so the next run starts on a quiet
/// control plane. Returns how many were still not Running at the deadline.
pub async fn settle(client: &Client, ns: &str, timeout: Duration) -> usize {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("{LABEL}=measure")).fields("status.phase!=Running").limit(1);
    let r = poll("pods Running", Duration::from_millis(250), timeout, || async {
        let list = api.list_metadata(&lp).await.map_err(|e| e.to_string())?;
        if list.items.is_empty() { Ok(0) } else { Err("some pods are not Running".to_string()) }
    })
    .await;
    r.unwrap_or(usize::MAX)
}
