//! Runs targets one after another, each on every worker thread: generate an input, note it in
//! the worker's slot, run it under `catch_unwind`, count its outcome. The calling thread watches
//! the workers' progress and gives up on a worker stuck on one input past the hang limit.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Context;

use crate::{
    findings::{self, Findings, Kind},
    inflight::Slot,
    mutate::Mutator,
    report::TargetReport,
    rng::Rng,
    targets::{Seen, Target},
};

/// Stack of each worker: 2 MiB, the size of the actix and tokio threads decisions run on, so
/// a decoder recursing too deep fails here as it would in stork.
pub const WORKER_STACK: usize = 2 << 20;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Inputs in total, split evenly between the targets.
    pub inputs: u64,
    /// Seed of every worker's generator.
    pub seed: u64,
    /// Worker threads.
    pub threads: usize,
    /// An input running longer than this is reported as a hang.
    pub hang: Duration,
    /// Where crashes, slots and the summary go.
    pub out: PathBuf,
    /// Print progress to stderr every this often (never when `None`).
    pub progress: Option<Duration>,
    /// Nesting probes per target, run before the random inputs (see [`Mutator::probe`]).
    pub probes: usize,
    /// Target runs the minimisation of a failing input may spend.
    pub minimize_budget: usize,
}

/// `target/fuzz` of the workspace (or of `CARGO_TARGET_DIR`).
pub fn out_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::corpus::repo_root().join("target"))
        .join("fuzz")
}

/// One worker's share of a target.
struct Worker {
    target: Arc<Target>,
    index: usize,
    threads: usize,
    inputs: u64,
    seed: u64,
    probes: usize,
    minimize_budget: usize,
    slot: Slot,
    /// Inputs done.
    progress: Arc<AtomicU64>,
    /// Runs started, minimisation runs included: what the hang watch follows.
    heartbeat: Arc<AtomicU64>,
    findings: Arc<Mutex<Findings>>,
    crashes: PathBuf,
}

impl Worker {
    fn run(mut self) -> Seen {
        let target = self.target.clone();
        let corpus = &target.corpus;
        let mut mutator = Mutator::new(corpus, self.probes);
        let mut rng = Rng::for_worker(self.seed, target.name, self.index);
        let mut seen = Seen::default();
        let mut input = Vec::with_capacity(64 * 1024);
        // Deep nesting at every kind of position first (this worker's share), then random inputs.
        let mut probe = self.index;
        for _ in 0..self.inputs {
            if mutator.probe(probe, &mut input) {
                seen.probes += 1;
            } else {
                mutator.generate(&mut rng, &mut input);
            }
            probe += self.threads;
            self.one(&target, &input, &mut seen);
        }
        self.slot.clear();
        seen
    }

    fn one(&mut self, target: &Target, input: &[u8], seen: &mut Seen) {
        self.slot.record(input);
        self.heartbeat.fetch_add(1, Ordering::Relaxed);
        let failed = findings::run_once(target, input, seen);
        self.progress.fetch_add(1, Ordering::Relaxed);
        let Some((kind, signature, message)) = failed else { return };
        let (save, minimize) = self.findings.lock().expect("findings lock").note(target.name, kind, &signature);
        if !save {
            return;
        }
        let path = findings::save(&self.crashes, target.name, "", input, &message);
        let minimized = minimize.then(|| {
            let tick = || {
                self.heartbeat.fetch_add(1, Ordering::Relaxed);
            };
            let small = findings::minimize(target, input, kind, &signature, self.minimize_budget, &tick);
            findings::save(&self.crashes, target.name, ".min", &small, &message)
        });
        eprintln!("stork-fuzz: {} {kind:?}: {message}\n  input: {}", target.name, path.display());
        let finding = findings::Finding { target: target.name.into(), kind, message, path, minimized };
        self.findings.lock().expect("findings lock").saved.push(finding);
    }
}

/// Runs `targets` in turn; `findings` collects failures (and hangs).
pub fn run(
    config: &Config,
    targets: &[Arc<Target>],
    findings: &Arc<Mutex<Findings>>,
) -> anyhow::Result<Vec<TargetReport>> {
    let per_target = config.inputs / targets.len().max(1) as u64;
    let mut reports = Vec::new();
    for (t, target) in targets.iter().enumerate() {
        // The last target takes the remainder so that exactly `inputs` run.
        let inputs = if t + 1 == targets.len() { config.inputs - per_target * t as u64 } else { per_target };
        let report = run_target(config, target.clone(), inputs, findings)?;
        let hung = report.hung;
        reports.push(report);
        if hung {
            break;
        }
    }
    Ok(reports)
}

