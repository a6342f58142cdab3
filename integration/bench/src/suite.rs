//! Runs a [`Plan`]: starts stork per cluster size, checks the fixtures answer as intended, drives
//! oha, and collects [`Results`].

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use stork_synth::SynthCluster;

use crate::{
    fixtures::{self, Mode},
    oha::{Load, Oha, Protocol, Stats},
    plan::{CLUSTER_VOLUMES, Group, LOAD_CONCURRENCY, MemoryPlan, Plan, WebhookPlan},
    probe,
    results::{ExtenderPoint, Latency, Machine, MemoryResult, Results, Section, WebhookPoint, load_average, median},
    stork::{Certs, Stork},
};

/// The recorded AdmissionReview of a pod using claim `default/data-1`.
const REVIEW: &str = "tests/data/admission/pod-with-driver-pvc.json";
/// Generous: loading 100,000 objects takes a few seconds on two cores.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// Everything a run needs.
pub struct Runner {
    /// The load generator.
    pub oha: Oha,
    /// The stork binary under test.
    pub stork: PathBuf,
    /// Repository root.
    pub root: PathBuf,
    /// The harness command line, for the record.
    pub command: String,
    /// Smoke run.
    pub smoke: bool,
}

struct Ctx<'a> {
    oha: &'a Oha,
    dir: &'a Path,
    root: &'a Path,
}

impl Ctx<'_> {
    /// One run; a run in which no request succeeded is retried once (a stray failure must not
    /// cost a ten-minute suite), then fails with oha's error counts.
    fn run(&self, load: &Load) -> anyhow::Result<Stats> {
        let mut stats = self.oha.run(load)?;
        if stats.ok() == 0 {
            tracing::warn!(errors = ?stats.errors, statuses = ?stats.statuses, "no request succeeded; retrying once");
            stats = self.oha.run(load)?;
        }
        ensure!(
            stats.ok() > 0,
            "no request succeeded (errors {:?}, statuses {:?}): {}",
            stats.errors,
            stats.statuses,
            self.oha.command_line(load)
        );
        Ok(stats)
    }

    /// Keeps the first command line of each kind of run (transport, concurrency, length).
    fn remember(&self, loads: &mut Vec<String>, load: &Load) {
        let line = self.oha.command_line(load).replace(&self.dir.display().to_string(), "$DIR");
        let line = line.replace(&format!("{}/", self.root.display()), "");
        let kind = |l: &str| l.split_whitespace().filter(|w| !w.contains('/')).collect::<Vec<_>>().join(" ");
        if !loads.iter().any(|l| kind(l) == kind(&line)) {
            loads.push(line);
        }
    }
}

impl Runner {
    /// Runs the plan.
    pub fn run(&self, plan: &Plan) -> anyhow::Result<Results> {
        let start = Instant::now();
        let machine = Machine::detect(&self.root, self.oha.version()?);
        let dir = tempfile::Builder::new().prefix("stork-bench-").tempdir()?;
        // A private copy: a rebuild of target/release/stork during the run must not mix versions.
        let bin = dir.path().join("stork");
        std::fs::copy(&self.stork, &bin).with_context(|| format!("copying {}", self.stork.display()))?;
        let certs = Certs::issue(&bin, dir.path())?;
        let ctx = Ctx { oha: &self.oha, dir: dir.path(), root: &self.root };
        let mut extender = Section::<ExtenderPoint>::default();
        let mut webhook = Section::<WebhookPoint>::default();
        for tier in &plan.tiers {
            let files = fixtures::write_cluster(dir.path(), tier.nodes, CLUSTER_VOLUMES, CLUSTER_VOLUMES)?;
            let cluster = SynthCluster::new(tier.nodes, CLUSTER_VOLUMES);
            let mut stork = Stork::start(&bin, dir.path(), &files.objects, &files.topology, &certs)?;
            let ready = stork.wait_ready(READY_TIMEOUT)?;
            tracing::info!(nodes = tier.nodes, ready_ms = ready.as_millis() as u64, "stork ready");
            extender.servers.push(stork.command.clone());
            for group in &tier.groups {
                for &volumes in &group.volumes {
                    let (body, body_bytes) = fixtures::write_body(dir.path(), &cluster, group.mode, volumes)?;
                    check_extender(&stork, &body, group.mode).with_context(|| stork.log_tail())?;
                    for &protocol in &group.protocols {
                        let point = extender_point(&ctx, &stork, group, &body, protocol, &mut extender.loads)?;
                        let point = ExtenderPoint { nodes: tier.nodes, volumes, body_bytes, ..point };
                        log_point(&point);
                        extender.points.push(point);
                    }
                    std::fs::remove_file(&body)?;
                }
            }
            if tier.webhook {
                webhook.servers.push(stork.command.clone());
                webhook.points = webhook_points(&ctx, &stork, &certs, &self.root, &plan.webhook, &mut webhook.loads)?;
            }
        }
        let memory = match &plan.memory {
            Some(m) => Some(memory(&bin, dir.path(), &certs, m)?),
            None => None,
        };
        let machine = Machine { load_end: load_average(), ..machine };
        Ok(Results {
            machine,
            smoke: self.smoke,
            command: self.command.clone(),
            total_secs: start.elapsed().as_secs_f64(),
            extender,
            webhook,
            memory,
            micro: if self.smoke { vec![] } else { crate::criterion::collect(&self.root.join("target/criterion")) },
            claims: if self.smoke {
                None
            } else {
                crate::criterion::claim_percentiles(&self.root.join("target/criterion"))
            },
        })
    }
}

