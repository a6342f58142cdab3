//! The command line: fuzz (under a supervising parent), or replay one saved input.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Duration,
};

use anyhow::Context;
use clap::{Parser, ValueEnum};

use crate::{engine, findings, inflight, rng::fnv1a, targets::Seen};

/// Set in the worker process the supervisor starts.
const WORKER_ENV: &str = "STORK_FUZZ_WORKER";

/// Property/mutation fuzzing of stork's decoders.
#[derive(Debug, Parser)]
#[command(name = "stork-fuzz", version)]
pub struct Cli {
    /// Inputs to run in total, split evenly between the targets.
    #[arg(long, default_value_t = 10_000_000)]
    pub inputs: u64,
    /// Seed of the input generators: the same seed and threads run the same inputs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Worker threads [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Which decoders to fuzz.
    #[arg(long, value_enum, default_value_t = Which::All)]
    pub target: Which,
    /// Nesting probes per target: seeds with 100,000 levels of nesting around one node each,
    /// run before the random inputs (which nest that deep only rarely).
    #[arg(long, default_value_t = 600)]
    pub probes: usize,
    /// An input still running after this many seconds is reported as a hang.
    #[arg(long, default_value_t = 30)]
    pub hang_secs: u64,
    /// Run one saved input (a crash file, or a worker's in-flight slot) and say how it fares;
    /// the target comes from the slot, from --target, or from the file name's prefix.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
    /// Fuzz in this process, without the parent that replays the input of a worker that took
    /// the process down (a stack overflow is not a panic and cannot be caught).
    #[arg(long)]
    pub no_supervisor: bool,
}

/// `--target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// Every target, in turn.
    All,
    /// AdmissionReview through `/mutate` and `/validate`.
    Review,
    /// ExtenderArgs through `/filter` and `/prioritize`.
    Extender,
    /// Mock driver topology files.
    Topology,
    /// Offline cluster object files.
    Objects,
}

impl Which {
    fn name(self) -> Option<&'static str> {
        match self {
            Self::All => None,
            Self::Review => Some("review"),
            Self::Extender => Some("extender"),
            Self::Topology => Some("topology"),
            Self::Objects => Some("objects"),
        }
    }
}

/// Runs the command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let out = engine::out_dir();
    if let Some(file) = &cli.replay {
        return replay(file, cli.target.name());
    }
    if !cli.no_supervisor && std::env::var_os(WORKER_ENV).is_none() {
        return supervise(&out);
    }
    let threads = cli.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let config = engine::Config {
        inputs: cli.inputs,
        seed: cli.seed,
        threads,
        hang: Duration::from_secs(cli.hang_secs),
        out: out.clone(),
        progress: Some(Duration::from_secs(15)),
        probes: cli.probes,
        minimize_budget: 4_000,
    };
    let summary = crate::fuzz(&config, cli.target.name())?;
    summary.print();
    summary.write(&out)?;
    println!("\nsummary: {}", out.join("summary.json").display());
    Ok(if summary.clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Runs this same command as a child; if the child is killed (a stack overflow aborts), replays
/// each input its workers were running, each in a child of its own, to find the killer.
fn supervise(out: &Path) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("locating stork-fuzz")?;
    let inflight_dir = out.join("inflight");
    let _ = std::fs::remove_dir_all(&inflight_dir);
    let status = Command::new(&exe).args(std::env::args_os().skip(1)).env(WORKER_ENV, "1").status()?;
    if let Some(code) = status.code() {
        return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
    }
    eprintln!("stork-fuzz: the fuzzing process died ({status}); replaying the inputs its workers were running");
    let mut killers = Vec::new();
    for (slot, target, input) in inflight::running(&inflight_dir) {
        let replayed = Command::new(&exe).arg("--replay").arg(&slot).env(WORKER_ENV, "1").status()?;
        if replayed.code().is_none() {
            let message = format!("the process died ({replayed}) running this input");
            let path = findings::save(&out.join("crashes"), &target, ".crash", &input, &message);
            eprintln!("stork-fuzz: {target} crash: {message}\n  input: {}", path.display());
            killers.push(path);
        }
    }
    if killers.is_empty() {
        eprintln!(
            "stork-fuzz: no single in-flight input reproduces the crash; slots kept in {}",
            inflight_dir.display()
        );
    }
    Ok(ExitCode::FAILURE)
}

/// Runs one saved input on a worker-sized stack and reports how it fares.
fn replay(file: &Path, target: Option<&str>) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let file_target = file.file_name().and_then(|n| n.to_str()).and_then(|n| n.split('-').next()).map(str::to_owned);
    let (name, input) = match inflight::parse(&bytes) {
        Some((name, input)) => (name, input),
        None => (target.map(str::to_owned).or(file_target).unwrap_or_default(), bytes),
    };
    let targets = crate::targets(Some(&name))?;
    let target = targets.into_iter().next().with_context(|| format!("no target named {name:?}"))?;
    eprintln!("stork-fuzz: replaying {} bytes (fnv {:016x}) on {name}", input.len(), fnv1a(&input));
    let previous_hook = findings::install_panic_hook();
    let outcome = std::thread::Builder::new()
        .stack_size(engine::WORKER_STACK)
        .spawn(move || {
            let mut seen = Seen::default();
            let failed = findings::run_once(&target, &input, &mut seen);
            (failed, seen)
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("the replay thread died"))?;
    std::panic::set_hook(previous_hook);
    let (failed, seen) = outcome;
    for class in seen.classes.keys() {
        println!("outcome: {class}");
    }
    match failed {
        None => Ok(ExitCode::SUCCESS),
        Some((kind, _, message)) => {
            println!("{kind:?}: {message}");
            Ok(ExitCode::FAILURE)
        }
    }
}