/// A running worker, as the calling thread sees it.
struct Lane {
    progress: Arc<AtomicU64>,
    heartbeat: Arc<AtomicU64>,
    handle: JoinHandle<Seen>,
}

fn run_target(
    config: &Config,
    target: Arc<Target>,
    inputs: u64,
    findings: &Arc<Mutex<Findings>>,
) -> anyhow::Result<TargetReport> {
    let threads = config.threads.max(1);
    let start = Instant::now();
    let mut lanes = Vec::new();
    for index in 0..threads {
        let share = inputs / threads as u64 + u64::from((index as u64) < inputs % threads as u64);
        let (progress, heartbeat) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let worker = Worker {
            target: target.clone(),
            index,
            threads,
            inputs: share,
            seed: config.seed,
            probes: config.probes,
            minimize_budget: config.minimize_budget,
            slot: Slot::open(&config.out.join("inflight"), index, target.name)?,
            progress: progress.clone(),
            heartbeat: heartbeat.clone(),
            findings: findings.clone(),
            crashes: config.out.join("crashes"),
        };
        let handle = std::thread::Builder::new()
            .name(format!("fuzz-{}-{index}", target.name))
            .stack_size(WORKER_STACK)
            .spawn(move || worker.run())
            .context("starting a worker")?;
        lanes.push(Lane { progress, heartbeat, handle });
    }
    let hung = watch(config, &target, inputs, &lanes, findings, start);
    let done = lanes.iter().map(|l| l.progress.load(Ordering::Relaxed)).sum();
    let mut seen = Seen::default();
    if !hung {
        for lane in lanes {
            seen.merge(lane.handle.join().map_err(|_| anyhow::anyhow!("a {} worker died", target.name))?);
        }
    }
    let findings = findings.lock().expect("findings lock");
    Ok(TargetReport::new(target.name, done, start.elapsed(), seen, &findings, hung))
}

/// Waits for the workers; true when one hung (its input is then saved as a finding).
fn watch(
    config: &Config,
    target: &Arc<Target>,
    inputs: u64,
    lanes: &[Lane],
    findings: &Arc<Mutex<Findings>>,
    start: Instant,
) -> bool {
    let mut last: Vec<(u64, Instant)> = lanes.iter().map(|_| (0, Instant::now())).collect();
    let mut printed = Instant::now();
    loop {
        if lanes.iter().all(|l| l.handle.is_finished()) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50)); // poll the lanes until every one has finished
        for (i, lane) in lanes.iter().enumerate() {
            let beat = lane.heartbeat.load(Ordering::Relaxed);
            if beat != last[i].0 || lane.handle.is_finished() {
                last[i] = (beat, Instant::now());
            } else if last[i].1.elapsed() > config.hang {
                let slot = config.out.join("inflight").join(format!("worker-{i}.bin"));
                let input = std::fs::read(&slot).ok().as_deref().and_then(crate::inflight::parse).map(|(_, b)| b);
                let message = format!("one input ran for more than {:?}", config.hang);
                let crashes = config.out.join("crashes");
                let path = findings::save(&crashes, target.name, ".hang", &input.unwrap_or_default(), &message);
                eprintln!("stork-fuzz: {} hang: {message}\n  input: {}", target.name, path.display());
                let mut f = findings.lock().expect("findings lock");
                f.note(target.name, Kind::Hang, "hang");
                let finding =
                    findings::Finding { target: target.name.into(), kind: Kind::Hang, message, path, minimized: None };
                f.saved.push(finding);
                return true;
            }
        }
        if config.progress.is_some_and(|every| printed.elapsed() >= every) {
            printed = Instant::now();
            let done: u64 = lanes.iter().map(|l| l.progress.load(Ordering::Relaxed)).sum();
            let rate = done as f64 / start.elapsed().as_secs_f64();
            eprintln!("stork-fuzz: {}: {done}/{inputs} inputs, {rate:.0}/s", target.name);
        }
    }
}