fn url(stork: &Stork, protocol: Protocol, path: &str) -> String {
    match protocol {
        Protocol::Http1 => format!("http://{}{path}", stork.extender),
        Protocol::Http1Tls | Protocol::Http2Tls => format!("https://{}{path}", stork.https),
    }
}

/// One request of each verb on the plain listener: 200, and a decision that keeps nodes.
fn check_extender(stork: &Stork, body: &Path, mode: Mode) -> anyhow::Result<()> {
    let bytes = std::fs::read(body)?;
    for verb in ["/filter", "/prioritize"] {
        let r = probe::request(stork.extender, None, "POST", verb, &bytes)?;
        ensure!(r.status == 200, "{verb} answered {}: {}", r.status, String::from_utf8_lossy(&r.body));
        let v: serde_json::Value = serde_json::from_slice(&r.body).context("extender response is not JSON")?;
        let kept = match (verb, mode) {
            ("/filter", Mode::Names) => v["NodeNames"].as_array().map(Vec::len),
            ("/filter", Mode::Nodes) => v["Nodes"]["items"].as_array().map(Vec::len),
            _ => v.as_array().map(Vec::len),
        };
        ensure!(kept.unwrap_or(0) > 0, "{verb} kept no node; fixture or stork is wrong: {v:.200}");
    }
    Ok(())
}

fn extender_point(
    ctx: &Ctx,
    stork: &Stork,
    group: &Group,
    body: &Path,
    protocol: Protocol,
    loads: &mut Vec<String>,
) -> anyhow::Result<ExtenderPoint> {
    let mut latency = |path: &str| -> anyhow::Result<Latency> {
        let load = Load { url: url(stork, protocol, path), body, concurrency: 1, amount: group.latency, protocol };
        ctx.remember(loads, &load);
        let runs = (0..group.latency_runs).map(|_| ctx.run(&load)).collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Latency::of(runs))
    };
    let (filter, prioritize) = (latency("/filter")?, latency("/prioritize")?);
    let mut load = |path: &str| -> anyhow::Result<Stats> {
        let amount = group.load;
        let load = Load { url: url(stork, protocol, path), body, concurrency: LOAD_CONCURRENCY, amount, protocol };
        ctx.remember(loads, &load);
        ctx.run(&load)
    };
    let (filter_load, prioritize_load) = (load("/filter")?, load("/prioritize")?);
    Ok(ExtenderPoint {
        nodes: 0,
        mode: group.mode,
        volumes: 0,
        protocol,
        body_bytes: 0,
        filter,
        prioritize,
        filter_load,
        prioritize_load,
        concurrency: LOAD_CONCURRENCY,
    })
}

