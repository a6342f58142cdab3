//! The goals, judged against results.

use crate::{
    fixtures::Mode,
    oha::Protocol,
    plan::LOAD_CONCURRENCY,
    results::{E2eResults, Results},
};

/// Bytes per MB (decimal, the stricter reading of "150 MB").
pub const MB: f64 = 1_000_000.0;

/// One goal's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Stable id (headings in the Misses section are keyed by it).
    pub id: String,
    /// The goal as stated.
    pub goal: String,
    /// What was measured, in words.
    pub measured: String,
    /// `None` when the figure was not measured in this run.
    pub met: Option<bool>,
}

impl Verdict {
    /// Table cell.
    pub fn status(&self) -> &'static str {
        match self.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        }
    }
}

fn verdict(id: &str, goal: &str, measured: Option<(String, bool)>) -> Verdict {
    let (measured, met) = match measured {
        Some((m, ok)) => (m, Some(ok)),
        None => ("—".into(), None),
    };
    Verdict { id: id.into(), goal: goal.into(), measured, met }
}

/// Worst filter+prioritize p99 (median over runs) over every point of a size, mode and transport.
fn extender(results: &Results, nodes: usize, mode: Mode, protocol: Protocol, limit_ms: f64) -> Option<(String, bool)> {
    let points =
        results.extender.points.iter().filter(|p| p.nodes == nodes && p.mode == mode && p.protocol == protocol);
    let worst = points.max_by(|a, b| a.pair_p99_ms().total_cmp(&b.pair_p99_ms()))?;
    let text = format!(
        "{:.3} ms (worst of the pod sizes: {} vol; worst single run {:.3} ms)",
        worst.pair_p99_ms(),
        worst.volumes,
        worst.pair_p99_worst_ms()
    );
    Some((text, worst.pair_p99_ms() < limit_ms))
}

fn webhook(results: &Results, protocol: Protocol) -> Option<(String, bool)> {
    let p = results.webhook.points.iter().find(|p| p.protocol == protocol && p.concurrency == LOAD_CONCURRENCY)?;
    let text = format!("{:.0} reviews/s, p99 {:.3} ms", p.rps, p.latency.p99_ms);
    Some((text, p.rps >= 10_000.0 && p.latency.p99_ms < 2.0))
}

/// Every goal, in the order.
pub fn judge(results: &Results, e2e: Option<&E2eResults>) -> Vec<Verdict> {
    let memory = results.memory.as_ref().map(|m| {
        let peak = m.peak_kib as f64 * 1024.0 / MB;
        (format!("{peak:.1} MB peak ({} nodes, {} PVCs + {} PVs)", m.nodes, m.pvcs, m.pvcs), peak < 150.0)
    });
    let claims = results.claims.as_ref().map(|c| {
        let text =
            format!("p99 {:.3} ms (p50 {:.3} ms, max {:.3} ms, {} updates)", c.p99_ms, c.p50_ms, c.max_ms, c.samples);
        (text, c.p99_ms < 5.0)
    });
    let e2e = e2e.map(|e| (format!("{:.2} ({} nodes, {} pods)", e.ratio, e.nodes, e.pods), e.ratio >= 0.8));
    let mut verdicts = vec![];
    for (id, nodes, mode, limit, goal) in EXTENDER_GOALS {
        for (suffix, protocol) in [("http1", Protocol::Http1), ("h2", Protocol::Http2Tls)] {
            verdicts.push(verdict(
                &format!("{id}-{suffix}"),
                &format!("{goal} ({})", protocol.label()),
                extender(results, nodes, mode, protocol, limit),
            ));
        }
    }
    verdicts.extend([
        verdict(
            "webhook-http1",
            "webhook ≥ 10,000 reviews/s at concurrency 16 with p99 < 2 ms (HTTP/1.1 + TLS)",
            webhook(results, Protocol::Http1Tls),
        ),
        verdict(
            "webhook-h2",
            "webhook ≥ 10,000 reviews/s at concurrency 16 with p99 < 2 ms (HTTP/2 + TLS)",
            webhook(results, Protocol::Http2Tls),
        ),
        verdict("e2e-ratio", "end-to-end scheduling with the extender ≥ 80 % of the throughput without it", e2e),
        verdict("memory", "peak RSS < 150 MB at 5,000 nodes and 50,000 PVCs", memory),
        verdict("claims-rebuild", "claim index updated after one PVC change at 50,000 PVCs: p99 < 5 ms", claims),
    ]);
    verdicts
}

/// Extender goals: id, nodes, mode, p99 limit (ms), wording.
const EXTENDER_GOALS: [(&str, usize, Mode, f64, &str); 3] = [
    ("extender-names-5000", 5_000, Mode::Names, 1.0, "filter+prioritize p99 < 1 ms at 5,000 nodes, names mode"),
    ("extender-nodes-500", 500, Mode::Nodes, 5.0, "filter+prioritize p99 < 5 ms at 500 nodes, full-node mode"),
    ("extender-nodes-5000", 5_000, Mode::Nodes, 30.0, "filter+prioritize p99 < 30 ms at 5,000 nodes, full-node mode"),
];

/// Whether a point's size and mode has a goal, and its limit in ms.
pub fn extender_limit_ms(nodes: usize, mode: Mode) -> Option<f64> {
    EXTENDER_GOALS.iter().find(|g| g.1 == nodes && g.2 == mode).map(|g| g.3)
}
