//! End-to-end scheduling throughput (`stork-sched-bench`): the same pods with driver PVCs
//! through the `stork` profile (kube-scheduler + stork's extender) and through the default
//! profile, on a [`Cluster`](crate::Cluster) with KWOK nodes.
//!
//! Setup avoids the controllers' client rate limits so it takes seconds, not minutes: nodes are
//! untainted as soon as KWOK reports them Ready, and PV/PVC pairs are bound here, from both sides
//! and with their statuses, exactly as the PV controller would leave them (it then has nothing
//! to write).

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use tokio::task::JoinSet;

pub use crate::cluster::ClusterOptions;
use crate::objects::PROVISIONER;

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
            Profile::Stork => stork::webhook::mutate_pod::STORK_SCHEDULER,
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

fn node_ip(i: usize) -> String {
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

async fn create<K>(api: &Api<K>, obj: Value) -> Result<K>
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

/// Creates `n` KWOK nodes concurrently (see [`wait_nodes_ready`]).
pub async fn create_nodes(client: &Client, n: usize) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let a = api.clone();
    concurrently(n, move |i| {
        let api = a.clone();
        async move {
            let name = node_name(i);
            let node = json!({
                "metadata": {
                    "name": name,
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok", LABEL: "node"}
                },
                "status": {"addresses": [{"type": "InternalIP", "address": node_ip(i)}, {"type": "Hostname", "address": name}]}
            });
            create(&api, node).await.map(|_| ()).with_context(|| format!("create node {name}"))
        }
    })
    .await
}

