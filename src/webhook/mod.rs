//! Admission webhooks: `/mutate` routes driver-backed pods to the `stork` scheduler,
//! `/validate` rejects snapshot-restore PVCs that cannot succeed.
//!
//! `review.rs` is the envelope (AdmissionReview v1 in and out); `mutate_pod.rs` and
//! `crate::model::restore_claim` are pure decisions over cached state.
//!
//! The envelope is not `kube::core::admission`'s typed review: that decodes the whole object
//! (every container of a Pod) before anything is decided, and a review it refuses leaves nothing
//! to answer with, while `decode.rs` and `salvage.rs` answer every body with its uid and version.

pub mod decode;
pub mod mutate_pod;
pub mod review;
pub mod salvage;
mod validate_refs;

use std::sync::Arc;

use crate::{cluster::ClusterView, driver::Driver, metrics::Metrics};

/// Default largest AdmissionReview (the API server's own request limit is 3 MiB; a review
/// carries the object, and the old object on updates).
pub const DEFAULT_MAX_REVIEW_BYTES: usize = 16 * 1024 * 1024;
/// Default budget of review body bytes held at once: kept apart from the extender's, so a flood
/// of extender bodies never makes a review wait.
pub const DEFAULT_REVIEW_BUDGET_BYTES: usize = 32 * 1024 * 1024;
/// Default pod annotation that opts a pod out of mutation.
pub const DEFAULT_SKIP_ANNOTATION: &str = "stork.libopenstorage.org/disable-admission-controller";

/// Webhook settings from the command line.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Pod annotation that, when true, leaves the pod alone.
    pub skip_annotation: String,
    /// Namespaces never mutated.
    pub excluded_namespaces: Vec<String>,
    /// How long a pod review waits for a claim missing from the cache to arrive (0: not at all).
    pub claim_wait: std::time::Duration,
    /// Body size, time and memory budget.
    pub body: crate::body::BodyLimits,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            skip_annotation: DEFAULT_SKIP_ANNOTATION.into(),
            excluded_namespaces: vec!["kube-system".into()],
            claim_wait: std::time::Duration::ZERO,
            body: crate::body::BodyLimits::new(
                DEFAULT_MAX_REVIEW_BYTES,
                DEFAULT_REVIEW_BUDGET_BYTES,
                crate::body::DEFAULT_BODY_TIMEOUT,
            ),
        }
    }
}

/// Shared state of the webhook endpoints.
#[derive(Clone)]
pub struct WebhookState {
    /// Cached cluster objects.
    pub cluster: ClusterView,
    /// The storage driver.
    pub driver: Arc<dyn Driver>,
    /// Settings.
    pub config: Arc<WebhookConfig>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// Why a review could not be decided. Every variant still yields an allowed AdmissionReview
/// (see [`review`]): the webhook never answers 5xx and never blocks a request on its own failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body could not be read or is too large.
    #[error(transparent)]
    Body(#[from] crate::body::BodyError),
    /// The body is not an AdmissionReview.
    #[error("failed to decode AdmissionReview: {0}")]
    Decode(#[source] serde_json::Error),
    /// The review has no `request`.
    #[error("AdmissionReview has no request")]
    NoRequest,
    /// The connection has as many reviews in flight as one may (HTTP/2 streams).
    #[error("too many requests in flight on this connection")]
    ConnectionBusy,
    /// The object in the request is not what its kind says.
    #[error("failed to decode the request's object: {0}")]
    Object(#[source] serde_json::Error),
}

impl Error {
    /// Label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Body(_) => "body",
            Self::Decode(_) => "decode",
            Self::NoRequest => "no_request",
            Self::Object(_) => "object",
            Self::ConnectionBusy => "connection_busy",
        }
    }
}
