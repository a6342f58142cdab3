//! One prometheus-client registry; each surface owns a metrics struct registered into it.

use std::{
    sync::{Arc, OnceLock},
    time::Instant,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, text::encode},
    metrics::{
        MetricType,
        counter::Counter,
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// The process-wide registry plus every component's metrics.
pub struct Metrics {
    registry: Registry,
    /// Scheduler extender metrics.
    pub extender: RequestMetrics,
    /// Hyperconvergence gauges, per pod.
    pub placement: PlacementMetrics,
    /// Admission webhook metrics.
    pub webhook: RequestMetrics,
    /// Health monitor and leader election.
    pub monitor: MonitorMetrics,
    /// Driver configuration files refused (`stork_driver_config_errors_total`, by file).
    pub driver_config_errors: Family<FileLabels, Counter>,
    /// Failed calls to the storage system's API (`stork_driver_api_errors_total{call,kind}`).
    pub driver_api_errors: Family<ApiErrorLabels, Counter>,
    /// Claims in the published claim index (`stork_claim_index_claims`).
    pub claim_index_claims: Gauge,
    /// Claim-index builds by kind (`stork_claim_index_builds_total{kind}`: `whole`, `incremental`).
    pub claim_index_builds: Family<BuildLabels, Counter>,
    census: Arc<OnceLock<Census>>,
}

/// Label set naming a kind of index build.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// `whole` or `incremental`.
    pub kind: &'static str,
}

/// Counts the driver's nodes by status (`Online`, `Offline` …), read at scrape time.
pub type Census = Box<dyn Fn() -> Vec<(&'static str, i64)> + Send + Sync>;

/// `stork_driver_nodes{status}`: the driver's nodes as stork sees them right now, so an
/// operator (or a test) can tell when stork has taken in a driver state change.
struct DriverNodes(Arc<OnceLock<Census>>);

impl std::fmt::Debug for DriverNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DriverNodes")
    }
}

/// Label set naming a driver node status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

impl Collector for DriverNodes {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(census) = self.0.get() else { return Ok(()) };
        let help = "Storage driver nodes as stork currently sees them, by status";
        let mut family = encoder.encode_descriptor("stork_driver_nodes", help, None, MetricType::Gauge)?;
        for (status, count) in census() {
            ConstGauge::new(count).encode(family.encode_family(&StatusLabels { status })?)?;
        }
        Ok(())
    }
}

/// Label set naming a driver configuration file.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FileLabels {
    /// `topology` or `state`.
    pub file: &'static str,
}

/// Label set of a failed storage-API call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiErrorLabels {
    /// The call (`nodes`, `volumes`, `snapshot_create`, …).
    pub call: &'static str,
    /// What went wrong (`unreachable`, `auth`, `setup`, `not_found`, `invalid`, `failed`).
    pub kind: &'static str,
}

impl Metrics {
    /// Creates and registers all metrics.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let extender = RequestMetrics::register(&mut registry, "stork_extender", "Extender");
        let placement = PlacementMetrics::register(&mut registry);
        let webhook = RequestMetrics::register(&mut registry, "stork_webhook", "Admission webhook");
        let monitor = MonitorMetrics::register(&mut registry);
        let driver_config_errors = Family::<FileLabels, Counter>::default();
        registry.register(
            "stork_driver_config_errors",
            "Driver configuration files refused (unreadable, empty, invalid or half-written); the last good content keeps serving",
            driver_config_errors.clone(),
        );
        let driver_api_errors = Family::<ApiErrorLabels, Counter>::default();
        registry.register(
            "stork_driver_api_errors",
            "Failed calls to the storage system's API, by call and kind; while nodes cannot be read they are unknown and the extender keeps every node",
            driver_api_errors.clone(),
        );
        let claim_index_claims = Gauge::default();
        registry.register(
            "stork_claim_index_claims",
            "Claims resolved in the published claim index",
            claim_index_claims.clone(),
        );
        let claim_index_builds = Family::<BuildLabels, Counter>::default();
        registry.register(
            "stork_claim_index_builds",
            "Claim index builds: whole (relist, class or driver-volume change) or incremental (changed claims only)",
            claim_index_builds.clone(),
        );
        let census = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(DriverNodes(census.clone())));
        Arc::new(Self {
            registry,
            extender,
            placement,
            webhook,
            monitor,
            driver_config_errors,
            driver_api_errors,
            claim_index_claims,
            claim_index_builds,
            census,
        })
    }

    /// Sets how `stork_driver_nodes` counts (once the driver exists; later calls are ignored).
    pub fn set_census(&self, census: Census) {
        let _ = self.census.set(census);
    }

    /// Text exposition format for `/metrics`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Label set with the endpoint's verb.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    /// `filter`, `prioritize`, `mutate`, `validate`.
    pub verb: &'static str,
}

/// Label set for request failures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The verb.
    pub verb: &'static str,
    /// The error variant.
    pub error: &'static str,
}

