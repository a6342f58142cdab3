//! `stork serve`'s request and connection bounds (README: "Limits and hardening").

use std::time::Duration;

use clap::Args;

use super::parse_duration;

/// What one request or connection may cost (README: "Limits and hardening").
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Deadline of one extender call, below the scheduler's `httpTimeout` (5s in the manifests).
    /// Past it a filter call is answered with the protocol's `Error`, a prioritize call with 503.
    #[arg(long, env = "STORK_EXTENDER_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub extender_timeout: Duration,
    /// Threads extender decisions run on, apart from the HTTP workers that serve the webhooks
    /// (default: half the cores, at least 1).
    #[arg(long, env = "STORK_EXTENDER_THREADS")]
    pub extender_threads: Option<usize>,
    /// Most nodes one extender request may name; more is answered 413.
    #[arg(long, env = "STORK_EXTENDER_MAX_NODES", default_value_t = crate::extender::limits::DEFAULT_MAX_NODES)]
    pub extender_max_nodes: usize,
    /// Largest extender request body (`64Mi`, `512Ki` or bytes); larger is answered 413.
    #[arg(long, env = "STORK_EXTENDER_MAX_BODY", default_value = "64Mi", value_parser = parse_bytes)]
    pub extender_max_body: usize,
    /// Extender body bytes held at once by all extender requests (room for one body of the
    /// largest size and ordinary calls beside it); a request that does not fit waits up to 1s,
    /// then gets 503 with `Retry-After: 1`.
    #[arg(long, env = "STORK_EXTENDER_BODY_BUDGET", default_value = "96Mi", value_parser = parse_bytes)]
    pub extender_body_budget: usize,
    /// Largest AdmissionReview body; a larger review is allowed unchanged, with a warning.
    #[arg(long, env = "STORK_WEBHOOK_MAX_BODY", default_value = "16Mi", value_parser = parse_bytes)]
    pub webhook_max_body: usize,
    /// Review body bytes held at once by all reviews (apart from the extender's budget); a review
    /// that does not fit within 1s is allowed unchanged, with a warning.
    #[arg(long, env = "STORK_WEBHOOK_BODY_BUDGET", default_value = "32Mi", value_parser = parse_bytes)]
    pub webhook_body_budget: usize,
    /// Time for a whole request body to arrive (extender: 408; webhook: allowed with a warning).
    #[arg(long, env = "STORK_BODY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub body_timeout: Duration,
    /// Time for a request head to arrive on a connection (408 past it).
    #[arg(long, env = "STORK_HEADER_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Time for a TLS handshake to finish; a connection that sends no ClientHello is closed.
    #[arg(long, env = "STORK_TLS_HANDSHAKE_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub tls_handshake_timeout: Duration,
    /// Open connections per listener; past it the listener stops accepting until some close.
    #[arg(long, env = "STORK_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Requests one connection may have in flight (HTTP/2 streams); more get 503 (extender) or
    /// an allowed review with a warning (webhook).
    #[arg(long, env = "STORK_MAX_REQUESTS_PER_CONNECTION", default_value_t = 100)]
    pub max_requests_per_connection: usize,
}

impl Default for LimitArgs {
    /// The flag defaults.
    fn default() -> Self {
        Self {
            extender_timeout: Duration::from_secs(3),
            extender_threads: None,
            extender_max_nodes: crate::extender::limits::DEFAULT_MAX_NODES,
            extender_max_body: 64 << 20,
            extender_body_budget: 96 << 20,
            webhook_max_body: 16 << 20,
            webhook_body_budget: 32 << 20,
            body_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(5),
            tls_handshake_timeout: Duration::from_secs(3),
            max_connections: 10_000,
            max_requests_per_connection: 100,
        }
    }
}

impl LimitArgs {
    /// Rejects bounds that would refuse every request.
    pub fn validate(&self) -> Result<(), String> {
        let zero = [
            ("--extender-timeout", self.extender_timeout.is_zero()),
            ("--extender-threads", self.extender_threads == Some(0)),
            ("--extender-max-nodes", self.extender_max_nodes == 0),
            ("--extender-max-body", self.extender_max_body == 0),
            ("--webhook-max-body", self.webhook_max_body == 0),
            ("--body-timeout", self.body_timeout.is_zero()),
            ("--max-connections", self.max_connections == 0),
            ("--max-requests-per-connection", self.max_requests_per_connection == 0),
        ];
        if let Some((flag, _)) = zero.iter().find(|(_, z)| *z) {
            return Err(format!("{flag} must be above zero"));
        }
        if self.extender_body_budget < self.extender_max_body || self.webhook_body_budget < self.webhook_max_body {
            return Err(
                "a body budget must hold at least one body of the largest size (--*-body-budget >= --*-max-body)"
                    .into(),
            );
        }
        if self.extender_max_body > u32::MAX as usize || self.webhook_max_body > u32::MAX as usize {
            return Err("--extender-max-body and --webhook-max-body must be under 4Gi".into());
        }
        Ok(())
    }
}

/// A byte size: a number with an optional `Ki`, `Mi` or `Gi` suffix.
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let shift = match unit {
        "" => 0,
        "Ki" => 10,
        "Mi" => 20,
        "Gi" => 30,
        _ => return Err(format!("{text:?}: expected a number of bytes with an optional Ki, Mi or Gi suffix")),
    };
    let n: usize = digits.parse().map_err(|e| format!("{text:?}: {e}"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("{text:?} is too large"))
}
