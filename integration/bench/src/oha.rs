//! The load generator: `oha` (crates.io), run once per measurement with JSON output.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use serde::{Deserialize, Serialize};

/// Why a load run could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// oha is not installed.
    #[error("oha not found on PATH or in ~/.cargo/bin: install it with `cargo install oha --locked`")]
    Missing,
    /// oha could not be started.
    #[error("failed to run {path}")]
    Spawn {
        /// The binary.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// oha exited with an error.
    #[error("oha failed ({status}): {stderr}\ncommand: {command}")]
    Failed {
        /// Exit status.
        status: std::process::ExitStatus,
        /// Its stderr.
        stderr: String,
        /// The command line.
        command: String,
    },
    /// oha's JSON output did not parse.
    #[error("unexpected oha output: {source}\ncommand: {command}\noutput: {output}")]
    Output {
        /// The command line.
        command: String,
        /// The start of what it printed.
        output: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

/// How long a run lasts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Amount {
    /// For this many seconds (`-z`), waiting for requests in flight at the end (`-w`).
    Seconds(f64),
    /// This many requests (`-n`).
    Requests(usize),
}

/// HTTP version and transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive over plain TCP.
    #[serde(rename = "http1.1")]
    Http1,
    /// HTTP/1.1 with keep-alive over TLS.
    #[serde(rename = "http1.1+tls")]
    Http1Tls,
    /// HTTP/2 over TLS (ALPN h2).
    #[serde(rename = "h2+tls")]
    Http2Tls,
}

impl Protocol {
    /// Label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::Http1 => "HTTP/1.1",
            Self::Http1Tls => "HTTP/1.1 + TLS",
            Self::Http2Tls => "HTTP/2 + TLS",
        }
    }

    /// Whether requests go to the HTTPS listener.
    pub fn tls(self) -> bool {
        !matches!(self, Self::Http1)
    }
}

/// One load run: POST `body` to `url` from `concurrency` connections.
#[derive(Debug, Clone)]
pub struct Load<'a> {
    /// Target URL (http:// or https://).
    pub url: String,
    /// Request body file.
    pub body: &'a Path,
    /// Connections (one request in flight on each).
    pub concurrency: usize,
    /// Run length.
    pub amount: Amount,
    /// Transport.
    pub protocol: Protocol,
}

/// What one run measured. Latencies in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    /// Requests completed (successful or not).
    pub requests: u64,
    /// Requests per second over the run.
    pub rps: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// Responses by status code.
    pub statuses: BTreeMap<String, u64>,
    /// Failed requests by error.
    pub errors: BTreeMap<String, u64>,
}

impl Stats {
    /// Requests that got a 200.
    pub fn ok(&self) -> u64 {
        self.statuses.get("200").copied().unwrap_or(0)
    }

    /// Requests that did not get a 200.
    pub fn not_ok(&self) -> u64 {
        self.statuses.values().sum::<u64>() - self.ok() + self.errors.values().sum::<u64>()
    }
}

/// The oha binary.
#[derive(Debug, Clone)]
pub struct Oha {
    path: PathBuf,
}