fn log_point(p: &ExtenderPoint) {
    tracing::info!(
        nodes = p.nodes,
        mode = p.mode.label(),
        volumes = p.volumes,
        protocol = p.protocol.label(),
        pair_p50_ms = format!("{:.3}", p.pair_p50_ms()),
        pair_p99_ms = format!("{:.3}", p.pair_p99_ms()),
        filter_rps = p.filter_load.rps.round(),
        prioritize_rps = p.prioritize_load.rps.round(),
        not_ok = p.not_ok(),
        "extender point"
    );
}

fn webhook_points(
    ctx: &Ctx,
    stork: &Stork,
    certs: &Certs,
    root: &Path,
    plan: &WebhookPlan,
    loads: &mut Vec<String>,
) -> anyhow::Result<Vec<WebhookPoint>> {
    let body = root.join(REVIEW);
    let review = std::fs::read(&body).with_context(|| format!("reading {}", body.display()))?;
    let r = probe::request(stork.https, Some(&certs.client), "POST", "/mutate", &review)?;
    let v: serde_json::Value = serde_json::from_slice(&r.body).context("/mutate response is not JSON")?;
    if r.status != 200 || v["response"]["patch"].as_str().is_none_or(str::is_empty) {
        bail!("/mutate did not patch the recorded pod ({}): {v:.300}", r.status);
    }
    let mut points = vec![];
    for &protocol in &plan.protocols {
        for &concurrency in &plan.concurrencies {
            let load =
                Load { url: url(stork, protocol, "/mutate"), body: &body, concurrency, amount: plan.amount, protocol };
            ctx.remember(loads, &load);
            let runs = (0..plan.runs).map(|_| ctx.run(&load)).collect::<anyhow::Result<Vec<_>>>()?;
            let rps = median(runs.iter().map(|r| r.rps));
            let point = WebhookPoint { protocol, concurrency, rps, latency: Latency::of(runs.clone()), runs };
            tracing::info!(
                protocol = protocol.label(),
                concurrency,
                rps = rps.round(),
                p99_ms = format!("{:.3}", point.latency.p99_ms),
                "webhook point"
            );
            points.push(point);
        }
    }
    Ok(points)
}

/// Starts stork on a large generated cluster and reads its memory once ready; the same on an
/// empty cluster gives the fixed cost.
fn memory(bin: &Path, dir: &Path, certs: &Certs, plan: &MemoryPlan) -> anyhow::Result<MemoryResult> {
    let measure = |nodes, volumes, topology_volumes| -> anyhow::Result<_> {
        let files = fixtures::write_cluster(dir, nodes, volumes, topology_volumes)?;
        let mut stork = Stork::start(bin, dir, &files.objects, &files.topology, certs)?;
        let ready = stork.wait_ready(READY_TIMEOUT)?;
        let mem = stork.memory()?;
        let command = stork.command.clone();
        drop(stork);
        std::fs::remove_file(&files.objects)?;
        Ok((files, ready, mem, command))
    };
    let (_, _, empty, _) = measure(0, 0, 0)?;
    let (files, ready, mem, command) = measure(plan.nodes, plan.volumes, plan.topology_volumes)?;
    tracing::info!(
        nodes = plan.nodes,
        pvcs = plan.volumes,
        peak_mib = mem.peak_kib / 1024,
        rss_mib = mem.rss_kib / 1024,
        empty_peak_mib = empty.peak_kib / 1024,
        ready_secs = ready.as_secs_f64(),
        "memory"
    );
    Ok(MemoryResult {
        nodes: plan.nodes,
        pvcs: plan.volumes,
        topology_volumes: plan.topology_volumes,
        objects_bytes: files.objects_bytes,
        ready_secs: ready.as_secs_f64(),
        peak_kib: mem.peak_kib,
        rss_kib: mem.rss_kib,
        empty_peak_kib: empty.peak_kib,
        command,
    })
}

/// Checks every request of a run got a 200.
pub fn check_all_ok(results: &Results) -> anyhow::Result<()> {
    let ext: u64 = results.extender.points.iter().map(ExtenderPoint::not_ok).sum();
    let hook: u64 = results.webhook.points.iter().flat_map(|p| &p.runs).map(Stats::not_ok).sum();
    ensure!(ext + hook == 0, "{ext} extender and {hook} webhook requests did not get a 200 (see the results file)");
    Ok(())
}
