//! What a run measures and for how long: the full suite (about ten minutes on two cores) and
//! the CI smoke variant (seconds).

use crate::{
    fixtures::Mode,
    oha::{Amount, Protocol},
};

/// Concurrency of the throughput runs (extender and the webhook's headline point).
pub const LOAD_CONCURRENCY: usize = 16;
/// Claims of every synthetic cluster's pods (the largest pod uses all of them).
pub const CLUSTER_VOLUMES: usize = 8;

/// The whole run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// One stork per cluster size.
    pub tiers: Vec<Tier>,
    /// Webhook runs, on the stork of the tier that has `webhook: true`.
    pub webhook: WebhookPlan,
    /// The memory test.
    pub memory: Option<MemoryPlan>,
}

/// One cluster size.
#[derive(Debug, Clone)]
pub struct Tier {
    /// Nodes.
    pub nodes: usize,
    /// Groups of extender points.
    pub groups: Vec<Group>,
    /// Run the webhook against this stork.
    pub webhook: bool,
}

/// Extender points sharing a body shape and run lengths.
#[derive(Debug, Clone)]
pub struct Group {
    /// Body shape.
    pub mode: Mode,
    /// Claims per pod.
    pub volumes: Vec<usize>,
    /// Transports.
    pub protocols: Vec<Protocol>,
    /// Length of each latency run (concurrency 1).
    pub latency: Amount,
    /// Latency runs per point (median and worst are reported).
    pub latency_runs: usize,
    /// Length of the throughput run (concurrency 16).
    pub load: Amount,
}

/// Webhook runs.
#[derive(Debug, Clone)]
pub struct WebhookPlan {
    /// Transports (TLS only: the apiserver always calls webhooks over TLS).
    pub protocols: Vec<Protocol>,
    /// Connections.
    pub concurrencies: Vec<usize>,
    /// Length of each run.
    pub amount: Amount,
    /// Runs per point.
    pub runs: usize,
}

/// Memory test size.
#[derive(Debug, Clone)]
pub struct MemoryPlan {
    /// Nodes.
    pub nodes: usize,
    /// Bound PVC/PV pairs.
    pub volumes: usize,
    /// Volumes also listed in the mock topology.
    pub topology_volumes: usize,
}

const BOTH: [Protocol; 2] = [Protocol::Http1, Protocol::Http2Tls];

fn group(mode: Mode, latency: Amount, latency_runs: usize, load: Amount) -> Group {
    Group { mode, volumes: vec![1, 4, 8], protocols: BOTH.into(), latency, latency_runs, load }
}

impl Plan {
    /// Keeps only the named sections (`extender`, `webhook`, `memory`).
    pub fn only(mut self, sections: &[String]) -> Self {
        let has = |s: &str| sections.iter().any(|x| x == s);
        if !has("extender") {
            self.tiers.iter_mut().for_each(|t| t.groups.clear());
        }
        if !has("webhook") {
            self.tiers.iter_mut().for_each(|t| t.webhook = false);
        }
        self.tiers.retain(|t| !t.groups.is_empty() || t.webhook);
        if !has("memory") {
            self.memory = None;
        }
        self
    }

    /// The published suite. Every run is timed (`-z`, requests in flight at the deadline are
    /// awaited), so the suite takes about as long for a slow binary as for a fast one; a slow
    /// point has fewer samples, and its p99 is then close to its maximum.
    pub fn full() -> Self {
        let fast = |mode| group(mode, Amount::Seconds(1.0), 3, Amount::Seconds(1.5));
        let both = |nodes, webhook| Tier { nodes, groups: vec![fast(Mode::Names), fast(Mode::Nodes)], webhook };
        Self {
            tiers: vec![
                both(100, false),
                Tier { nodes: 500, groups: vec![fast(Mode::Nodes)], webhook: false },
                both(1_000, true),
                Tier {
                    nodes: 5_000,
                    groups: vec![fast(Mode::Names), group(Mode::Nodes, Amount::Seconds(1.5), 3, Amount::Seconds(2.0))],
                    webhook: false,
                },
            ],
            webhook: WebhookPlan {
                protocols: vec![Protocol::Http1Tls, Protocol::Http2Tls],
                concurrencies: vec![1, LOAD_CONCURRENCY, 64],
                amount: Amount::Seconds(1.5),
                runs: 3,
            },
            // The mock topology loader's YAML budget (250,000 parser nodes) refuses 50,000
            // volumes, so the topology lists the nodes only: the caches under test are stork's
            // Kubernetes object stores, which hold every PVC and PV.
            memory: Some(MemoryPlan { nodes: 5_000, volumes: 50_000, topology_volumes: 0 }),
        }
    }

    /// CI: 100 nodes, one volume, one run of a second per point, no memory test.
    pub fn smoke() -> Self {
        let one = |mode| Group {
            mode,
            volumes: vec![1],
            protocols: BOTH.into(),
            latency: Amount::Seconds(1.0),
            latency_runs: 1,
            load: Amount::Seconds(1.0),
        };
        Self {
            tiers: vec![Tier { nodes: 100, groups: vec![one(Mode::Names), one(Mode::Nodes)], webhook: true }],
            webhook: WebhookPlan {
                protocols: vec![Protocol::Http1Tls, Protocol::Http2Tls],
                concurrencies: vec![LOAD_CONCURRENCY],
                amount: Amount::Seconds(1.0),
                runs: 1,
            },
            memory: None,
        }
    }
}
