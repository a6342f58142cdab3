//! stork-fuzz: a property and mutation fuzzer of stork's decoders, in-process, on stable Rust.
//!
//! Targets ([`targets`]): AdmissionReview bodies through `/mutate` and `/validate`, ExtenderArgs
//! through `/filter` and `/prioritize`, mock driver topologies and offline object files. Inputs
//! ([`mutate`]) are the repository's fixtures changed structurally (tree edits written back as
//! JSON or YAML) and blindly (byte havoc). Every input runs under `catch_unwind`; failing
//! inputs are saved under `target/fuzz/crashes/` ([`findings`]); a process-killing input (a
//! stack overflow) is recovered from its worker's memory-mapped slot ([`inflight`]) by the
//! supervising parent ([`cli`]).

pub mod cli;
pub mod corpus;
pub mod engine;
pub mod findings;
pub mod inflight;
pub mod mutate;
pub mod report;
pub mod rng;
pub mod targets;

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use engine::Config;
use findings::Findings;
use report::Summary;
use targets::{Fixture, Target};

/// Target names, in the order `--target all` runs them.
pub const TARGETS: [&str; 4] = ["review", "extender", "topology", "objects"];

/// The targets named `only` (all when `None`).
pub fn targets(only: Option<&str>) -> anyhow::Result<Vec<Arc<Target>>> {
    let fixture = Arc::new(Fixture::load()?);
    let all = targets::all(&fixture)?;
    Ok(all.into_iter().filter(|t| only.is_none_or(|name| t.name == name)).collect())
}

/// Fuzzes the targets named `only` (all when `None`) and summarises the run.
pub fn fuzz(config: &Config, only: Option<&str>) -> anyhow::Result<Summary> {
    let targets = targets(only)?;
    anyhow::ensure!(!targets.is_empty(), "no target named {only:?}; targets: {}", TARGETS.join(", "));
    let findings = Arc::new(Mutex::new(Findings::default()));
    let previous_hook = findings::install_panic_hook();
    let start = Instant::now();
    let reports = engine::run(config, &targets, &findings);
    std::panic::set_hook(previous_hook);
    let reports = reports?;
    let saved = std::mem::take(&mut findings.lock().expect("findings lock").saved);
    Ok(Summary {
        seed: config.seed,
        threads: config.threads,
        inputs: reports.iter().map(|r| r.inputs).sum(),
        seconds: start.elapsed().as_secs_f64(),
        targets: reports,
        findings: saved,
    })
}
