//! The run's results: a table on stdout and `target/fuzz/summary.json`.

use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::Context;
use serde::Serialize;

use crate::{
    findings::{Finding, Findings, Kind},
    targets::Seen,
};

/// One target's results.
#[derive(Debug, Serialize)]
pub struct TargetReport {
    /// The target.
    pub name: String,
    /// Inputs run.
    pub inputs: u64,
    /// Wall time of the target's phase.
    pub seconds: f64,
    /// Inputs per second over all workers.
    pub inputs_per_sec: f64,
    /// Inputs that reached a decision.
    pub decided: u64,
    /// `decided / inputs`.
    pub decided_share: f64,
    /// Nesting probes among the inputs (100,000 levels around one node of a seed each).
    pub nesting_probes: u64,
    /// Outcome classes and how often each was seen.
    pub classes: BTreeMap<String, u64>,
    /// Caught panics.
    pub panics: u64,
    /// Failed properties.
    pub violations: u64,
    /// Whether a worker hung (the phase was abandoned).
    pub hung: bool,
}

impl TargetReport {
    /// Summarises a target's phase.
    pub fn new(name: &str, inputs: u64, elapsed: Duration, seen: Seen, findings: &Findings, hung: bool) -> Self {
        let seconds = elapsed.as_secs_f64();
        Self {
            name: name.into(),
            inputs,
            seconds,
            inputs_per_sec: inputs as f64 / seconds.max(1e-9),
            decided: seen.decided,
            nesting_probes: seen.probes,
            decided_share: seen.decided as f64 / inputs.max(1) as f64,
            classes: seen.classes.into_iter().collect(),
            panics: findings.total(name, Kind::Panic),
            violations: findings.total(name, Kind::Violation),
            hung,
        }
    }
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// `--seed`.
    pub seed: u64,
    /// `--threads`.
    pub threads: usize,
    /// Inputs run, all targets.
    pub inputs: u64,
    /// Wall time, all targets.
    pub seconds: f64,
    /// Per target.
    pub targets: Vec<TargetReport>,
    /// Saved failing inputs.
    pub findings: Vec<Finding>,
}

impl Summary {
    /// Whether nothing failed.
    pub fn clean(&self) -> bool {
        self.findings.is_empty() && self.targets.iter().all(|t| t.panics == 0 && t.violations == 0 && !t.hung)
    }

    /// Prints the table: per target its rate, decision share, failures and outcome classes.
    pub fn print(&self) {
        println!(
            "stork-fuzz: {} inputs in {:.1}s on {} threads ({:.0} inputs/s), seed {}",
            self.inputs,
            self.seconds,
            self.threads,
            self.inputs as f64 / self.seconds.max(1e-9),
            self.seed
        );
        for t in &self.targets {
            println!(
                "\n{:<9} {:>10} inputs {:>7.1}s {:>9.0}/s  decided {:>5.1}%  panics {}  violations {}{}",
                t.name,
                t.inputs,
                t.seconds,
                t.inputs_per_sec,
                100.0 * t.decided_share,
                t.panics,
                t.violations,
                if t.hung { "  HUNG" } else { "" }
            );
            let mut classes: Vec<_> = t.classes.iter().collect();
            classes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            println!(
                "  {} nesting probes ({} levels) survived; {} outcome classes:",
                t.nesting_probes,
                crate::mutate::MAX_NESTING,
                classes.len()
            );
            for (class, n) in classes.iter().take(40) {
                println!("  {:>6.2}% {n:>10}  {class}", 100.0 * **n as f64 / t.inputs.max(1) as f64);
            }
            if classes.len() > 40 {
                println!("  … {} more in summary.json", classes.len() - 40);
            }
        }
        for f in &self.findings {
            println!("\n{} {:?}: {}\n  input: {}", f.target, f.kind, f.message, f.path.display());
            if let Some(m) = &f.minimized {
                println!("  minimised: {}", m.display());
            }
        }
    }

    /// Writes `summary.json` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("summary.json");
        let json = serde_json::to_vec_pretty(self)?;
        std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))
    }
}
