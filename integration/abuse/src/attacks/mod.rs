//! The attacks, each a function that starts its own stork, attacks it and records figures and
//! failed assertions in an [`Outcome`].

pub mod amplification;
pub mod body_memory;
pub mod flood;
pub mod fuzz;
pub mod h2;
pub mod idle;
pub mod mtls;
pub mod mutations;
pub mod topology;

use std::time::Instant;

use crate::{harness::Ctx, report::Outcome};

/// An attack: records into the outcome; an error means it could not be carried out.
pub type Attack = fn(&Ctx, &mut Outcome) -> anyhow::Result<()>;

/// Every attack, in the order they run.
pub const ALL: [(&str, Attack); 8] = [
    ("amplification", amplification::run),
    ("body-memory", body_memory::run),
    ("extender-flood", flood::run),
    ("idle-connections", idle::run),
    ("topology-file", topology::run),
    ("mutated-bodies", fuzz::run),
    ("h2", h2::run),
    ("extender-mtls", mtls::run),
];

/// Runs the attacks named in `only` (all when it is empty) in order, printing each one's table.
/// After an attack in which stork died the rest are recorded as not run, unless `keep_going`.
pub fn run_all(ctx: &Ctx, only: &[String], keep_going: bool) -> Vec<Outcome> {
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut died: Option<&str> = None;
    for (name, attack) in ALL.into_iter().filter(|(n, _)| only.is_empty() || only.iter().any(|o| o == n)) {
        let out = match died {
            Some(dead) => {
                let mut out = Outcome::new(name);
                out.fail(format!("not run: stork died in {dead}"));
                out
            }
            None => {
                eprintln!("stork-abuse: {name} …");
                let out = run(name, attack, ctx);
                print!("{}", out.table());
                out
            }
        };
        if out.stork_died && !keep_going {
            died = Some(name);
        }
        outcomes.push(out);
    }
    outcomes
}

/// Runs one attack and times it.
pub fn run(name: &'static str, attack: Attack, ctx: &Ctx) -> Outcome {
    let start = Instant::now();
    let mut out = Outcome::new(name);
    if let Err(e) = attack(ctx, &mut out) {
        out.fail(format!("could not run: {e:#}"));
    }
    out.took(start.elapsed());
    out
}
