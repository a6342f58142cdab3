//! BENCHMARKS.md from a results file (and the end-to-end benchmark's, when given). The lead's
//! explanations under "Misses" survive a re-render as long as the goal is still missed.

use std::fmt::Write;

use crate::{
    goals::{self, MB, Verdict},
    misses,
    plan::LOAD_CONCURRENCY,
    results::{E2eResults, ExtenderPoint, Results},
};

/// Renders the whole document; `previous` is the current BENCHMARKS.md, if any.
pub fn render(
    results: &Results,
    e2e: Option<&E2eResults>,
    previous: Option<&str>,
    before: &crate::before::Before,
) -> String {
    let verdicts = goals::judge(results, e2e);
    let mut md = String::new();
    header(&mut md, results);
    summary(&mut md, &verdicts, before, &results.machine.cpu);
    extender(&mut md, results);
    webhook(&mut md, results);
    end_to_end(&mut md, e2e);
    memory(&mut md, results);
    micro(&mut md, results);
    misses::section(&mut md, &verdicts, previous);
    md
}

fn header(md: &mut String, r: &Results) {
    let m = &r.machine;
    let _ = writeln!(
        md,
        "# Benchmarks\n\n\
         Written by `stork-bench` (integration/bench) from one run of `just bench`; rerun it rather than edit the \
         figures. Everything ran on one machine, load generator included; a load average well above 0 at \
         the start means other work shared the cores and skewed the figures.\n"
    );
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| CPU | {} |", m.cpu);
    let _ = writeln!(md, "| Cores | {} |", m.cores);
    let _ = writeln!(md, "| RAM | {:.1} GiB |", m.memory_mib as f64 / 1024.0);
    let _ = writeln!(md, "| rustc | `{}` |", m.rustc);
    let _ = writeln!(md, "| Load generator | `{}` |", m.oha);
    let _ = writeln!(md, "| Date (UTC) | {} |", m.date);
    let _ = writeln!(md, "| Commit | `{}` |", m.commit);
    let _ = writeln!(md, "| Load average (1/5/15 min) | {} at start, {} at end |", m.load_start, m.load_end);
    let _ = writeln!(md, "| Harness | `{}` ({:.0} s) |\n", r.command, r.total_secs);
}

fn summary(md: &mut String, verdicts: &[Verdict], before: &crate::before::Before, cpu: &str) {
    let heading = before.heading(cpu);
    let _ = writeln!(
        md,
        "## Goals\n\n\"Before\"{heading} is {}; \"Now\" is this run. \"—\": not measured then.\n\n\
         | Goal | Before{heading} | Now | Status |\n|---|---|---|---|",
        before.source
    );
    for v in verdicts {
        let prev = before.goals.get(&v.goal).map_or("—", String::as_str);
        let _ = writeln!(md, "| {} | {prev} | {} | {} |", v.goal, v.measured, v.status());
    }
    md.push('\n');
}

fn commands(md: &mut String, servers: &[String], loads: &[String]) {
    let _ = writeln!(md, "Commands (`$DIR` is the harness's temporary directory of generated files):\n\n```sh");
    for line in servers.iter().chain(loads) {
        let _ = writeln!(md, "{line}");
    }
    let _ = writeln!(md, "```\n");
}

fn ms(v: f64) -> String {
    if v >= 10.0 { format!("{v:.1}") } else { format!("{v:.3}") }
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.0} KiB", b as f64 / (1 << 10) as f64),
        b => format!("{b} B"),
    }
}

