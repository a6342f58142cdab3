//! Attack 6, mutated bodies: 100,000 (smoke: 10,000) mutated AdmissionReviews and ExtenderArgs
//! (see [`mutations`]) against `/mutate`, `/validate` and `/filter`, `/prioritize` on both
//! listeners, over a few keep-alive connections, with stork logging at debug.
//!
//! Asserted: no HTTP 5xx; every review answered HTTP 200 with a review that has
//! `response.allowed`, echoing the uid whenever it can be read, in v1beta1 for a v1beta1 review;
//! `"Nodes": {"items": null}` answered 200; stork alive; its log without "panicked" and without a
//! line that begins with the forged marker.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::Path,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use stork_bench::stork::Extra;

use crate::{
    attacks::mutations::{self, Case, FORGED, Rng},
    client::{Conn, Request, Response},
    harness::{Ctx, Target},
    report::{Outcome, size},
};

/// Client threads, each with its own connections and generator.
const THREADS: usize = 4;
/// Seed of thread 0 (thread `t` uses `SEED + t`).
const SEED: u64 = 0x5702_4b00;
/// Log bytes read at most.
const LOG_CAP: u64 = 512 << 20;
/// Examples kept per kind of problem.
const EXAMPLES: usize = 3;

/// Problems by kind: how many, and the first few.
#[derive(Default)]
struct Tally {
    statuses: BTreeMap<String, u64>,
    problems: BTreeMap<&'static str, (u64, Vec<String>)>,
    checked: BTreeMap<&'static str, u64>,
}

impl Tally {
    fn problem(&mut self, kind: &'static str, detail: impl FnOnce() -> String) {
        let (count, examples) = self.problems.entry(kind).or_default();
        *count += 1;
        if examples.len() < EXAMPLES {
            examples.push(detail());
        }
    }

    fn merge(&mut self, other: Self) {
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in other.checked {
            *self.checked.entry(k).or_default() += v;
        }
        for (k, (n, ex)) in other.problems {
            let (count, examples) = self.problems.entry(k).or_default();
            *count += n;
            examples.extend(ex.into_iter().take(EXAMPLES - examples.len().min(EXAMPLES)));
        }
    }
}

/// A short, printable view of a body.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(160)]).escape_debug().to_string();
    if bytes.len() > 160 { format!("{text}… ({})", size(bytes.len() as u64)) } else { text }
}

/// Checks one answer against the case.
fn judge(tally: &mut Tally, path: &str, case: &Case, answer: std::io::Result<Response>) {
    let webhook = path == "/mutate" || path == "/validate";
    let what = || format!("POST {path} [{}] {}", case.what.join(", "), snippet(&case.body));
    let r = match answer {
        Ok(r) => r,
        Err(e) => return tally.problem("no answer", || format!("{}: {e}", what())),
    };
    *tally.statuses.entry(format!("{path} {}", r.status)).or_default() += 1;
    if r.status >= 500 {
        tally.problem("HTTP 5xx", || format!("{} → {} {}", what(), r.status, snippet(&r.body)));
    }
    if !webhook {
        if case.expect.ok {
            *tally.checked.entry("nodes_items_null").or_default() += 1;
            if r.status != 200 {
                tally.problem("items null not 200", || format!("{} → {} {}", what(), r.status, snippet(&r.body)));
            }
        }
        return;
    }
    let review = serde_json::from_slice::<Value>(&r.body).ok().filter(|v| v["response"]["allowed"].is_boolean());
    let Some(review) = review.filter(|_| r.status == 200) else {
        return tally.problem("webhook answer not an HTTP 200 review", || {
            format!("{} → {} {}", what(), r.status, snippet(&r.body))
        });
    };
    if let Some(uid) = &case.expect.uid {
        *tally.checked.entry("uid_echo").or_default() += 1;
        if review["response"]["uid"] != uid.as_str() {
            let kind = match &case.what {
                w if w.contains(&"truncated") => "uid not echoed (body cut after the uid)",
                w if w.contains(&"deep-nesting") => "uid not echoed (10k-deep nesting after the uid)",
                _ => "uid not echoed (valid JSON review)",
            };
            tally.problem(kind, || {
                format!(
                    "{} → uid {}, want {}",
                    what(),
                    snippet(review["response"]["uid"].to_string().as_bytes()),
                    snippet(uid.as_bytes())
                )
            });
        }
    }
    if let Some(version) = case.expect.api_version {
        *tally.checked.entry("v1beta1").or_default() += 1;
        if review["apiVersion"] != version {
            tally.problem("apiVersion not echoed", || {
                format!("{} → apiVersion {}, want {version}", what(), review["apiVersion"])
            });
        }
    }
}

