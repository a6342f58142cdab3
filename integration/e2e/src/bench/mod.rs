//! End-to-end scheduling throughput (`stork-sched-bench`): the same pods with driver PVCs
//! through the `stork` profile (kube-scheduler + stork's extender) and through the default
//! profile, on a [`Cluster`](crate::Cluster) with KWOK nodes.
//!
//! Setup avoids the controllers' client rate limits so it takes seconds, not minutes: nodes are
//! untainted as soon as KWOK reports them Ready, and PV/PVC pairs are bound here, from both sides
//! and with their statuses, exactly as the PV controller would leave them (it then has nothing
//! to write).

mod cpu;
mod measure;
mod setup;

use std::{
    collections::HashMap,
    future::Future,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, api::PostParams};
use serde_json::{Value, json};
use tokio::task::JoinSet;

pub use self::{
    cpu::{cpu_delta, cpu_seconds, quiesce},
    measure::{RunResult, metric, metric_sum, run, scheduler_metrics, settle},
    setup::{bind_claims, create_nodes, wait_nodes_ready, warm_up, warm_up_set},
};
pub use crate::cluster::ClusterOptions;

/// Requests in flight while creating objects.
pub const IN_FLIGHT: usize = 32;
/// Label on everything the benchmark creates (value: what it is).
pub const LABEL: &str = "stork-bench";
/// The annotation that makes stork's mutating webhook leave a pod alone.
pub const SKIP_WEBHOOK: &str = stork::webhook::DEFAULT_SKIP_ANNOTATION;

/// Which scheduler profile a run's pods ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The `stork` kube-scheduler, which calls stork's extender.
    Stork,
    /// The default kube-scheduler, no extender.
    Default,
}

impl Profile {
    /// `spec.schedulerName` of the pods.
    pub fn scheduler_name(self) -> &'static str {
        match self {
            Profile::Stork => stork::model::STORK_SCHEDULER,
            Profile::Default => "default-scheduler",
        }
    }

    /// Short name for namespaces and reports.
    pub fn label(self) -> &'static str {
        match self {
            Profile::Stork => "stork",
            Profile::Default => "default",
        }
    }
}

/// Name of KWOK node `i`.
pub fn node_name(i: usize) -> String {
    format!("bench-n{i:05}")
}

pub(crate) fn node_ip(i: usize) -> String {
    format!("10.{}.{}.{}", 100 + i / 65_536, (i / 256) % 256, i % 256)
}

/// One run's work: `pods` claims `c-<i>` in `ns`, bound to PVs `<ns>-<i>` (the driver's volume
/// ids), each with three replicas spread over the nodes.
#[derive(Debug, Clone)]
pub struct WorkSet {
    /// Namespace of the claims and pods.
    pub ns: String,
    /// Profile the pods use.
    pub profile: Profile,
    /// Offset of this set's replica placement, so sets differ.
    pub salt: usize,
}

impl WorkSet {
    /// PV (= driver volume) of claim `i`.
    pub fn pv(&self, i: usize) -> String {
        format!("{}-{i}", self.ns)
    }

    /// Replica nodes of volume `i`: three nodes a third of the cluster apart.
    pub fn replicas(&self, i: usize, nodes: usize) -> Vec<String> {
        let start = (i + self.salt * 101) % nodes;
        let step = (nodes / 3).max(1);
        let mut out: Vec<String> = (0..3).map(|k| node_name((start + k * step) % nodes)).collect();
        out.dedup();
        out
    }
}

/// Runs `job(i)` for `i` in `0..n` with at most [`IN_FLIGHT`] at once; the first error wins.
pub async fn concurrently<F, Fut>(n: usize, job: F) -> Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let mut set = JoinSet::new();
    for i in 0..n {
        if set.len() >= IN_FLIGHT
            && let Some(done) = set.join_next().await
        {
            done??;
        }
        set.spawn(job(i));
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

pub(crate) async fn create<K>(api: &Api<K>, obj: Value) -> Result<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(obj)?;
    Ok(api.create(&PostParams::default(), &obj).await?)
}

/// Polls `probe` every `every` until it yields `Ok`, or fails after `timeout` with what it last saw.
pub async fn poll<T, F, Fut>(what: &str, every: Duration, timeout: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() >= deadline => {
                bail!("timed out after {timeout:?} waiting for {what}; last saw: {last}")
            }
            Err(_) => tokio::time::sleep(every).await, // poll until the deadline
        }
    }
}

/// Pod `name` in `ns` using `claim`, for `profile`. Default-profile pods carry the webhook's
/// opt-out annotation: stork would otherwise route them to the `stork` scheduler.
pub fn pod_json(name: &str, claim: &str, profile: Profile, labels: Value, annotations: Value) -> Value {
    let mut annotations = annotations;
    if profile == Profile::Default {
        annotations[SKIP_WEBHOOK] = json!("true");
    }
    json!({
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {
            "schedulerName": profile.scheduler_name(),
            "containers": [{"name": "app", "image": "fake"}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
        }
    })
}

/// Creates a pod and checks that admission left it on `profile`'s scheduler.
pub(crate) async fn create_pod(pods: &Api<Pod>, pod: Value, profile: Profile) -> Result<Pod> {
    let created: Pod = create(pods, pod).await?;
    let got = created.spec.as_ref().and_then(|s| s.scheduler_name.clone()).unwrap_or_default();
    if got != profile.scheduler_name() {
        bail!(
            "pod {:?} was created with schedulerName {got:?}, not {:?}",
            created.metadata.name,
            profile.scheduler_name()
        );
    }
    Ok(created)
}

/// The mock topology: `nodes` Online driver nodes (ids = node names), every set's volumes, and
/// the warm-up volumes replicated on every node.
pub fn topology(nodes: usize, sets: &[WorkSet], pods: usize, warm_ns: &str) -> Value {
    let driver_nodes: Vec<Value> =
        (0..nodes).map(|i| crate::objects::driver_node(&node_name(i), &node_ip(i), "Online")).collect();
    let mut volumes: Vec<Value> = Vec::with_capacity(sets.len() * pods + 2);
    for set in sets {
        volumes.extend((0..pods).map(|i| json!({"id": set.pv(i), "replicas": set.replicas(i, nodes)})));
    }
    let everywhere: Vec<String> = (0..nodes).map(node_name).collect();
    let warm = warm_up_set(warm_ns);
    volumes.extend((0..2).map(|i| json!({"id": warm.pv(i), "replicas": everywhere})));
    json!({"nodes": driver_nodes, "volumes": volumes})
}

/// Median of `xs` (mean of the middle two for an even count); 0 for none.
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Per-run results grouped by profile.
pub fn by_profile(runs: &[RunResult]) -> HashMap<&'static str, Vec<f64>> {
    let mut out: HashMap<&'static str, Vec<f64>> = HashMap::new();
    for r in runs {
        out.entry(r.profile).or_default().push(r.pods_per_sec);
    }
    out
}