fn extender(md: &mut String, r: &Results) {
    let _ = writeln!(md, "## Extender over HTTP\n");
    let Some(first) = r.extender.points.first() else {
        let _ = writeln!(md, "Not run.\n");
        return;
    };
    let runs = first.filter.runs.len();
    let _ = writeln!(
        md,
        "A release `stork serve --driver mock --objects …` holds a synthetic cluster (full Node objects, 8 bound \
         claims of the mock driver's class, three replicas each); oha POSTs the same ExtenderArgs body again and \
         again over keep-alive connections: HTTP/1.1 on the plain extender listener, HTTP/2 over TLS on the HTTPS \
         listener. Latency is measured at concurrency 1 (the scheduler calls the extender serially): each point is \
         {runs} runs per verb; p50 and p99 are the medians over the runs, \"worst\" is the worst run's p99. \
         **Filter+prioritize is the sum of the two verbs' figures** (measured separately; the sum of p99s bounds \
         the pair's p99 from above). Throughput is one run per verb at concurrency {LOAD_CONCURRENCY}. Goals apply \
         to the F+P p99 column.\n"
    );
    commands(md, &r.extender.servers, &r.extender.loads);
    let mut sizes: Vec<usize> = r.extender.points.iter().map(|p| p.nodes).collect();
    sizes.dedup();
    for nodes in sizes {
        let _ = writeln!(md, "### {nodes} nodes\n");
        let _ = writeln!(
            md,
            "| Mode | Vols | Protocol | Body | Filter p50 / p99 ms | Prioritize p50 / p99 ms | **F+P p50 ms** | \
             **F+P p99 ms** (worst) | Filter req/s c={LOAD_CONCURRENCY} | Prioritize req/s c={LOAD_CONCURRENCY} | Goal |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
        for p in r.extender.points.iter().filter(|p| p.nodes == nodes) {
            let _ = writeln!(md, "{}", extender_row(p));
        }
        md.push('\n');
    }
    let failed: u64 = r.extender.points.iter().map(ExtenderPoint::not_ok).sum();
    if failed > 0 {
        let _ = writeln!(md, "**{failed} extender requests did not get a 200**: these figures are suspect.\n");
    }
}

fn extender_row(p: &ExtenderPoint) -> String {
    let goal = match goals::extender_limit_ms(p.nodes, p.mode) {
        Some(limit) if p.pair_p99_ms() < limit => format!("< {limit} ms: met"),
        Some(limit) => format!("< {limit} ms: **missed**"),
        None => "—".into(),
    };
    format!(
        "| {} | {} | {} | {} | {} / {} | {} / {} | {} | {} ({}) | {:.0} | {:.0} | {} |",
        p.mode.label(),
        p.volumes,
        p.protocol.label(),
        size(p.body_bytes),
        ms(p.filter.p50_ms),
        ms(p.filter.p99_ms),
        ms(p.prioritize.p50_ms),
        ms(p.prioritize.p99_ms),
        ms(p.pair_p50_ms()),
        ms(p.pair_p99_ms()),
        ms(p.pair_p99_worst_ms()),
        p.filter_load.rps,
        p.prioritize_load.rps,
        goal
    )
}

fn webhook(md: &mut String, r: &Results) {
    let _ = writeln!(md, "## Webhook over TLS\n");
    let Some(first) = r.webhook.points.first() else {
        let _ = writeln!(md, "Not run.\n");
        return;
    };
    let _ = writeln!(
        md,
        "`/mutate` with the recorded AdmissionReview v1 of a pod using a driver PVC \
         (tests/data/admission/pod-with-driver-pvc.json; the claim is in the loaded objects, so every review is \
         answered with a patch), against the same stork as the 1,000-node extender runs. {} runs per point; \
         req/s and p99 are medians over runs, \"worst\" is the worst run's p99. Goal: ≥ 10,000 reviews/s with p99 \
         < 2 ms at concurrency {LOAD_CONCURRENCY}.\n",
        first.runs.len()
    );
    commands(md, &r.webhook.servers, &r.webhook.loads);
    let _ =
        writeln!(md, "| Protocol | Concurrency | req/s | p50 ms | p99 ms (worst) | Goal |\n|---|---|---|---|---|---|");
    for p in &r.webhook.points {
        let goal = if p.concurrency != LOAD_CONCURRENCY {
            "—"
        } else if p.rps >= 10_000.0 && p.latency.p99_ms < 2.0 {
            "met"
        } else {
            "**missed**"
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {} | {} ({}) | {} |",
            p.protocol.label(),
            p.concurrency,
            p.rps,
            ms(p.latency.p50_ms),
            ms(p.latency.p99_ms),
            ms(p.latency.p99_worst_ms),
            goal
        );
    }
    let failed: u64 = r.webhook.points.iter().flat_map(|p| &p.runs).map(|s| s.not_ok()).sum();
    if failed > 0 {
        let _ = writeln!(md, "\n**{failed} reviews did not get a 200**: these figures are suspect.");
    }
    md.push('\n');
}

fn end_to_end(md: &mut String, e2e: Option<&E2eResults>) {
    let _ = writeln!(md, "## End-to-end scheduling\n");
    let Some(e) = e2e else {
        let _ = writeln!(
            md,
            "Not in this run (integration/e2e writes its results; `stork-bench render --e2e-results FILE` adds them).\n"
        );
        return;
    };
    let _ = writeln!(
        md,
        "{} pods with driver PVCs on {} KWOK nodes, through the `stork` profile (with the extender) and through \
         the default profile (without). Goal: ratio ≥ 0.8.\n\n```sh\n{}\n```\n",
        e.pods, e.nodes, e.command
    );
    let verdict = if e.ratio >= 0.8 { "met" } else { "**missed**" };
    let _ = writeln!(md, "| stork pods/s | default pods/s | Ratio | Goal |\n|---|---|---|---|");
    let _ = writeln!(
        md,
        "| {:.1} | {:.1} | {:.2} | ≥ 0.8: {verdict} |\n",
        e.stork_pods_per_sec, e.default_pods_per_sec, e.ratio
    );
    if e.runs.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "Every run ({} rounds, profiles alternating which goes first). \"In stork\" is stork's own time per call \
         from its request-duration histogram; \"algorithm\" is the kube-scheduler's filter+score time per pod \
         (extender included).\n",
        e.rounds
    );
    let _ = writeln!(
        md,
        "| Profile | pods/s | Filter in stork ms | Prioritize in stork ms | Algorithm ms | On a replica node |\n\
         |---|---|---|---|---|---|"
    );
    for r in &e.runs {
        let sched = |k: &str| r.scheduler.get(k).map_or("—".to_string(), |v| format!("{v:.1}"));
        let in_stork = |v: f64| if r.profile == "stork" { format!("{v:.3}") } else { "—".into() };
        let _ = writeln!(
            md,
            "| {} | {:.1} | {} | {} | {} | {} / {} |",
            r.profile,
            r.pods_per_sec,
            in_stork(r.extender_filter_mean_ms),
            in_stork(r.extender_prioritize_mean_ms),
            sched("algorithm_mean_ms"),
            r.on_replica_node,
            e.pods
        );
    }
    md.push('\n');
}