/// One client thread: `count` cases from its own seed.
fn client(target: &Target, thread: usize, count: usize) -> Tally {
    let mut rng = Rng::new(SEED + thread as u64);
    // /mutate, /validate (HTTPS); /filter, /prioritize on HTTPS and on the plain listener.
    let routes = [
        ("/mutate", &target.https),
        ("/validate", &target.https),
        ("/filter", &target.https),
        ("/prioritize", &target.https),
        ("/filter", &target.plain),
        ("/prioritize", &target.plain),
    ];
    let mut conns: Vec<Conn> = routes.iter().map(|(_, e)| Conn::new((*e).clone())).collect();
    let mut tally = Tally::default();
    for _ in 0..count {
        let endpoint = rng.below(4);
        let route = if endpoint >= 2 && rng.below(2) == 1 { endpoint + 2 } else { endpoint };
        let path = routes[route].0;
        let case = mutations::case(&mut rng, endpoint < 2);
        let req = Request { method: "POST", path, content_type: case.content_type, body: &case.body };
        let answer = conns[route].request(&req, 1 << 20, Duration::from_secs(10));
        if answer.is_err() {
            conns[route] = Conn::new(routes[route].1.clone());
        }
        judge(&mut tally, path, &case, answer);
    }
    tally
}

/// What the log shows: bytes read, lines with "panicked", lines beginning with the marker.
fn scan_log(path: &Path) -> std::io::Result<(u64, Vec<String>, Vec<String>)> {
    let mut reader = BufReader::new(std::fs::File::open(path)?);
    let (mut read, mut panics, mut forged) = (0u64, vec![], vec![]);
    let mut line = Vec::new();
    while read < LOG_CAP {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        read += n as u64;
        let text = String::from_utf8_lossy(&line);
        if text.contains("panicked") && panics.len() < EXAMPLES {
            panics.push(text.trim_end().to_string());
        }
        if text.trim_start().starts_with(FORGED) && forged.len() < EXAMPLES {
            forged.push(text.trim_end().to_string());
        }
    }
    Ok((read, panics, forged))
}

/// Runs the attack.
pub fn run(ctx: &Ctx, out: &mut Outcome) -> anyhow::Result<()> {
    let total = if ctx.smoke { 10_000 } else { 100_000 };
    let extra = Extra { rust_log: Some("debug".into()), ..Extra::default() };
    let target = ctx.start_seed("mutated-bodies", &extra)?;
    let start = Instant::now();
    let tally = std::thread::scope(|s| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let count = total / THREADS + usize::from(t < total % THREADS);
                let target = &target;
                s.spawn(move || client(target, t, count))
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("fuzz client thread")).fold(Tally::default(), |mut all, t| {
            all.merge(t);
            all
        })
    });
    let took = start.elapsed();
    out.figure("requests", total);
    out.figure("requests_per_s", (total as f64 / took.as_secs_f64()).round());
    out.figure("statuses", json!(tally.statuses));
    out.figure("expectations_checked", json!(tally.checked));
    for (kind, (count, examples)) in &tally.problems {
        out.fail(format!("{kind}: {count} of {total} requests; e.g.\n        {}", examples.join("\n        ")));
    }

    let log = target.stork.log().to_path_buf();
    let log_size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    match scan_log(&log) {
        Err(e) => out.fail(format!("could not read stork's log {}: {e}", log.display())),
        Ok((read, panics, forged)) => {
            out.figure("log", format!("{} read of {}", size(read), size(log_size)));
            out.check(panics.is_empty(), || format!("stork's log says \"panicked\": {}", panics.join(" | ")));
            out.check(forged.is_empty(), || {
                format!(
                    "a raw newline from a request reached stork's log: lines begin with {FORGED}: {}",
                    forged.join(" | ")
                )
            });
        }
    }
    target.finish(ctx, out, "the mutated-bodies attack");
    Ok(())
}
