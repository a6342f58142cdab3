//! A tiny pass over every target, so `cargo test --workspace` runs the harness end to end:
//! 2,000 inputs per target (the nesting probes first), no panic, no failed property.

use std::time::Duration;

use stork_fuzz::{TARGETS, engine::Config, fuzz};

#[test]
fn every_target_survives_a_short_deterministic_pass() {
    let out = std::env::temp_dir().join(format!("stork-fuzz-smoke-{}", std::process::id()));
    let config = Config {
        inputs: 2_000 * TARGETS.len() as u64,
        seed: 7,
        threads: 2,
        hang: Duration::from_secs(60),
        out: out.clone(),
        progress: None,
        // Few probes and a short minimisation: a debug build scans deep nesting slowly.
        probes: 40,
        minimize_budget: 200,
    };
    let summary = fuzz(&config, None).expect("fuzz run");
    summary.print();
    assert_eq!(summary.targets.len(), TARGETS.len());
    for t in &summary.targets {
        assert_eq!(t.inputs, 2_000, "{}", t.name);
        assert!(t.classes.len() >= 3, "{} saw only {:?}", t.name, t.classes);
        assert!(t.decided > 0, "{} never reached a decision", t.name);
    }
    assert!(summary.clean(), "findings: {:#?}", summary.findings);
    let _ = std::fs::remove_dir_all(out);
}