/// Latency and failures of one HTTP surface (`<prefix>_request_duration_seconds`, `<prefix>_request_failures`).
pub struct RequestMetrics {
    latency: Family<VerbLabels, Histogram>,
    failures: Family<ErrorLabels, Counter>,
}

impl RequestMetrics {
    fn register(r: &mut Registry, prefix: &str, what: &str) -> Self {
        let latency = Family::<VerbLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_025, 2.0, 18))
        });
        let failures = Family::<ErrorLabels, Counter>::default();
        let sub = r.sub_registry_with_prefix(prefix);
        sub.register(
            "request_duration_seconds",
            format!("{what} request latency by verb, body read to response"),
            latency.clone(),
        );
        sub.register(
            "request_failures",
            format!("{what} requests that could not be processed, by error"),
            failures.clone(),
        );
        Self { latency, failures }
    }

    /// Starts timing a request; the duration is observed when the guard drops.
    pub fn time(&self, verb: &'static str) -> Timer {
        Timer { hist: self.latency.get_or_create(&VerbLabels { verb }).clone(), start: Instant::now() }
    }

    /// Counts a failed request.
    pub fn failed(&self, verb: &'static str, error: &'static str) {
        self.failures.get_or_create(&ErrorLabels { verb, error }).inc();
    }
}

/// Observes elapsed time into a histogram on drop.
pub struct Timer {
    hist: Histogram,
    start: Instant,
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.hist.observe(self.start.elapsed().as_secs_f64());
    }
}

/// Labels of the per-pod placement gauges, as in Stork.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PodLabels {
    /// Pod name.
    pub pod: String,
    /// Pod namespace.
    pub namespace: String,
}

/// Stork's hyperconvergence gauges: exactly one of the three is 1 for each running driver pod.
pub struct PlacementMetrics {
    /// The pod runs on the node holding most of its volumes' replicas.
    pub hyperconverged: Family<PodLabels, Gauge>,
    /// The pod runs on a node with some replicas, not the most.
    pub semi_hyperconverged: Family<PodLabels, Gauge>,
    /// The pod runs on a node with no replica.
    pub non_hyperconverged: Family<PodLabels, Gauge>,
}

impl PlacementMetrics {
    fn register(r: &mut Registry) -> Self {
        let m = Self {
            hyperconverged: Family::default(),
            semi_hyperconverged: Family::default(),
            non_hyperconverged: Family::default(),
        };
        // Stork's names end in `_total` although they are gauges; keep them so dashboards work.
        r.register(
            "stork_hyperconverged_pods_total",
            "Pods on the node with the most replicas of their volumes",
            m.hyperconverged.clone(),
        );
        r.register(
            "stork_semi_hyperconverged_pods_total",
            "Pods on a node with some replicas of their volumes",
            m.semi_hyperconverged.clone(),
        );
        r.register(
            "stork_non_hyperconverged_pods_total",
            "Pods on a node with no replica of their volumes",
            m.non_hyperconverged.clone(),
        );
        m
    }
}

/// Label set of a monitor action or skip.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `deleted`, `dry_run`, `delete_failed`, `gone` (actions) or the skip reason.
    pub reason: &'static str,
}

/// Health monitor metrics.
pub struct MonitorMetrics {
    /// Pods really deleted (`stork_pods_rescheduled_total`, as in Stork).
    pub rescheduled: Counter,
    /// Every decision on a pod, by outcome (`stork_monitor_actions_total`).
    pub actions: Family<ReasonLabels, Counter>,
    /// Actions not taken, by reason (`stork_monitor_skipped_total`).
    pub skipped: Family<ReasonLabels, Counter>,
    /// Passes over the pods while leading (`stork_monitor_passes_total`): that the monitor is
    /// running, and how many chances it had to act.
    pub passes: Counter,
    /// 1 while this replica holds the leader lease (`stork_leader`).
    pub leader: Gauge,
    /// Kubernetes nodes whose driver the monitor saw down and is re-checking or draining
    /// (`stork_monitor_nodes_tracked`); 0 when not leading.
    pub tracked: Gauge,
}

impl MonitorMetrics {
    fn register(r: &mut Registry) -> Self {
        let m = Self {
            rescheduled: Counter::default(),
            actions: Family::default(),
            skipped: Family::default(),
            passes: Counter::default(),
            leader: Gauge::default(),
            tracked: Gauge::default(),
        };
        // prometheus-client appends `_total` to counters.
        r.register("stork_pods_rescheduled", "Pods deleted by the health monitor", m.rescheduled.clone());
        r.register("stork_monitor_actions", "Health monitor decisions on pods, by outcome", m.actions.clone());
        r.register("stork_monitor_skipped", "Health monitor actions not taken, by reason", m.skipped.clone());
        r.register("stork_monitor_passes", "Health monitor passes over the pods while leading", m.passes.clone());
        r.register("stork_leader", "1 while this replica is the leader", m.leader.clone());
        r.register(
            "stork_monitor_nodes_tracked",
            "Nodes whose storage driver the health monitor saw down, being re-checked or drained",
            m.tracked.clone(),
        );
        m
    }
}
