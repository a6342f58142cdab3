//! `stork-abuse`: starts the release stork on loopback and attacks it — amplification, big and
//! slow bodies, an extender flood, idle connections, a corrupted topology file, mutated bodies,
//! HTTP/2 limits, extender mTLS — asserting figures under each attack (memory peak, webhook
//! latency, answers). Prints a table, writes `target/abuse/results.json`, and exits non-zero
//! listing every failed assertion.

mod attacks;
mod client;
mod fixtures;
mod harness;
mod latency;
mod report;
mod response;
mod stream;
mod wait;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::Parser;

use crate::{harness::Ctx, report::Run};

/// Abuse suite of stork.
#[derive(Debug, Parser)]
#[command(name = "stork-abuse")]
struct Cli {
    /// CI-sized attacks (a few minutes in all).
    #[arg(long)]
    smoke: bool,
    /// The stork binary (a relative path is taken from the repository root).
    #[arg(long, env = "STORK_BIN", default_value = "target/release/stork")]
    stork: PathBuf,
    /// Repository root (manifests/, target/).
    #[arg(long, default_value_os_t = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")))]
    root: PathBuf,
    /// Run only these attacks (repeat the flag).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(attacks::ALL.map(|(n, _)| n)))]
    only: Vec<String>,
    /// Keep attacking after stork died in an attack (each attack starts its own stork).
    #[arg(long)]
    keep_going: bool,
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let nofile = harness::raise_nofile_limit()?;
    let root = std::fs::canonicalize(&cli.root).with_context(|| format!("repository root {}", cli.root.display()))?;
    let bin = root.join(&cli.stork);
    let ctx = Ctx::new(bin, &root, cli.smoke)?;
    eprintln!(
        "stork-abuse: {} (memory limit {}, open files {nofile})",
        ctx.bin.display(),
        report::size(ctx.memory_limit)
    );
    let outcomes = attacks::run_all(&ctx, &cli.only, cli.keep_going);
    let results = root.join("target/abuse/results.json");
    let run = Run {
        smoke: cli.smoke,
        stork: ctx.bin.display().to_string(),
        memory_limit_bytes: ctx.memory_limit,
        attacks: &outcomes,
    };
    run.write(&results)?;
    print!("{}", run.summary(&results));
    let failed = outcomes.iter().any(|o| !o.passed);
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
