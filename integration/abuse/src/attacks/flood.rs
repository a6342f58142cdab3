//! Attack 3, extender flood: 8 clients send worst-case `/prioritize` requests over HTTPS — a pod
//! with 10k claims (all bound, replicated volumes of the mock driver) offered 50k node names, 12k
//! of them driver nodes, seconds of CPU each on a server without limits — while one more client
//! sends `/mutate` reviews, each on a fresh TLS connection, at 20 a second for 15 s (smoke: 8 s).
//!
//! Asserted: webhook p99 < 100 ms and every review answered; each extender answer is 200 with
//! scores, 200 with a non-empty `Error`, or 503, within 10 s.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use anyhow::Context;
use serde_json::{Value, json};
use stork_bench::stork::Extra;
use stork_synth::{self as synth, SynthCluster};

use crate::{
    client::{Conn, Request},
    fixtures::names_args,
    harness::Ctx,
    latency::{self, Pace},
    report::{Outcome, ms, size},
    wait::{self, Stop},
};

/// Claims of the pod (each a bound volume with three replicas).
const VOLUMES: usize = 10_000;
/// Node names offered: stork's default `--extender-max-nodes` (more is refused with 413 before
/// any work is done, which would spare the server the flood).
const NAMES: usize = 50_000;
/// Of which driver nodes (the mock topology), matched by name.
const DRIVER_NODES: usize = 12_000;
/// Of which Kubernetes nodes (the objects file).
const KUBE_NODES: usize = 1_000;
/// Flooding clients.
const CLIENTS: usize = 8;
/// Longer than this is a hang.
const EXTENDER_LIMIT: Duration = Duration::from_secs(10);

/// Writes the objects and topology of the flood cluster into `dir`.
fn write_cluster(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let objects = dir.join("objects.yaml");
    let topology = dir.join("topology.json");
    let mut out = BufWriter::new(File::create(&objects).with_context(|| format!("creating {}", objects.display()))?);
    synth::write_objects(&mut out, KUBE_NODES, VOLUMES)?;
    out.flush()?;
    let mut out = BufWriter::new(File::create(&topology).with_context(|| format!("creating {}", topology.display()))?);
    synth::write_topology(&mut out, DRIVER_NODES, VOLUMES)?;
    out.flush()?;
    Ok((objects, topology))
}

/// How one flood request ended.
fn classify(result: &std::io::Result<crate::client::Response>, took: Duration) -> String {
    let body_kind = |body: &[u8]| match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => "200 scores".to_string(),
        _ => match serde_json::from_slice::<Value>(body) {
            Ok(v) if v["Error"].as_str().is_some_and(|e| !e.is_empty()) => "200 Error".into(),
            _ => "200 other (bad)".into(),
        },
    };
    match result {
        _ if took > EXTENDER_LIMIT => "hang > 10 s (bad)".into(),
        Err(e) => format!("no answer: {} (bad)", e.kind()),
        Ok(r) if r.status == 200 => body_kind(&r.body),
        Ok(r) if r.status == 503 => "503".into(),
        Ok(r) => format!("{} (bad)", r.status),
    }
}

/// Runs the attack.
pub fn run(ctx: &Ctx, out: &mut Outcome) -> anyhow::Result<()> {
    let dir = ctx.dir("flood")?;
    let (objects, topology) = write_cluster(&dir)?;
    let target = ctx.start(&dir, &objects, &topology, &Extra::default())?;
    let names: Vec<String> = (0..NAMES).map(synth::node_name).collect();
    let body = names_args(&SynthCluster::pod(VOLUMES), &names);
    out.figure(
        "request",
        format!("{VOLUMES} claims × {NAMES} node names ({DRIVER_NODES} driver nodes), {}", size(body.len() as u64)),
    );
    let req = Request::post("/prioritize", &body);

    // The cost of one request on an idle server, for scale.
    let start = Instant::now();
    let alone = Conn::new(target.plain.clone()).request(&req, 8 << 20, Duration::from_secs(120));
    out.figure(
        "one_request_alone",
        json!({"ms": ms(start.elapsed()).round(), "answer": classify(&alone, Duration::ZERO)}),
    );

    let duration = Duration::from_secs(if ctx.smoke { 8 } else { 15 });
    let stop = Stop::new();
    // Clients that have had an answer (or a failure): once all have, the server is flooded.
    let answered = AtomicUsize::new(0);
    let (flood, samples, flooding) = std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                s.spawn(|| {
                    let mut conn = Conn::new(target.https.clone());
                    let mut seen = Vec::new();
                    while !stop.is_set() {
                        let start = Instant::now();
                        let result = conn.request(&req, 8 << 20, EXTENDER_LIMIT + Duration::from_millis(500));
                        let took = start.elapsed();
                        let busy = result.as_ref().is_ok_and(|r| r.status == 503);
                        if result.is_err() {
                            conn = Conn::new(target.https.clone());
                        }
                        if seen.is_empty() {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        seen.push((classify(&result, took), took));
                        // The scheduler's next attempt at a pod comes later, not at once.
                        if busy && stop.wait(Duration::from_millis(100)) {
                            break;
                        }
                    }
                    seen
                })
            })
            .collect();
        // The probe starts once every client has been answered once: the server is then busy
        // with the flood, not warming up.
        let flooding =
            wait::until(EXTENDER_LIMIT * 3, Duration::from_millis(20), || answered.load(Ordering::Relaxed) == CLIENTS);
        let pace = Pace { per_second: 20.0, count: usize::MAX, until: Instant::now() + duration };
        let samples = latency::probe(&target.https, pace, &stop);
        stop.set();
        let flood: Vec<(String, Duration)> =
            clients.into_iter().flat_map(|c| c.join().expect("flood client thread")).collect();
        (flood, samples, flooding)
    });
    out.check(flooding, || {
        format!("not every flood client had its first /prioritize answered within {:?}", EXTENDER_LIMIT * 3)
    });

    let mut answers: BTreeMap<&str, u64> = BTreeMap::new();
    for (kind, _) in &flood {
        *answers.entry(kind).or_default() += 1;
    }
    let slowest = flood.iter().map(|(_, t)| *t).max().unwrap_or_default();
    out.figure("extender_answers", json!(answers));
    out.figure("extender_slowest_ms", ms(slowest).round());
    let bad: Vec<&String> = flood.iter().map(|(k, _)| k).filter(|k| k.ends_with("(bad)")).collect();
    out.check(bad.is_empty(), || {
        format!(
            "{} of {} flood /prioritize answers were not 200/503 within 10 s; first: {}",
            bad.len(),
            flood.len(),
            bad[0]
        )
    });
    latency::assert_webhook(
        out,
        &samples,
        &format!("the extender flood ({CLIENTS} clients, {} s)", duration.as_secs()),
    );
    target.finish(ctx, out, "the extender flood");
    Ok(())
}
