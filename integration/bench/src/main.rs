//! `stork-bench`: drives a release stork with oha (extender over HTTP/1.1 and HTTP/2, webhook
//! over TLS), measures its memory on a large cluster, and writes BENCHMARKS.md.
//!
//! `stork-bench run` is the published suite (about ten minutes on two cores), `run --smoke` the
//! CI variant (seconds, checks every request got a 200, leaves BENCHMARKS.md alone), and
//! `render` rewrites BENCHMARKS.md from a results file plus the end-to-end benchmark's.

mod before;
mod criterion;
mod fixtures;
mod goals;
mod manual;
mod misses;
mod oha;
mod plan;
mod render;
mod results;
mod suite;

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use stork_bench::{probe, stork};

use crate::{
    plan::Plan,
    results::{E2eResults, Results, read_json},
    suite::Runner,
};

/// Benchmark harness of stork.
#[derive(Debug, Parser)]
#[command(name = "stork-bench")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the suite, write the results file and (unless --smoke) BENCHMARKS.md.
    Run(RunArgs),
    /// Rewrite BENCHMARKS.md from a results file.
    Render(RenderArgs),
    /// Start stork on one cluster size's fixtures and leave it running (manual runs, profiling).
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Nodes.
    #[arg(long, default_value_t = 1_000)]
    nodes: usize,
    /// Where the objects, topology, certificates and bodies go (kept).
    #[arg(long)]
    dir: PathBuf,
    /// The stork binary; default: <root>/target/release/stork.
    #[arg(long)]
    stork: Option<PathBuf>,
    /// Repository root.
    #[arg(long, default_value_os_t = default_root())]
    root: PathBuf,
}

#[derive(Debug, Args)]
struct Common {
    /// Repository root (BENCHMARKS.md, tests/data, target/).
    #[arg(long, default_value_os_t = default_root())]
    root: PathBuf,
    /// End-to-end scheduling results (JSON from integration/e2e); default: target/bench/e2e.json when present.
    #[arg(long)]
    e2e_results: Option<PathBuf>,
    /// The Goals table's "Before" column from this results file (an older stork binary run by
    /// this harness on this machine: `run --only extender,webhook,memory --stork OLD --out FILE`)
    /// instead of from the previous BENCHMARKS.md.
    #[arg(long, requires = "before_label")]
    before_results: Option<PathBuf>,
    /// What `--before-results` measured (a commit), shown in the column heading.
    #[arg(long, requires = "before_results")]
    before_label: Option<String>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// CI variant: 100 nodes, one volume, a second per point, no memory test; fails unless every
    /// request got a 200; does not touch BENCHMARKS.md.
    #[arg(long)]
    smoke: bool,
    /// The stork binary under test; default: <root>/target/release/stork.
    #[arg(long)]
    stork: Option<PathBuf>,
    /// Results file; default: <root>/target/bench/results.json (smoke.json with --smoke,
    /// partial.json with --only).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run only these sections (extender, webhook, memory); for development: a partial run is
    /// written to the results file but never rendered.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

#[derive(Debug, Args)]
struct RenderArgs {
    #[command(flatten)]
    common: Common,
    /// Results file; default: <root>/target/bench/results.json.
    #[arg(long)]
    results: Option<PathBuf>,
}

fn default_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".parse().expect("filter")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Cmd::Run(args) => run(args),
        Cmd::Serve(args) => {
            let stork = args.stork.unwrap_or_else(|| args.root.join("target/release/stork"));
            manual::serve(&stork, &args.dir, args.nodes)
        }
        Cmd::Render(args) => {
            let path = args.results.unwrap_or_else(|| args.common.root.join("target/bench/results.json"));
            let results: Results = read_json(&path)?;
            if results.smoke {
                bail!("{} holds a smoke run; BENCHMARKS.md is only written from a full run", path.display());
            }
            write_benchmarks(&args.common, &results)
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let root = &args.common.root;
    let stork = args.stork.clone().unwrap_or_else(|| root.join("target/release/stork"));
    if !stork.is_file() {
        bail!("{} not found: build it with `cargo build --release --bin stork`", stork.display());
    }
    let runner = Runner {
        oha: oha::Oha::locate()?,
        stork,
        root: root.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        smoke: args.smoke,
    };
    let plan = if args.smoke { Plan::smoke() } else { Plan::full() };
    let partial = !args.only.is_empty();
    let plan = if partial { plan.only(&args.only) } else { plan };
    let mut results = runner.run(&plan)?;
    if partial {
        // Criterion measured the working tree, not necessarily the binary under test (`--stork`):
        // a partial run, such as an older binary's for `--before-results`, carries none of it.
        results.micro.clear();
        results.claims = None;
    }
    let name = match (args.smoke, partial) {
        (true, _) => "smoke.json",
        (false, true) => "partial.json",
        (false, false) => "results.json",
    };
    let out = args.out.clone().unwrap_or_else(|| root.join("target/bench").join(name));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_vec_pretty(&results)?).with_context(|| format!("writing {}", out.display()))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "results: {} ({:.0} s)", out.display(), results.total_secs)?;
    if args.smoke {
        suite::check_all_ok(&results)?;
        for p in &results.extender.points {
            let (mode, proto) = (p.mode.label(), p.protocol.label());
            let (f, pr) = (p.filter_load.rps, p.prioritize_load.rps);
            let p99 = p.pair_p99_ms();
            writeln!(stdout, "extender {} nodes {mode} {proto}: F+P p99 {p99:.3} ms, {f:.0} / {pr:.0} req/s", p.nodes)?;
        }
        for p in &results.webhook.points {
            let (proto, c, rps, p99) = (p.protocol.label(), p.concurrency, p.rps, p.latency.p99_ms);
            writeln!(stdout, "webhook {proto} c={c}: {rps:.0} req/s, p99 {p99:.3} ms")?;
        }
        writeln!(stdout, "smoke: every request got a 200")?;
        return Ok(());
    }
    if partial {
        writeln!(stdout, "partial run (--only): BENCHMARKS.md left alone")?;
        return Ok(());
    }
    if let Err(e) = suite::check_all_ok(&results) {
        tracing::warn!(error = %e, "publishing anyway; BENCHMARKS.md flags the affected tables");
    }
    write_benchmarks(&args.common, &results)
}

fn write_benchmarks(common: &Common, results: &Results) -> anyhow::Result<()> {
    let default_e2e = common.root.join("target/bench/e2e.json");
    let e2e: Option<E2eResults> = match &common.e2e_results {
        Some(path) => Some(read_json(path)?),
        None if default_e2e.is_file() => Some(read_json(&default_e2e)?),
        None => None,
    };
    let path = common.root.join("BENCHMARKS.md");
    let previous = std::fs::read_to_string(&path).ok();
    let before = match (&common.before_results, &common.before_label) {
        (Some(file), Some(label)) => before::from_results(&read_json(file)?, label.clone()),
        _ => before::parse(previous.as_deref().unwrap_or_default()),
    };
    let md = render::render(results, e2e.as_ref(), previous.as_deref(), &before);
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))?;
    let mut stdout = std::io::stdout().lock();
    for v in goals::judge(results, e2e.as_ref()) {
        writeln!(stdout, "{:<12} {} — {}", v.status().trim_matches('*'), v.goal, v.measured)?;
    }
    writeln!(stdout, "wrote {}", path.display())?;
    Ok(())
}
