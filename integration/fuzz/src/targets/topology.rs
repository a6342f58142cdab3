//! Mock driver topologies (`Topology::from_yaml`, as `--mock-topology` loads them), from mutated
//! YAML and JSON and from arbitrary bytes read as UTF-8 lossily.
//!
//! Properties, besides never panicking: a topology that loads makes a driver, and that driver
//! answers the seed scenario's filter and prioritize requests (in both node modes) without error.

use std::sync::Arc;

use stork::{
    driver::mock::{MockDriver, Topology},
    extender::{
        http::{ExtenderState, filter_body, prioritize_body},
        limits::Deadline,
    },
};

use super::{Check, Fixture, Seen, loaded};
use crate::corpus::repo_root;

/// The `topology` target's properties.
pub struct TopologyFile {
    fixture: Arc<Fixture>,
    requests: Vec<Vec<u8>>,
}

/// The seed scenario's requests decisions are checked with (names mode, full-node mode).
pub fn seed_requests() -> anyhow::Result<Vec<Vec<u8>>> {
    let root = repo_root();
    ["examples/seed/filter-args.json", "tests/data/filter-seed-nodes.json"]
        .iter()
        .map(|p| std::fs::read(root.join(p)).map_err(|e| anyhow::anyhow!("reading {p}: {e}")))
        .collect()
}

impl TopologyFile {
    /// The properties, checked against `fixture`'s seed cluster.
    pub fn new(fixture: Arc<Fixture>) -> anyhow::Result<Self> {
        Ok(Self { fixture, requests: seed_requests()? })
    }
}

impl Check for TopologyFile {
    fn run(&self, input: &[u8], seen: &mut Seen) -> Result<(), String> {
        let text = String::from_utf8_lossy(input);
        let Some(topology) = loaded(Topology::from_yaml(&text), seen) else { return Ok(()) };
        seen.class(match (topology.nodes.is_empty(), topology.volumes.is_empty()) {
            (true, _) => "ok, no nodes",
            (false, true) => "ok, nodes only",
            (false, false) => "ok, nodes and volumes",
        });
        let (_, seed) = self.fixture.seed_cluster();
        let state = ExtenderState { driver: Arc::new(MockDriver::from_topology(topology)), ..seed.clone() };
        decisions_answer(&state, &self.requests, input.len())
    }
}

/// Filter and prioritize of one of `requests` (picked by `spread`) must both answer.
pub fn decisions_answer(state: &ExtenderState, requests: &[Vec<u8>], spread: usize) -> Result<(), String> {
    let request = &requests[spread % requests.len()];
    if let Err(e) = filter_body(state, request, Deadline::NONE) {
        return Err(format!("a loadable file made the seed filter request fail: {e}"));
    }
    if let Err(e) = prioritize_body(state, request, Deadline::NONE) {
        return Err(format!("a loadable file made the seed prioritize request fail: {e}"));
    }
    Ok(())
}
