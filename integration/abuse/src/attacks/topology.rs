//! Attack 5, topology file: stork serves a mock topology from a file that is then, in turn, cut
//! in half mid-line, emptied, replaced by comments only, replaced by garbage bytes, rewritten
//! non-atomically (half, held until stork has refused it, then the rest), and finally restored
//! atomically, while `/filter` is asked every 20 ms.
//!
//! Asserted: every `/filter` answer equals the baseline (the last good state keeps serving);
//! `stork_driver_config_errors_total` (summed over label sets) rises for each bad file; `/readyz`
//! mentions the topology while the file is bad and stops mentioning it after the restore.

use std::{
    collections::BTreeMap,
    io::Write,
    path::Path,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use serde_json::{Value, json};
use stork_bench::stork::Extra;

use crate::{
    attacks::mutations::Rng,
    client::{Conn, Endpoint, Request},
    fixtures::{self, FILTER_ARGS},
    harness::Ctx,
    report::Outcome,
    wait::{self, Stop},
};

/// The metric that counts refused driver configurations.
const METRIC: &str = "stork_driver_config_errors_total";
/// How long stork may take to notice a changed file (its poll fallback is 5 s).
const NOTICE: Duration = Duration::from_secs(8);

/// The sum of a counter over its label sets: 0 when it is declared (`# TYPE`) without samples
/// yet, `None` when `/metrics` does not have it at all.
fn metric(admin: &Endpoint, name: &str) -> Option<f64> {
    let r = admin.exchange(&Request::get("/metrics"), Duration::from_secs(5)).ok()?;
    sum_of(&String::from_utf8_lossy(&r.body), name)
}

/// [`metric`] over an exposition text.
fn sum_of(text: &str, name: &str) -> Option<f64> {
    // OpenMetrics declares a counter by its family name, without `_total`.
    let family = name.strip_suffix("_total").unwrap_or(name);
    let declared = text.lines().any(|l| {
        l.strip_prefix("# TYPE ").and_then(|t| t.split_whitespace().next()).is_some_and(|n| n == family || n == name)
    });
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (declared || !values.is_empty()).then(|| values.iter().sum())
}

/// `/readyz`: status and body.
fn readyz(admin: &Endpoint) -> (u16, String) {
    match admin.exchange(&Request::get("/readyz"), Duration::from_secs(5)) {
        Ok(r) => (r.status, String::from_utf8_lossy(&r.body).trim().to_string()),
        Err(e) => (0, e.to_string()),
    }
}

/// Whether a `/readyz` body reports a refused topology: it names the topology and is not what
/// `/readyz` said while the file was good.
fn mentions_refusal(body: &str, good: &str) -> bool {
    body != good && body.to_lowercase().contains("topology")
}

/// Checks `until` every 100 ms up to `limit`; whether it held.
fn poll(limit: Duration, until: impl FnMut() -> bool) -> bool {
    wait::until(limit, Duration::from_millis(100), until)
}

/// `/filter` answers the poller must see in a phase before the next one starts, so that every
/// phase is asked about, however fast or slow the answers come.
const POLLS_PER_PHASE: usize = 10;

/// Waits until the poller has asked `/filter` [`POLLS_PER_PHASE`] more times; whether it did
/// within 10 s.
fn polled_more(polls: &AtomicUsize) -> bool {
    let from = polls.load(Ordering::Relaxed);
    wait::until(Duration::from_secs(10), Duration::from_millis(10), || {
        polls.load(Ordering::Relaxed) >= from + POLLS_PER_PHASE
    })
}

/// The first half of `good`, cut in the middle of a line.
fn half(good: &[u8]) -> &[u8] {
    let mut cut = good.len() / 2;
    while cut < good.len() - 1 && (good[cut - 1] == b'\n' || good[cut] == b'\n') {
        cut += 1;
    }
    &good[..cut]
}

/// What the file is at each phase of the attack, in order (the first four are [`bad_files`]).
const PHASES: [&str; 7] =
    ["good", "cut in half", "empty", "comments only", "garbage bytes", "non-atomic rewrite", "restored atomically"];

/// The bad files, in order.
fn bad_files(good: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut rng = Rng::new(5);
    let garbage: Vec<u8> = (0..4096).map(|_| rng.below(256) as u8).collect();
    vec![
        ("cut in half", half(good).to_vec()),
        ("empty", Vec::new()),
        ("comments only", b"# nothing here: the topology was cleared\n# by a config tool\n".to_vec()),
        ("garbage bytes", garbage),
    ]
}

/// Runs the attack.
pub fn run(ctx: &Ctx, out: &mut Outcome) -> anyhow::Result<()> {
    let dir = ctx.dir("topology")?;
    let (objects, topology) = fixtures::write_seed(&dir)?;
    let good = std::fs::read(&topology)?;
    let target = ctx.start(&dir, &objects, &topology, &Extra::default())?;
    let filter = Request::post("/filter", FILTER_ARGS.as_bytes());
    let baseline = Conn::new(target.plain.clone()).request(&filter, 1 << 20, Duration::from_secs(10))?;
    anyhow::ensure!(baseline.status == 200, "baseline /filter answered {}", baseline.status);
    let baseline: Value = serde_json::from_slice(&baseline.body)?;

    let stop = Stop::new();
    let phase = AtomicUsize::new(0);
    let asked = AtomicUsize::new(0);
    let polls = std::thread::scope(|s| {
        let poller = s.spawn(|| {
            let mut conn = Conn::new(target.plain.clone());
            let (mut total, mut differing) = (0usize, Vec::new());
            let mut by_phase: BTreeMap<&str, u64> = BTreeMap::new();
            while !stop.is_set() {
                total += 1;
                let answer = conn.request(&filter, 1 << 20, Duration::from_secs(5));
                let same = answer.as_ref().is_ok_and(|r| {
                    r.status == 200 && serde_json::from_slice::<Value>(&r.body).is_ok_and(|v| v == baseline)
                });
                if !same {
                    let now = PHASES[phase.load(Ordering::Relaxed)];
                    *by_phase.entry(now).or_default() += 1;
                    let seen = answer.map_or_else(
                        |e| e.to_string(),
                        |r| format!("{} {}", r.status, String::from_utf8_lossy(&r.body)),
                    );
                    differing.push(format!("({now}) {seen}"));
                    conn = Conn::new(target.plain.clone());
                }
                asked.fetch_add(1, Ordering::Relaxed);
                if stop.wait(Duration::from_millis(20)) {
                    break;
                }
            }
            (total, differing, by_phase)
        });
        steps(out, &target.admin, &topology, &good, (&phase, &asked));
        stop.set();
        poller.join().expect("filter poller thread")
    });
    let (total, differing, by_phase) = polls;
    out.figure("filter_polls", total);
    out.figure("filter_polls_differing", json!(by_phase));
    out.check(differing.is_empty(), || {
        format!(
            "{} of {total} /filter answers differed from the baseline while the topology was bad; first: {}",
            differing.len(),
            differing[0].chars().take(300).collect::<String>()
        )
    });
    target.finish(ctx, out, "the topology-file attack");
    Ok(())
}

/// Writes each bad file, then the non-atomic rewrite, then the atomic restore, checking the
/// metric and `/readyz` along the way.
fn steps(
    out: &mut Outcome,
    admin: &Endpoint,
    topology: &Path,
    good: &[u8],
    (phase, asked): (&AtomicUsize, &AtomicUsize),
) {
    let (_, good_readyz) = readyz(admin);
    out.figure("readyz_good", good_readyz.clone());
    // Absent until the first refusal (a family without samples is not exposed): 0 then.
    let mut errors = metric(admin, METRIC).unwrap_or(0.0);
    let mut exposed = false;
    let mut rises = serde_json::Map::new();
    for (i, (name, bytes)) in bad_files(good).into_iter().enumerate() {
        phase.store(i + 1, Ordering::Relaxed);
        let _ = std::fs::write(topology, &bytes);
        let before = errors;
        // Once the first bad file left no trace, the others get less time.
        let limit = if exposed || i == 0 { NOTICE } else { Duration::from_millis(1500) };
        let rose = poll(limit, || metric(admin, METRIC).is_some_and(|v| v > before));
        let now = metric(admin, METRIC);
        exposed |= now.is_some();
        errors = now.unwrap_or(0.0);
        rises.insert(name.into(), json!(now.map(|v| v - before)));
        out.check(rose, || match now {
            None => {
                format!("topology {name}: {METRIC} absent from /metrics {:.1} s after the write", limit.as_secs_f64())
            }
            Some(v) => {
                format!("topology {name}: {METRIC} stayed at {v} for {:.1} s after the write", limit.as_secs_f64())
            }
        });
        let (status, body) = readyz(admin);
        out.check(mentions_refusal(&body, &good_readyz), || {
            format!("topology {name}: /readyz ({status}) does not mention the refused topology: {body:?}")
        });
        out.check(polled_more(asked), || format!("topology {name}: /filter was not asked while the file was bad"));
    }
    out.figure("config_errors_rise", Value::Object(rises));

    // Non-atomic rewrite: a reader may see the first half for a second.
    phase.store(5, Ordering::Relaxed);
    let cut = half(good);
    let before = metric(admin, METRIC).unwrap_or(0.0);
    let mut refused_half = false;
    let rewrite = std::fs::File::create(topology).and_then(|mut f| {
        f.write_all(cut)?;
        f.sync_data()?;
        // Half a file stays visible until stork has refused what it read and /filter has been
        // asked meanwhile: the window a slow writer leaves open.
        refused_half = poll(NOTICE, || metric(admin, METRIC).is_some_and(|v| v > before));
        polled_more(asked);
        f.write_all(&good[cut.len()..])?;
        f.sync_data()
    });
    out.check(refused_half, || format!("the half-written topology was not refused within {NOTICE:?}"));
    out.check(rewrite.is_ok(), || format!("could not rewrite the topology: {rewrite:?}"));

    // Atomic restore: write a temporary file, rename it over the topology.
    phase.store(6, Ordering::Relaxed);
    let tmp = topology.with_extension("yaml.tmp");
    let restored = std::fs::write(&tmp, good).and_then(|()| std::fs::rename(&tmp, topology));
    out.check(restored.is_ok(), || format!("could not restore the topology: {restored:?}"));
    let cleared = poll(Duration::from_secs(10), || !mentions_refusal(&readyz(admin).1, &good_readyz));
    let (status, body) = readyz(admin);
    out.figure("readyz_after_restore", format!("{status} {body}"));
    out.check(cleared, || {
        format!("/readyz still mentions the topology 10 s after the good file was restored: {body:?}")
    });
    // A last stretch of /filter answers on the good file.
    out.check(polled_more(asked), || "/filter was not asked after the restore".into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_sums_over_label_sets_and_is_zero_when_only_declared() {
        let text = "# TYPE stork_driver_config_errors counter\nstork_driver_config_errors_total{file=\"topology\"} 2\nstork_driver_config_errors_total{file=\"state\"} 1\nstork_driver_config_errors_created{file=\"state\"} 1.7e9\n";
        assert_eq!(sum_of(text, METRIC), Some(3.0));
        assert_eq!(sum_of("# TYPE stork_driver_config_errors counter\n# EOF\n", METRIC), Some(0.0));
        assert_eq!(sum_of("# TYPE other counter\nother_total 4\n", METRIC), None);
    }

    #[test]
    fn half_a_file_ends_in_the_middle_of_a_line() {
        let good = b"ab\ncd\nef\n";
        let cut = half(good);
        assert!(!cut.ends_with(b"\n") && good[cut.len()] != b'\n', "{:?}", String::from_utf8_lossy(cut));
    }
}
