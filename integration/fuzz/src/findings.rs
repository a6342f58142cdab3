//! What a failing input becomes: a file under `target/fuzz/crashes/`, a description next to it,
//! and — for failures that reproduce in-process — a minimised copy.

use std::{
    cell::RefCell,
    collections::HashMap,
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::{
    rng::fnv1a,
    targets::{Seen, Target},
};

/// Inputs saved per distinct failure (the first is also minimised).
const SAVED_PER_SIGNATURE: usize = 3;

/// How an input failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A panic, caught.
    Panic,
    /// A property did not hold.
    Violation,
    /// An input ran longer than the hang limit.
    Hang,
    /// The process died (stack overflow, abort, out of memory) while the input ran.
    Crash,
}

/// One saved failing input.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The target.
    pub target: String,
    /// How it failed.
    pub kind: Kind,
    /// Panic location, or the property's message.
    pub message: String,
    /// The input as run.
    pub path: PathBuf,
    /// A smaller input failing the same way, when one was found.
    pub minimized: Option<PathBuf>,
}

thread_local! {
    /// The last panic of this thread: (location, message), set by the hook of [`install_panic_hook`].
    static LAST_PANIC: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// Replaces the panic hook with one that records panics quietly (the engine reports them);
/// returns the hook that was there, to put back with [`std::panic::set_hook`].
#[allow(clippy::type_complexity)]
pub fn install_panic_hook() -> Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let location =
            info.location().map_or_else(String::new, |l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        let payload = info.payload();
        let message =
            payload.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| payload.downcast_ref::<String>().cloned());
        LAST_PANIC.with(|p| *p.borrow_mut() = Some((location, message.unwrap_or_default())));
    }));
    previous
}

/// Runs `input` once: `None` when it passes, else how it failed and its signature.
pub fn run_once(target: &Target, input: &[u8], seen: &mut Seen) -> Option<(Kind, String, String)> {
    match catch_unwind(AssertUnwindSafe(|| target.run(input, seen))) {
        Ok(Ok(())) => None,
        Ok(Err(message)) => {
            let signature = message.split([':', '(']).next().unwrap_or(&message).to_string();
            Some((Kind::Violation, signature, message))
        }
        Err(_) => {
            let (location, message) = LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_default();
            Some((Kind::Panic, location.clone(), format!("panicked at {location}: {message}")))
        }
    }
}

/// The failures of one run, shared by its workers.
#[derive(Debug, Default)]
pub struct Findings {
    /// Saved inputs.
    pub saved: Vec<Finding>,
    /// Failures per (target, kind, signature).
    pub counts: HashMap<(String, Kind, String), u64>,
}

impl Findings {
    /// Counts a failure; says whether its input should be saved, and minimised.
    pub fn note(&mut self, target: &str, kind: Kind, signature: &str) -> (bool, bool) {
        let n = self.counts.entry((target.to_string(), kind, signature.to_string())).or_default();
        *n += 1;
        (*n as usize <= SAVED_PER_SIGNATURE, *n == 1)
    }

    /// Failures of `target` of `kind`.
    pub fn total(&self, target: &str, kind: Kind) -> u64 {
        self.counts.iter().filter(|((t, k, _), _)| t == target && *k == kind).map(|(_, n)| n).sum()
    }
}

/// Writes `input` (and `message` beside it) as `dir/<target>-<hash>.bin`; returns the path.
pub fn save(dir: &Path, target: &str, suffix: &str, input: &[u8], message: &str) -> PathBuf {
    let _ = std::fs::create_dir_all(dir);
    let path = dir.join(format!("{target}-{:016x}{suffix}.bin", fnv1a(input)));
    if let Err(e) = std::fs::write(&path, input).and_then(|()| std::fs::write(path.with_extension("txt"), message)) {
        eprintln!("stork-fuzz: could not save {}: {e}", path.display());
    }
    path
}

/// A smaller input that fails with the same signature: whole lines are removed first (a
/// document, a field), then byte ranges, largest first, within a budget of target runs.
pub fn minimize(
    target: &Target,
    input: &[u8],
    kind: Kind,
    signature: &str,
    mut budget: usize,
    tick: &dyn Fn(),
) -> Vec<u8> {
    let mut seen = Seen::default();
    let mut fails = |candidate: &[u8]| {
        tick();
        matches!(run_once(target, candidate, &mut seen), Some((k, s, _)) if k == kind && s == signature)
    };
    let lines: Vec<&[u8]> = input.split_inclusive(|&b| b == b'\n').collect();
    let lines = shrink(lines, &mut budget, &mut |units| fails(&units.concat())).concat();
    shrink(lines, &mut budget, &mut |bytes| fails(bytes))
}

/// Removes runs of `units`, halving the run length, while `fails` holds; run lengths too
/// short to try every run within the remaining budget are skipped.
fn shrink<T: Clone>(mut units: Vec<T>, budget: &mut usize, fails: &mut dyn FnMut(&[T]) -> bool) -> Vec<T> {
    let mut run = units.len().div_ceil(2).max(1);
    loop {
        if units.len() / run <= *budget {
            let mut at = 0;
            while at < units.len() && *budget > 0 {
                *budget -= 1;
                let mut candidate = units.clone();
                candidate.drain(at..(at + run).min(units.len()));
                if fails(&candidate) {
                    units = candidate;
                } else {
                    at += run;
                }
            }
        }
        if run == 1 || *budget == 0 {
            return units;
        }
        run = (run / 2).max(1);
    }
}
