//! The in-process micro-benchmarks (`cargo bench --bench extender`, criterion): their medians,
//! read from criterion's own estimates under target/criterion, so BENCHMARKS.md shows what the
//! pure decision functions cost next to what the same work costs over HTTP.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// One criterion benchmark's estimate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MicroBench {
    /// Criterion's full id, e.g. `prioritize/names/5000`.
    pub id: String,
    /// Median time per iteration, ns.
    pub median_ns: f64,
    /// The 95 % confidence interval of the median, ns.
    pub ci_ns: (f64, f64),
}

/// Percentiles of single claim-index updates, written by the claim benchmark next to criterion's
/// estimates (`claims-percentiles.json`): criterion itself reports means and medians only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// The criterion id of the same work.
    pub id: String,
    /// Updates timed.
    pub samples: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
}

/// The claim benchmark's percentiles, if that benchmark ran.
pub fn claim_percentiles(dir: &Path) -> Option<Percentiles> {
    let text = std::fs::read(dir.join("claims-percentiles.json")).ok()?;
    serde_json::from_slice(&text).inspect_err(|e| tracing::warn!(error = %e, "unreadable claims-percentiles.json")).ok()
}

#[derive(Deserialize)]
struct Estimates {
    median: Estimate,
}

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
    confidence_interval: Interval,
}

#[derive(Deserialize)]
struct Interval {
    lower_bound: f64,
    upper_bound: f64,
}

#[derive(Deserialize)]
struct Benchmark {
    full_id: String,
}

/// Every benchmark under `dir` (criterion's output directory), sorted by id. A benchmark whose
/// files do not parse is skipped with a warning: the rest of the suite still publishes.
pub fn collect(dir: &Path) -> Vec<MicroBench> {
    let mut out = Vec::new();
    for entry in walkdir(dir) {
        let new = entry.join("new");
        let (Ok(est), Ok(bench)) =
            (std::fs::read(new.join("estimates.json")), std::fs::read(new.join("benchmark.json")))
        else {
            continue;
        };
        match (serde_json::from_slice::<Estimates>(&est), serde_json::from_slice::<Benchmark>(&bench)) {
            (Ok(e), Ok(b)) => out.push(MicroBench {
                id: b.full_id,
                median_ns: e.median.point_estimate,
                ci_ns: (e.median.confidence_interval.lower_bound, e.median.confidence_interval.upper_bound),
            }),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(dir = %new.display(), error = %e, "unreadable criterion estimate")
            }
        }
    }
    out.sort_by(|a, b| sort_key(&a.id).cmp(&sort_key(&b.id)));
    out
}

/// Orders ids part by part, numeric parts as numbers: `…/500` before `…/1000`.
pub fn sort_key(id: &str) -> Vec<(u64, &str)> {
    id.split('/').map(|part| (part.parse().unwrap_or(0), part)).collect()
}

/// Directories under `dir` holding a `new/` estimate, depth first.
fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            if !path.is_dir() {
                continue;
            }
            match path.file_name().and_then(|n| n.to_str()) {
                // criterion's report and previous-run copies are not estimates of this run.
                Some("report" | "base" | "change") => {}
                Some("new") => found.push(d.clone()),
                _ => stack.push(path),
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_are_read_from_each_benchmarks_new_directory_and_sorted_with_sizes_as_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let cases =
            [("prioritize/names/5000", 250_000.0), ("prioritize/names/500", 25_000.0), ("filter/names/100", 9_000.0)];
        for (id, median) in cases {
            let new = dir.path().join(id.replace('/', "_")).join("new");
            std::fs::create_dir_all(&new).unwrap();
            let est = serde_json::json!({"median": {"point_estimate": median,
                "confidence_interval": {"lower_bound": median - 1.0, "upper_bound": median + 1.0}}});
            std::fs::write(new.join("estimates.json"), est.to_string()).unwrap();
            std::fs::write(new.join("benchmark.json"), serde_json::json!({"full_id": id}).to_string()).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("report")).unwrap();
        let got = collect(dir.path());
        let ids: Vec<&str> = got.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["filter/names/100", "prioritize/names/500", "prioritize/names/5000"]);
        assert_eq!(got[2].ci_ns, (249_999.0, 250_001.0));
    }
}
