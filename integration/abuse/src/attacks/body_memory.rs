//! Attack 2, body memory: 16 concurrent bodies of the largest accepted size (64 MiB extender,
//! 16 MiB review; valid JSON, so a server buffers them) plus 16 slow bodies (a Content-Length
//! of 1 MiB, then 3 bytes a second), while ordinary `/filter` and `/mutate` requests keep coming
//! on fresh connections.
//!
//! Asserted: VmHWM under the limit; every slow request ends (408/413/503, an allowed review for
//! a webhook path, or the server closing) within 30 s; every ordinary request gets 200; a big
//! extender body gets 200, 413, 503 with Retry-After or the connection closed early (refused),
//! a big review an HTTP 200 review (whether it echoes the uid is a figure: a server that refuses
//! to buffer the body cannot read it).

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use stork_bench::stork::Extra;

use crate::{
    client::{self, Endpoint, Request, Response},
    fixtures,
    harness::{Ctx, Target},
    latency::percentile,
    report::{Outcome, ms, size},
    wait::Stop,
};

/// Each kind of body, concurrently.
const BIG: usize = 16;
const SLOW: usize = 16;
/// A slow request must be ended by the server within this.
const SLOW_LIMIT: Duration = Duration::from_secs(30);
/// When the client gives up on a slow request.
const SLOW_GIVE_UP: Duration = Duration::from_secs(34);
/// The largest extender body the server accepts by default.
const EXTENDER_MAX: usize = 64 << 20;
/// The largest AdmissionReview the server accepts by default.
const REVIEW_MAX: usize = 16 << 20;
/// The uid of every big review.
const BIG_UID: &str = "abuse-big-review";

/// `{..., "<key>": "xxx…"}` built from `value` with the padding sized so the whole is `total` bytes.
fn padded(mut value: Value, pointer: &str, total: usize) -> Vec<u8> {
    let set = |value: &mut Value, pad: String| *value.pointer_mut(pointer).expect("padding slot") = pad.into();
    set(&mut value, String::new());
    let bare = serde_json::to_vec(&value).expect("encode").len();
    set(&mut value, "x".repeat(total.saturating_sub(bare)));
    serde_json::to_vec(&value).expect("encode")
}

fn big_extender_body() -> Vec<u8> {
    let mut args = fixtures::json(fixtures::FILTER_ARGS);
    args["Padding"] = "".into();
    padded(args, "/Padding", EXTENDER_MAX)
}

fn big_review_body() -> Vec<u8> {
    let mut review = fixtures::json(fixtures::POD_REVIEW);
    review["request"]["uid"] = BIG_UID.into();
    review["request"]["object"]["metadata"]["annotations"] = json!({"abuse/padding": ""});
    padded(review, "/request/object/metadata/annotations/abuse~1padding", REVIEW_MAX)
}

/// How a big body ended.
enum Big {
    /// An HTTP answer.
    Answered(Response),
    /// The server closed the connection before the whole body was sent (it refused to buffer
    /// it), and no answer could be read.
    ClosedEarly(String),
    /// No answer for another reason.
    Failed(String),
}

/// Sends a whole body; when the server stops reading early, its answer (if any) is still read.
fn big_request(endpoint: &Endpoint, path: &str, body: &[u8]) -> Big {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut stream = match endpoint.connect(deadline) {
        Ok(s) => s,
        Err(e) => return Big::Failed(format!("connect: {e}")),
    };
    let sent = client::send(&mut stream, &Request::post(path, body), true, deadline);
    match (client::read_response(&mut stream, client::KEEP, deadline), sent) {
        (Ok(r), _) => Big::Answered(r),
        (Err(e), Ok(())) => Big::Failed(format!("no answer ({e})")),
        (Err(_), Err(e)) => Big::ClosedEarly(e.to_string()),
    }
}

/// How a slow request ended.
#[derive(Debug)]
enum SlowEnd {
    Answered(u16, Duration),
    Closed(Duration),
    StillOpen,
    Failed(String),
}