fn micro(md: &mut String, r: &Results) {
    let _ = writeln!(md, "## In-process (criterion)\n");
    if r.micro.is_empty() {
        let _ =
            writeln!(md, "Not in this run (`cargo bench --bench extender` writes them before `stork-bench run`).\n");
        return;
    }
    let _ = writeln!(
        md,
        "`cargo bench --bench extender` (benches/extender.rs): the pure decision functions and the decoding, \
         without HTTP, on the same synthetic clusters. Median per call with criterion's 95 % interval.\n"
    );
    let _ = writeln!(md, "| Benchmark | Median | 95 % interval |\n|---|---|---|");
    let t = |ns: f64| if ns >= 1e6 { format!("{:.2} ms", ns / 1e6) } else { format!("{:.1} µs", ns / 1e3) };
    let mut micro: Vec<_> = r.micro.iter().collect();
    micro.sort_by(|a, b| crate::criterion::sort_key(&a.id).cmp(&crate::criterion::sort_key(&b.id)));
    for m in micro {
        let _ = writeln!(md, "| `{}` | {} | {} – {} |", m.id, t(m.median_ns), t(m.ci_ns.0), t(m.ci_ns.1));
    }
    md.push('\n');
}

fn memory(md: &mut String, r: &Results) {
    let _ = writeln!(md, "## Memory\n");
    let Some(m) = &r.memory else {
        let _ = writeln!(md, "Not in this run.\n");
        return;
    };
    let mb = |kib: u64| kib as f64 * 1024.0 / MB;
    let _ = writeln!(
        md,
        "stork in offline mode loading a generated objects file ({} of multi-document YAML: {} full Node \
         objects, {} PVCs and {} PVs, bound pairs; the mock topology lists the {} nodes and {} volumes). The \
         loader reads one document at a time and stores each object as it is parsed (Nodes trimmed as the live \
         reflector trims them), so the peak is the caches plus one document. Peak is VmHWM, after load is VmRSS, \
         both from /proc/<pid>/status once /readyz answers; MB = 10^6 bytes. The empty-cluster figure is the \
         same binary with no objects (runtime, TLS, thread stacks).\n\n```sh\n{}\n```\n",
        size(m.objects_bytes),
        m.nodes,
        m.pvcs,
        m.pvcs,
        m.nodes,
        m.topology_volumes,
        m.command
    );
    let verdict = if mb(m.peak_kib) < 150.0 { "met" } else { "**missed**" };
    let _ = writeln!(
        md,
        "| Peak RSS | RSS after load | Empty-cluster peak | Start to ready | Goal |\n|---|---|---|---|---|"
    );
    let _ = writeln!(
        md,
        "| {:.1} MB | {:.1} MB | {:.1} MB | {:.1} s | < 150 MB: {verdict} |\n",
        mb(m.peak_kib),
        mb(m.rss_kib),
        mb(m.empty_peak_kib),
        m.ready_secs
    );
}