/// Waits once until all `n` nodes are Ready and untainted. The not-ready taint the apiserver
/// adds at creation is removed here as soon as a node is Ready: the node lifecycle controller
/// would do the same, but at the controller manager's 20 QPS.
pub async fn wait_nodes_ready(client: &Client, n: usize) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let lp = ListParams::default().labels(&format!("{LABEL}=node"));
    poll("all nodes Ready and untainted", Duration::from_millis(500), Duration::from_secs(300), || async {
        let list = api.list(&lp).await.map_err(|e| e.to_string())?;
        let mut tainted = Vec::new();
        let (mut ready, mut clean) = (0, 0);
        for node in &list.items {
            let is_ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let has_taints = node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some_and(|t| !t.is_empty());
            ready += usize::from(is_ready);
            match (is_ready, has_taints) {
                (true, true) => tainted.push(node.metadata.name.clone().unwrap_or_default()),
                (true, false) => clean += 1,
                _ => {}
            }
        }
        let tainted = Arc::new(tainted);
        let (a, t) = (api.clone(), tainted.clone());
        let untaint = concurrently(tainted.len(), move |i| {
            let (api, name) = (a.clone(), t[i].clone());
            async move {
                let patch = json!({"spec": {"taints": null}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                Ok(())
            }
        });
        untaint.await.map_err(|e| e.to_string())?;
        if clean == n {
            Ok(())
        } else {
            Err(format!("{} nodes, {ready} Ready, {clean} Ready and untainted", list.items.len()))
        }
    })
    .await
}

/// Claim `c-<i>` of `set` and its PV, bound to each other as the PV controller leaves them:
/// the claim annotated bind-completed (what kube-scheduler checks), the PV's claimRef carrying
/// the claim's uid, both statuses Bound.
async fn bind_pair(client: Client, set: Arc<WorkSet>, i: usize) -> Result<()> {
    let (claim, pv) = (format!("c-{i}"), set.pv(i));
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &set.ns);
    let pvs: Api<PersistentVolume> = Api::all(client);
    let created = create(
        &pvcs,
        json!({
            "metadata": {"name": claim, "labels": {LABEL: "claim"},
                         "annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
            "spec": {"storageClassName": "mock-sc", "volumeName": pv, "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}
        }),
    )
    .await
    .with_context(|| format!("create pvc {}/{claim}", set.ns))?;
    let uid = created.metadata.uid.context("claim without uid")?;
    create(
        &pvs,
        json!({
            "metadata": {"name": pv, "labels": {LABEL: "pv"}},
            "spec": {
                "storageClassName": "mock-sc", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": set.ns, "name": claim, "uid": uid},
                "csi": {"driver": PROVISIONER, "volumeHandle": pv}
            }
        }),
    )
    .await
    .with_context(|| format!("create pv {pv}"))?;
    mark_bound(&pvcs, &pvs, &claim, &pv).await
}

async fn mark_bound(
    pvcs: &Api<PersistentVolumeClaim>,
    pvs: &Api<PersistentVolume>,
    claim: &str,
    pv: &str,
) -> Result<()> {
    let pp = PatchParams::default();
    let status =
        json!({"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}});
    pvcs.patch_status(claim, &pp, &Patch::Merge(&status)).await.with_context(|| format!("bind pvc {claim}"))?;
    let status = json!({"status": {"phase": "Bound"}});
    pvs.patch_status(pv, &pp, &Patch::Merge(&status)).await.with_context(|| format!("bind pv {pv}"))?;
    Ok(())
}

/// Creates `per_set` bound claims in every set, then waits until all claims and PVs are Bound
/// (re-marking any the PV controller saw half-made and declared Lost).
pub async fn bind_claims(client: &Client, sets: &[WorkSet], per_set: usize) -> Result<()> {
    let sets: Vec<Arc<WorkSet>> = sets.iter().cloned().map(Arc::new).collect();
    let c = client.clone();
    let s = sets.clone();
    concurrently(sets.len() * per_set, move |k| bind_pair(c.clone(), s[k / per_set].clone(), k % per_set)).await?;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let total = sets.len() * per_set;
    poll("all claims and PVs Bound", Duration::from_millis(500), Duration::from_secs(180), || async {
        let mut bound_claims = 0;
        for set in &sets {
            let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &set.ns);
            let list =
                pvcs.list(&ListParams::default().labels(&format!("{LABEL}=claim"))).await.map_err(|e| e.to_string())?;
            for c in list.items {
                let name = c.metadata.name.clone().unwrap_or_default();
                if c.status.and_then(|s| s.phase).as_deref() == Some("Bound") {
                    bound_claims += 1;
                } else if let Some(pv) = c.spec.and_then(|s| s.volume_name) {
                    mark_bound(&pvcs, &pvs, &name, &pv).await.map_err(|e| format!("{e:#}"))?;
                }
            }
        }
        let list = pvs.list(&ListParams::default().labels(&format!("{LABEL}=pv"))).await.map_err(|e| e.to_string())?;
        let bound_pvs =
            list.items.iter().filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")).count();
        if bound_claims == total && bound_pvs >= total {
            Ok(())
        } else {
            Err(format!("{bound_claims}/{total} claims and {bound_pvs}/{total} PVs Bound"))
        }
    })
    .await
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
async fn create_pod(pods: &Api<Pod>, pod: Value, profile: Profile) -> Result<Pod> {
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

/// The warm-up set: claim `c-0` for the `stork` pod, `c-1` for the default one; their volumes
/// are on every node (see [`topology`]).
pub fn warm_up_set(ns: &str) -> WorkSet {
    WorkSet { ns: ns.into(), profile: Profile::Stork, salt: 0 }
}

/// Binds the warm-up claims (after every other claim is Bound) and schedules one pod per
/// profile on them. Both schedulers and stork then have every claim of the benchmark Bound in
/// their caches, as watches deliver in order. The `stork` pod insists on a replica node
/// (`preferLocalNodeOnly`; its volume is on every node), which also proves that stork has
/// loaded the topology.
pub async fn warm_up(client: &Client, ns: &str) -> Result<()> {
    bind_claims(client, &[warm_up_set(ns)], 2).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for (i, profile) in [Profile::Stork, Profile::Default].into_iter().enumerate() {
        let name = format!("warm-{}", profile.label());
        let annotations = match profile {
            Profile::Stork => json!({stork::knobs::PREFER_LOCAL_NODE_ONLY: "true"}),
            Profile::Default => json!({}),
        };
        let pod = pod_json(&name, &format!("c-{i}"), profile, json!({LABEL: "warm-up"}), annotations);
        create_pod(&pods, pod, profile).await?;
    }
    for profile in [Profile::Stork, Profile::Default] {
        let name = format!("warm-{}", profile.label());
        poll(
            &format!("warm-up pod {name} scheduled"),
            Duration::from_millis(250),
            Duration::from_secs(180),
            || async {
                let p = pods.get(&name).await.map_err(|e| e.to_string())?;
                match p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                    Some(n) => Ok(n),
                    None => Err(format!("{:?}", p.status.and_then(|s| s.conditions))),
                }
            },
        )
        .await?;
    }
    Ok(())
}

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

/// CPU seconds used so far by this process (`bench`), by each child process (named by
/// component: `etcd`, `apiserver`, `controller-manager`, `scheduler`, `stork-scheduler`, `kwok`,
/// `stork`), and by the whole machine (`machine`, from /proc/stat). Linux only; empty elsewhere.
pub fn cpu_seconds() -> BTreeMap<String, f64> {
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let me = std::process::id().to_string();
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // Fields after the parenthesised command name: state ppid … utime(14) stime(15).
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (Some(ppid), Some(ut), Some(st)) = (f.get(1), f.get(11), f.get(12)) else { continue };
        let name = if pid == me {
            "bench".to_string()
        } else if *ppid == me {
            let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            component(&String::from_utf8_lossy(&cmd).replace('\0', " "))
        } else {
            continue;
        };
        let secs = (ut.parse::<f64>().unwrap_or(0.0) + st.parse::<f64>().unwrap_or(0.0)) / tick;
        *out.entry(name).or_insert(0.0) += secs;
    }
    if let Some(cpu) = std::fs::read_to_string("/proc/stat").ok().and_then(|s| s.lines().next().map(str::to_owned)) {
        // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
        let v: Vec<f64> = cpu.split_whitespace().skip(1).take(8).filter_map(|x| x.parse().ok()).collect();
        if v.len() == 8 {
            out.insert("machine".into(), (v.iter().sum::<f64>() - v[3] - v[4]) / tick);
        }
    }
    out
}

fn component(cmdline: &str) -> String {
    let mut words = cmdline.split_whitespace();
    let bin = words.next().unwrap_or_default();
    if bin.ends_with("k8s-local") {
        let sub = words.next().unwrap_or("k8s");
        if sub == "scheduler" && cmdline.contains("stork-scheduler.json") {
            "stork-scheduler".into()
        } else {
            sub.into()
        }
    } else {
        bin.rsplit('/').next().unwrap_or(bin).to_string()
    }
}

/// `after - before` per key, rounded to 0.1 s, plus `others`: the machine's busy time not spent
/// by this process or the cluster (someone else's load, which skews the figures).
pub fn cpu_delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> =
        after.iter().map(|(k, v)| (k.clone(), v - before.get(k).unwrap_or(&0.0))).collect();
    if let Some(machine) = out.get("machine").copied() {
        let ours: f64 = out.iter().filter(|(k, _)| *k != "machine").map(|(_, v)| v).sum();
        out.insert("others".into(), (machine - ours).max(0.0));
    }
    out.values_mut().for_each(|v| *v = (*v * 10.0).round() / 10.0);
    out
}

/// CPUs the cluster's components (not this process, not other processes) used on average.
fn cluster_cores(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, wall: Duration) -> f64 {
    let used: f64 = after
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "machine" | "bench"))
        .map(|(k, v)| v - before.get(k).unwrap_or(&0.0))
        .sum();
    used / wall.as_secs_f64().max(0.001)
}

/// Waits until the cluster's components together use less than `cores` CPUs over a second
/// (KWOK's node heartbeats keep a base load), at most `max`; returns the last rate seen.
pub async fn quiesce(cores: f64, max: Duration) -> f64 {
    let deadline = Instant::now() + max;
    let (mut prev, mut at) = (cpu_seconds(), Instant::now());
    loop {
        // A rate needs an interval: one second per sample.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = cpu_seconds();
        let busy = cluster_cores(&prev, &now, at.elapsed());
        if busy < cores || Instant::now() >= deadline {
            return busy;
        }
        (prev, at) = (now, Instant::now());
    }
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