/// Headers with a 1 MiB Content-Length, then 3 bytes a second until the server answers or closes.
fn slow_request(endpoint: &Endpoint, path: &str) -> SlowEnd {
    let start = Instant::now();
    let Ok(mut stream) = endpoint.connect(start + Duration::from_secs(10)) else {
        return SlowEnd::Failed("could not connect".into());
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"",
        1 << 20
    );
    if stream.write_all(head.as_bytes()).and_then(|()| stream.flush()).is_err() {
        return SlowEnd::Closed(start.elapsed());
    }
    let sent = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while sent.elapsed() < SLOW_GIVE_UP {
        if stream.write_all(b"   ").and_then(|()| stream.flush()).is_err() {
            return SlowEnd::Closed(sent.elapsed());
        }
        let _ = stream.tcp().set_read_timeout(Some(Duration::from_secs(1)));
        match stream.read(&mut buf) {
            Ok(0) => return SlowEnd::Closed(sent.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return SlowEnd::Closed(sent.elapsed()),
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(_)) = resp.parse(&got) {
            return SlowEnd::Answered(resp.code.unwrap_or(0), sent.elapsed());
        }
    }
    SlowEnd::StillOpen
}

/// When a slow request ended, and whether that was as required.
fn judge_slow(path: &str, end: &SlowEnd) -> (Option<Duration>, Result<(), String>) {
    let webhook = path != "/filter";
    let late = |t: &Duration| match *t <= SLOW_LIMIT {
        true => Ok(()),
        false => Err(format!("were ended only after more than {} s", SLOW_LIMIT.as_secs())),
    };
    match end {
        SlowEnd::Answered(status, t) if [408, 413, 503].contains(status) || (webhook && *status == 200) => {
            (Some(*t), late(t))
        }
        SlowEnd::Answered(status, t) => {
            (Some(*t), Err(format!("were answered {status} (want 408/413/503 or a close)")))
        }
        SlowEnd::Closed(t) => (Some(*t), late(t)),
        SlowEnd::StillOpen => {
            (None, Err(format!("still open after {} s at 3 bytes/s of a 1 MiB Content-Length", SLOW_GIVE_UP.as_secs())))
        }
        SlowEnd::Failed(e) => (None, Err(e.clone())),
    }
}

/// Ordinary `/filter` and `/mutate` requests on fresh connections, 4 a second, until `stop`.
fn ordinary_requests(target: &Target, stop: &Stop) -> Vec<(&'static str, Result<u16, String>, Duration)> {
    let mut seen = Vec::new();
    loop {
        let uid = format!("abuse-ordinary-{}", seen.len());
        let (path, body) = match seen.len() % 2 {
            0 => ("/filter", fixtures::FILTER_ARGS.as_bytes().to_vec()),
            _ => ("/mutate", fixtures::pod_review(&uid)),
        };
        let start = Instant::now();
        let result = match target.https.exchange(&Request::post(path, &body), Duration::from_secs(15)) {
            Err(e) => Err(format!("no answer ({e})")),
            Ok(r) if r.status == 200 && (path == "/filter" || String::from_utf8_lossy(&r.body).contains(&uid)) => {
                Ok(200)
            }
            Ok(r) => Err(format!("HTTP {} {}", r.status, String::from_utf8_lossy(&r.body[..r.body.len().min(200)]))),
        };
        seen.push((path, result, start.elapsed()));
        // Ordinary traffic: four requests a second, until the big and slow bodies are done.
        if stop.wait(Duration::from_millis(250)) {
            return seen;
        }
    }
}

/// Whether a big body's answer is acceptable (and what it was), else what was wrong with it.
fn judge_big(path: &str, answer: &Big) -> Result<String, String> {
    let webhook = path == "/mutate" || path == "/validate";
    match answer {
        Big::Failed(e) => Err(e.clone()),
        Big::ClosedEarly(e) if webhook => Err(format!("closed by the server while the review was sent ({e})")),
        Big::ClosedEarly(_) => Ok("closed early".into()),
        Big::Answered(r) if webhook => match serde_json::from_slice::<Value>(&r.body) {
            Ok(v) if r.status == 200 && v["response"]["allowed"].is_boolean() => {
                Ok(if v["response"]["uid"] == BIG_UID { "200 uid echoed" } else { "200 uid not echoed" }.into())
            }
            _ => Err(format!("HTTP {} {}", r.status, String::from_utf8_lossy(&r.body[..r.body.len().min(200)]))),
        },
        Big::Answered(r) if r.status == 503 && r.header("retry-after").is_none() => {
            Err("503 without Retry-After".into())
        }
        Big::Answered(r) if [200, 413, 503].contains(&r.status) => Ok(r.status.to_string()),
        Big::Answered(r) => Err(format!("HTTP {}", r.status)),
    }
}

/// Runs the attack.
pub fn run(ctx: &Ctx, out: &mut Outcome) -> anyhow::Result<()> {
    let target = ctx.start_seed("body-memory", &Extra::default())?;
    let (extender_body, review_body) = (big_extender_body(), big_review_body());
    out.figure(
        "big_bodies",
        format!(
            "{} × {} extender + {} × {} review",
            BIG / 2,
            size(extender_body.len() as u64),
            BIG / 2,
            size(review_body.len() as u64)
        ),
    );
    let extender = [
        (&target.https, "/filter"),
        (&target.https, "/prioritize"),
        (&target.plain, "/filter"),
        (&target.plain, "/prioritize"),
    ];
    let slow_targets = [
        (&target.https, "/filter"),
        (&target.plain, "/filter"),
        (&target.https, "/mutate"),
        (&target.https, "/validate"),
    ];
    let stop = Stop::new();
    let (big, slow, ordinary) = std::thread::scope(|s| {
        let ordinary = s.spawn(|| ordinary_requests(&target, &stop));
        let big: Vec<_> = (0..BIG)
            .map(|i| {
                let (endpoint, path, body) = match i % 2 {
                    0 => (extender[i / 2 % 4].0, extender[i / 2 % 4].1, &extender_body),
                    _ => (&target.https, ["/mutate", "/validate"][i / 2 % 2], &review_body),
                };
                s.spawn(move || (path, big_request(endpoint, path, body)))
            })
            .collect();
        let slow: Vec<_> = (0..SLOW)
            .map(|i| {
                let (endpoint, path) = slow_targets[i % 4];
                s.spawn(move || (path, slow_request(endpoint, path)))
            })
            .collect();
        let big: Vec<_> = big.into_iter().map(|h| h.join().expect("big body thread")).collect();
        let slow: Vec<_> = slow.into_iter().map(|h| h.join().expect("slow body thread")).collect();
        stop.set();
        (big, slow, ordinary.join().expect("ordinary requests thread"))
    });

    let mut answers: BTreeMap<String, u64> = BTreeMap::new();
    for (path, answer) in &big {
        let verdict = judge_big(path, answer);
        *answers.entry(format!("{path} {}", verdict.as_deref().unwrap_or("bad"))).or_default() += 1;
        if let Err(e) = verdict {
            out.fail(format!("big body to {path}: {e}"));
        }
    }
    out.figure("big_answers", json!(answers));

    let mut ended = Vec::new();
    let mut wrong: BTreeMap<String, BTreeMap<&str, usize>> = BTreeMap::new();
    for (path, end) in &slow {
        let (time, verdict) = judge_slow(path, end);
        ended.extend(time);
        if let Err(e) = verdict {
            *wrong.entry(e).or_default().entry(path).or_default() += 1;
        }
    }
    for (what, paths) in wrong {
        let count: usize = paths.values().sum();
        let paths: Vec<String> = paths.iter().map(|(p, n)| format!("{p} ×{n}")).collect();
        out.fail(format!("{count} of {SLOW} slow bodies ({}) {what}", paths.join(", ")));
    }
    out.figure("slow_ended", format!("{} of {SLOW}", ended.len()));
    out.figure("slow_end_max_s", ended.iter().max().map_or(0.0, |t| (t.as_secs_f64() * 10.0).round() / 10.0));

    let latencies: Vec<Duration> = ordinary.iter().map(|(_, _, t)| *t).collect();
    let failed: Vec<String> =
        ordinary.iter().filter_map(|(p, r, _)| r.as_ref().err().map(|e| format!("{p}: {e}"))).collect();
    out.figure("ordinary_requests", ordinary.len());
    out.figure(
        "ordinary_ms",
        json!({"p50": ms(percentile(&latencies, 50.0)), "p99": ms(percentile(&latencies, 99.0))}),
    );
    out.check(failed.is_empty(), || {
        format!(
            "{} of {} ordinary /filter and /mutate requests failed during the body attack; first: {}",
            failed.len(),
            ordinary.len(),
            failed[0]
        )
    });
    target.finish(ctx, out, "16 max-size + 16 slow bodies");
    Ok(())
}