impl Oha {
    /// Finds oha on PATH, else in ~/.cargo/bin.
    pub fn locate() -> Result<Self, Error> {
        let on_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join("oha")).collect::<Vec<_>>())
            .unwrap_or_default();
        let cargo_bin = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/oha"));
        on_path.into_iter().chain(cargo_bin).find(|p| p.is_file()).map(|path| Self { path }).ok_or(Error::Missing)
    }

    /// `oha --version`, e.g. `oha 1.16.0`.
    pub fn version(&self) -> Result<String, Error> {
        let out = Command::new(&self.path).arg("--version").output().map_err(|source| self.spawn_err(source))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The command line of a run, for logs and BENCHMARKS.md.
    pub fn command_line(&self, load: &Load) -> String {
        let args = self.args(load);
        std::iter::once("oha".to_string()).chain(args).collect::<Vec<_>>().join(" ")
    }

    fn args(&self, load: &Load) -> Vec<String> {
        let mut args: Vec<String> =
            ["--no-tui", "--output-format", "json", "-m", "POST", "-T", "application/json"].map(String::from).into();
        args.extend(["-D".into(), load.body.display().to_string(), "-c".into(), load.concurrency.to_string()]);
        match load.amount {
            Amount::Seconds(s) => args.extend(["-z".into(), format!("{}ms", (s * 1000.0).round() as u64), "-w".into()]),
            Amount::Requests(n) => args.extend(["-n".into(), n.to_string()]),
        }
        if load.protocol == Protocol::Http2Tls {
            args.push("--http2".into());
        }
        if load.protocol.tls() {
            // stork's development certificate is signed by its own CA.
            args.push("--insecure".into());
        }
        args.push(load.url.clone());
        args
    }

    /// Runs one load and reads its JSON summary.
    pub fn run(&self, load: &Load) -> Result<Stats, Error> {
        let command = self.command_line(load);
        tracing::debug!(%command, "oha");
        let out = Command::new(&self.path).args(self.args(load)).output().map_err(|source| self.spawn_err(source))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(Error::Failed { status: out.status, stderr, command });
        }
        parse(&out.stdout).map_err(|source| Error::Output {
            command,
            output: String::from_utf8_lossy(&out.stdout).chars().take(2_000).collect(),
            source,
        })
    }

    fn spawn_err(&self, source: std::io::Error) -> Error {
        Error::Spawn { path: self.path.display().to_string(), source }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    summary: Summary,
    metrics: Metrics,
    #[serde(default)]
    status_code_distribution: BTreeMap<String, u64>,
    #[serde(default)]
    error_distribution: BTreeMap<String, u64>,
}

// oha writes null for figures it has no sample for (no request succeeded).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    requests_per_sec: Option<f64>,
}

#[derive(Deserialize)]
struct Metrics {
    latency_ms: LatencyMs,
}

#[derive(Deserialize)]
struct LatencyMs {
    p50: Option<f64>,
    p99: Option<f64>,
}

/// Reads oha's `--output-format json` report.
pub fn parse(json: &[u8]) -> Result<Stats, serde_json::Error> {
    let r: Report = serde_json::from_slice(json)?;
    let requests = r.status_code_distribution.values().sum::<u64>() + r.error_distribution.values().sum::<u64>();
    Ok(Stats {
        requests,
        rps: r.summary.requests_per_sec.unwrap_or(0.0),
        p50_ms: r.metrics.latency_ms.p50.unwrap_or(f64::NAN),
        p99_ms: r.metrics.latency_ms.p99.unwrap_or(f64::NAN),
        statuses: r.status_code_distribution,
        errors: r.error_distribution,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_yields_rate_percentiles_and_failures() {
        let json = br#"{"summary": {"successRate": 1.0, "requestsPerSec": 2500.5},
            "metrics": {"latency_ms": {"min": 0.1, "mean": 0.3, "p50": 0.25, "p95": 0.5, "p99": 0.9, "max": 2.0}},
            "statusCodeDistribution": {"200": 5000, "500": 1}, "errorDistribution": {"aborted": 2}}"#;
        let stats = parse(json).unwrap();
        assert_eq!((stats.requests, stats.rps, stats.p50_ms, stats.p99_ms), (5003, 2500.5, 0.25, 0.9));
        assert_eq!(stats.not_ok(), 3);
    }

    #[test]
    fn a_run_where_nothing_succeeded_still_reads() {
        let json = br#"{"summary": {"requestsPerSec": null},
            "metrics": {"latency_ms": {"min": null, "mean": null, "p50": null, "p95": null, "p99": null, "max": null}},
            "statusCodeDistribution": {}, "errorDistribution": {"connection closed": 16}}"#;
        let stats = parse(json).unwrap();
        assert_eq!((stats.requests, stats.ok(), stats.not_ok()), (16, 0, 16));
        assert!(stats.p99_ms.is_nan());
    }

    #[test]
    fn the_command_line_matches_the_transport() {
        let oha = Oha { path: "oha".into() };
        let body = PathBuf::from("/b.json");
        let load = Load {
            url: "https://127.0.0.1:1/mutate".into(),
            body: &body,
            concurrency: 16,
            amount: Amount::Seconds(1.5),
            protocol: Protocol::Http2Tls,
        };
        let line = oha.command_line(&load);
        assert!(line.contains("-c 16 -z 1500ms -w --http2 --insecure https://"), "{line}");
        let h1 = Load { protocol: Protocol::Http1, amount: Amount::Requests(20), ..load };
        assert!(!oha.command_line(&h1).contains("--insecure"));
        assert!(oha.command_line(&h1).contains("-n 20"));
    }
}
