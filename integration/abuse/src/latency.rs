//! Webhook latency under attack: `/mutate` reviews, each on a fresh TLS connection (connect,
//! handshake, request, answer all timed), at a steady rate, and their percentiles.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{
    client::{Endpoint, Request},
    fixtures,
    report::{Outcome, ms},
    wait::Stop,
};

/// How long one review may take before it counts as unanswered.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(15);

/// The assertion every attack makes on the webhook: p99 under this.
pub const P99_LIMIT: Duration = Duration::from_millis(100);

/// One review: how long it took, and what went wrong if anything did.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Connect to answer (or to the failure).
    pub latency: Duration,
    /// Why it does not count as answered: transport error, status, or a bad review.
    pub error: Option<String>,
}

/// When to stop sending reviews.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Reviews per second.
    pub per_second: f64,
    /// At most this many.
    pub count: usize,
    /// Not after this.
    pub until: Instant,
}

/// Sends reviews at `pace` until its count or deadline, or until `stop` is set, each at its due
/// time whether or not earlier ones were answered (a slow server must not slow the probe down
/// and so hide its own latency); returns when every review has ended.
pub fn probe(https: &Endpoint, pace: Pace, stop: &Stop) -> Vec<Sample> {
    std::thread::scope(|s| {
        let mut sent = Vec::new();
        let start = Instant::now();
        let gap = Duration::from_secs_f64(1.0 / pace.per_second);
        while sent.len() < pace.count && Instant::now() < pace.until {
            let due = start + gap * sent.len() as u32;
            if stop.wait(due.saturating_duration_since(Instant::now())) {
                break;
            }
            let uid = format!("abuse-probe-{}", sent.len());
            sent.push(s.spawn(move || review(https, &uid)));
        }
        sent.into_iter().map(|h| h.join().expect("review thread")).collect()
    })
}

/// One review on a fresh connection; the answer must be HTTP 200 echoing the uid.
pub fn review(https: &Endpoint, uid: &str) -> Sample {
    let body = fixtures::pod_review(uid);
    let start = Instant::now();
    let error = match https.exchange(&Request::post("/mutate", &body), REVIEW_TIMEOUT) {
        Err(e) => Some(format!("no answer ({e})")),
        Ok(r) if r.status != 200 => Some(format!("HTTP {}", r.status)),
        Ok(r) => match serde_json::from_slice::<Value>(&r.body) {
            Ok(v) if v["response"]["uid"] == uid && v["response"]["allowed"].is_boolean() => None,
            _ => Some(format!("not a review for uid {uid}: {}", String::from_utf8_lossy(&r.body))),
        },
    };
    Sample { latency: start.elapsed(), error }
}

/// The `p`-th percentile (nearest rank) of `latencies`; zero when empty.
pub fn percentile(latencies: &[Duration], p: f64) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1)).copied().unwrap_or_default()
}

/// Records p50/p99/max and errors of `samples` as `webhook_*` figures and asserts p99 under
/// [`P99_LIMIT`] and every review answered; `under` names the attack in messages.
pub fn assert_webhook(out: &mut Outcome, samples: &[Sample], under: &str) {
    let latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    let (p50, p99) = (percentile(&latencies, 50.0), percentile(&latencies, 99.0));
    let max = latencies.iter().max().copied().unwrap_or_default();
    let errors: Vec<&str> = samples.iter().filter_map(|s| s.error.as_deref()).collect();
    out.figure("webhook_reviews", samples.len());
    out.figure("webhook_ms", json!({"p50": ms(p50), "p99": ms(p99), "max": ms(max)}));
    out.figure("webhook_errors", errors.len());
    out.check(!samples.is_empty(), || format!("no webhook review was sent under {under}"));
    out.check(p99 < P99_LIMIT, || {
        format!("webhook p99 {:.0} ms > {} ms under {under}, {} reviews", ms(p99), P99_LIMIT.as_millis(), samples.len())
    });
    out.check(errors.is_empty(), || {
        format!(
            "{} of {} webhook reviews not answered with HTTP 200 under {under}; first: {}",
            errors.len(),
            samples.len(),
            errors[0]
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let ms = |v: u64| Duration::from_millis(v);
        let latencies: Vec<Duration> = (1..=100).rev().map(ms).collect();
        assert_eq!((percentile(&latencies, 50.0), percentile(&latencies, 99.0)), (ms(50), ms(99)));
        assert_eq!(percentile(&[ms(7)], 99.0), ms(7));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }
}
