//! How much an extender call may cost: body bounds, how many nodes a request may name, a
//! deadline below the scheduler's `httpTimeout`, and a small pool of threads the decisions run
//! on, apart from the HTTP workers that also serve the admission webhooks.
//!
//! A prioritize request naming 100k nodes and a pod with 10k volumes took 9.6 s of CPU on the
//! HTTP workers; admission reviews queued behind it past the webhook's `timeoutSeconds`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::body::{BodyLimits, DEFAULT_BODY_TIMEOUT};

/// Default largest extender body: a full Node list of a 5,000-node cluster is ~20 MB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Default budget of extender body bytes held at once (all extender requests together): room
/// for one body of the largest size plus ordinary calls beside it, which would otherwise wait
/// behind it.
pub const DEFAULT_BODY_BUDGET_BYTES: usize = 96 * 1024 * 1024;
/// Default deadline of one call: under the 5 s `httpTimeout` of manifests/scheduler-config.yaml.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default ceiling on the nodes one request names (Kubernetes is tested to 5,000 nodes).
pub const DEFAULT_MAX_NODES: usize = 50_000;

/// The bounds of the extender endpoints.
#[derive(Debug, Clone)]
pub struct ExtenderLimits {
    /// Body size, time and memory budget.
    pub body: BodyLimits,
    /// Deadline of one call, from the end of its body to its answer.
    pub timeout: Duration,
    /// Most nodes one request may name.
    pub max_nodes: usize,
    workers: Arc<Semaphore>,
}

impl ExtenderLimits {
    /// Limits with `threads` decisions running at once (at least one).
    pub fn new(body: BodyLimits, timeout: Duration, max_nodes: usize, threads: usize) -> Self {
        Self { body, timeout, max_nodes, workers: Arc::new(Semaphore::new(threads.max(1))) }
    }

    /// A turn on the decision threads, once one is free and before `deadline`.
    pub async fn worker(&self, deadline: Deadline) -> Option<OwnedSemaphorePermit> {
        let at = deadline.at.unwrap_or_else(|| Instant::now() + self.timeout);
        tokio::time::timeout_at(at.into(), self.workers.clone().acquire_owned()).await.ok()?.ok()
    }
}

impl Default for ExtenderLimits {
    /// The flag defaults, with one decision thread per two cores.
    fn default() -> Self {
        let body = BodyLimits::new(DEFAULT_MAX_BODY_BYTES, DEFAULT_BODY_BUDGET_BYTES, DEFAULT_BODY_TIMEOUT);
        Self::new(body, DEFAULT_TIMEOUT, DEFAULT_MAX_NODES, default_threads())
    }
}

/// Decision threads by default: half the cores, at least one, so the HTTP workers keep a core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// When a decision must stop; checked between nodes and volumes, so an expensive request ends
/// near its deadline instead of burning CPU for an answer nobody waits for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Deadline {
    at: Option<Instant>,
}

impl Deadline {
    /// No deadline (tests, benchmarks, the demo).
    pub const NONE: Self = Self { at: None };

    /// `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        Self { at: Some(Instant::now() + timeout) }
    }

    /// Whether the deadline has passed.
    pub fn passed(&self) -> bool {
        self.at.is_some_and(|at| Instant::now() >= at)
    }

    /// [`Self::passed`] every 256th step of a loop: reading the clock per node would cost more
    /// than some decisions.
    pub fn passed_at(&self, step: usize) -> bool {
        step % 256 == 255 && self.passed()
    }
}

/// A decision stopped at its [`Deadline`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stork could not decide within its deadline")]
pub struct Expired;
