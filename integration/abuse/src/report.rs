//! What each attack measured and which assertions failed: printed as a table, written as JSON.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

/// The result of one attack.
#[derive(Debug, Serialize)]
pub struct Outcome {
    /// Attack name.
    pub name: &'static str,
    /// Whether every assertion held.
    pub passed: bool,
    /// Wall time of the attack, stork's start and stop included.
    pub seconds: f64,
    /// Figures in the order they were recorded (a JSON object).
    #[serde(serialize_with = "in_order")]
    pub figures: Vec<(String, Value)>,
    /// Failed assertions, each saying what was seen.
    pub failures: Vec<String>,
    /// stork exited during the attack (later attacks are not run, unless asked).
    pub stork_died: bool,
}

impl Outcome {
    /// An outcome with nothing recorded yet.
    pub fn new(name: &'static str) -> Self {
        Self { name, passed: true, seconds: 0.0, figures: vec![], failures: vec![], stork_died: false }
    }

    /// Records a figure.
    pub fn figure(&mut self, name: impl Into<String>, value: impl Into<Value>) {
        self.figures.push((name.into(), value.into()));
    }

    /// Records a failed assertion.
    pub fn fail(&mut self, what: impl Into<String>) {
        self.passed = false;
        self.failures.push(what.into());
    }

    /// Asserts `ok`; the message is only built when it fails.
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.fail(what());
        }
    }

    /// Sets the wall time.
    pub fn took(&mut self, elapsed: Duration) {
        self.seconds = (elapsed.as_secs_f64() * 10.0).round() / 10.0;
    }

    /// The attack's block of the table: a status line, one line per figure, then the failures.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let status = if self.passed { "PASS" } else { "FAIL" };
        let _ = writeln!(out, "{status}  {}  ({:.1} s)", self.name, self.seconds);
        let width = self.figures.iter().map(|(name, _)| name.chars().count()).max().unwrap_or(0);
        for (name, value) in &self.figures {
            let _ = writeln!(out, "      {name:<width$}  {}", compact(value));
        }
        for failure in &self.failures {
            let _ = writeln!(out, "   ✗  {failure}");
        }
        out
    }
}

/// Figures as a JSON object, in the order they were recorded.
fn in_order<S: serde::Serializer>(figures: &[(String, Value)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(figures.iter().map(|(k, v)| (k, v)))
}

/// A figure as one table cell: objects as `key=value` pairs, strings unquoted.
fn compact(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Object(map) => map.iter().map(|(k, v)| format!("{k}={}", compact(v))).collect::<Vec<_>>().join("  "),
        other => other.to_string(),
    }
}

/// The whole run, as written to `results.json`.
#[derive(Debug, Serialize)]
pub struct Run<'a> {
    /// CI-sized run.
    pub smoke: bool,
    /// The stork binary attacked.
    pub stork: String,
    /// The stork container's memory limit from the manifests, in bytes.
    pub memory_limit_bytes: u64,
    /// Every attack, in order.
    pub attacks: &'a [Outcome],
}

impl Run<'_> {
    /// Writes the results as pretty JSON, creating the directory.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// The closing lines: how many attacks passed, where the figures are, every failure.
    pub fn summary(&self, results: &Path) -> String {
        let passed = self.attacks.iter().filter(|o| o.passed).count();
        let mut out =
            format!("\n{passed} of {} attacks passed; figures in {}\n", self.attacks.len(), results.display());
        for o in self.attacks {
            for f in &o.failures {
                let _ = writeln!(out, "FAILED {}: {f}", o.name);
            }
        }
        out
    }
}

/// Mebibytes with one decimal, for figures.
pub fn mib(bytes: u64) -> f64 {
    (bytes as f64 / f64::from(1 << 20) * 10.0).round() / 10.0
}

/// Milliseconds with one decimal, for figures.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// A size for messages: bytes, KiB, MiB or GiB.
pub fn size(bytes: u64) -> String {
    match bytes {
        b if b < 1 << 10 => format!("{b} B"),
        b if b < 1 << 20 => format!("{:.1} KiB", b as f64 / 1024.0),
        b if b < 1 << 30 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b => format!("{:.2} GiB", b as f64 / f64::from(1 << 30)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_check_marks_the_outcome_and_the_table_lists_figures_then_failures() {
        let mut o = Outcome::new("demo");
        o.figure("webhook_p99_ms", 12.5);
        o.figure("statuses", serde_json::json!({"200": 3, "503": 1}));
        o.check(true, || unreachable!());
        o.check(false, || "webhook p99 412 ms > 100 ms".into());
        let table = o.table();
        assert!(!o.passed);
        assert!(table.starts_with("FAIL  demo"), "{table}");
        assert!(table.contains("statuses        200=3  503=1"), "{table}");
        assert!(table.ends_with("   ✗  webhook p99 412 ms > 100 ms\n"), "{table}");
    }

    #[test]
    fn sizes_read_in_the_largest_fitting_unit() {
        assert_eq!([size(512), size(2048), size(3 << 20), size(3 << 30)], ["512 B", "2.0 KiB", "3.0 MiB", "3.00 GiB"]);
    }
}
