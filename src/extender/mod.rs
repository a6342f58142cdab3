//! The scheduler extender: `/filter` and `/prioritize` for a kube-scheduler profile.
//!
//! `http.rs` is the envelope (read body, decode, snapshot, encode); `filter.rs` and
//! `prioritize.rs` are pure decisions over the cached cluster view and driver state.

pub mod encode;
pub mod explain;
pub mod filter;
pub mod http;
pub mod limits;
pub mod placement;
pub mod prioritize;
pub mod wire;

#[cfg(test)]
mod tests;

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use k8s_openapi::api::core::v1::Node;

use crate::{
    cluster::{ClusterView, node_addresses, pod::PodFacts, storage_unschedulable},
    driver::{Driver, NodeIdentity, NodeInventory},
};

/// Reason of events for pods that cannot be placed.
pub const UNRESOLVABLE_EVENT: &str = "FailedScheduling";

/// Everything a decision reads: the pod and snapshots of cluster and driver state.
pub struct Inputs<'a> {
    /// The pod being scheduled.
    pub pod: &'a PodFacts,
    /// Cached Kubernetes objects.
    pub cluster: &'a ClusterView,
    /// The storage driver (answers from its cache).
    pub driver: &'a dyn Driver,
    /// When the decision must give up.
    pub deadline: limits::Deadline,
}

impl Inputs<'_> {
    /// The driver's own CSI controller pods are placed by driver health alone.
    fn is_csi_pod(&self) -> bool {
        self.driver.is_csi_pod(&self.pod.metadata.name)
    }
}

/// A node offered by the scheduler, with the facts decisions read.
#[derive(Debug, Clone, Default)]
pub struct Candidate<'a> {
    /// `metadata.name`.
    pub name: &'a str,
    /// `status.addresses` as (type, address); empty when [`Indexed::from_cache`].
    pub addresses: Vec<(&'a str, &'a str)>,
    /// The storage operator marked the node unschedulable.
    pub storage_unschedulable: bool,
    /// The node's driver matches, found ahead of time in the inventory's node index.
    pub indexed: Option<Indexed<'a>>,
}

/// Driver matches of a candidate taken from [`NodeInventory::node_index`].
#[derive(Debug, Clone, Copy)]
pub struct Indexed<'a> {
    /// The [`NodeInventory::id`] the indices refer to.
    pub inventory: u64,
    /// [`NodeInventory::matches`] of the node, best first.
    pub matches: &'a [usize],
    /// The candidate's facts are the cached Node's (names mode), and its addresses were not copied.
    pub from_cache: bool,
}

impl<'a> Candidate<'a> {
    /// A node named by the scheduler (names mode), with facts from the cached Node if any.
    /// A node missing from the cache can still match its driver entry by name.
    pub fn from_cache(name: &'a str, node: Option<&'a Node>) -> Self {
        let Some(node) = node else {
            return Self { name, ..Self::default() };
        };
        Self {
            name,
            addresses: node_addresses(node),
            storage_unschedulable: storage_unschedulable(node),
            indexed: None,
        }
    }

    /// The identity used to find the node's driver entries.
    pub fn identity(&self) -> NodeIdentity<'_> {
        NodeIdentity { name: self.name, addresses: &self.addresses }
    }

    /// Indices of the node's driver entries in `inventory`, best first ([`NodeInventory::matches`]).
    pub fn matches<'s>(
        &'s self,
        inventory: &NodeInventory,
        cluster: &ClusterView,
        scratch: &'s mut Vec<usize>,
    ) -> &'s [usize] {
        match self.indexed {
            Some(ix) if ix.inventory == inventory.id() => ix.matches,
            // The driver replaced its inventory since the candidate was built: match again, from
            // the cached Node since the candidate carries no addresses.
            Some(ix) if ix.from_cache => {
                let node = cluster.node(self.name);
                inventory.matches(Candidate::from_cache(self.name, node.as_deref()).identity(), scratch);
                scratch
            }
            _ => {
                inventory.matches(self.identity(), scratch);
                scratch
            }
        }
    }
}

/// Errors of the extender endpoints; the HTTP status of each is decided in one place below.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body could not be read within its [`limits::ExtenderLimits`].
    #[error(transparent)]
    Body(#[from] crate::body::BodyError),
    /// The request names more nodes than `--extender-max-nodes`.
    #[error("ExtenderArgs names more than {0} nodes (--extender-max-nodes)")]
    TooManyNodes(usize),
    /// The decision did not finish (or start) before the call's deadline.
    #[error("{verb}: {}", limits::Expired)]
    Expired {
        /// `filter` or `prioritize`: the protocol answers them differently.
        verb: &'static str,
    },
    /// The connection has as many requests in flight as one may (HTTP/2 streams).
    #[error("too many requests in flight on this connection; retry")]
    ConnectionBusy,
    /// `--extender-client-ca` is set and the caller showed no certificate it signed.
    #[error("a client certificate signed by --extender-client-ca is required for the extender")]
    Unauthenticated,
    /// The body is not ExtenderArgs JSON.
    #[error("failed to decode ExtenderArgs: {0}")]
    Decode(#[source] serde_json::Error),
    /// ExtenderArgs without a Pod.
    #[error("ExtenderArgs has no Pod")]
    MissingPod,
    /// ExtenderArgs with neither Nodes nor NodeNames.
    #[error("ExtenderArgs has neither Nodes nor NodeNames")]
    MissingNodes,
    /// The response could not be encoded.
    #[error("failed to encode response: {0}")]
    Encode(#[source] serde_json::Error),
}

impl Error {
    /// Label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Body(crate::body::BodyError::TooLarge { .. }) => "body_too_large",
            Self::Body(crate::body::BodyError::Busy { .. }) => "busy",
            Self::Body(crate::body::BodyError::Timeout(_)) => "body_timeout",
            Self::Body(_) => "body",
            Self::TooManyNodes(_) => "too_many_nodes",
            Self::Expired { .. } => "deadline",
            Self::Unauthenticated => "unauthenticated",
            Self::ConnectionBusy => "connection_busy",
            Self::Decode(_) => "decode",
            Self::MissingPod => "missing_pod",
            Self::MissingNodes => "missing_nodes",
            Self::Encode(_) => "encode",
        }
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        use crate::body::BodyError;
        match self {
            Self::Body(BodyError::TooLarge { .. }) | Self::TooManyNodes(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Body(BodyError::Timeout(_)) => StatusCode::REQUEST_TIMEOUT,
            // The scheduler retries the pod later; the budget frees as bodies finish.
            Self::Body(BodyError::Busy { .. }) | Self::ConnectionBusy => StatusCode::SERVICE_UNAVAILABLE,
            Self::Body(BodyError::Read(_)) | Self::Decode(_) | Self::MissingPod | Self::MissingNodes => {
                StatusCode::BAD_REQUEST
            }
            // A filter answer carries the failure in its own `Error` field, which kube-scheduler
            // reports on the pod; a prioritize answer has no such field, and the scheduler
            // ignores failed prioritize calls anyway.
            Self::Expired { verb: "filter" } => StatusCode::OK,
            Self::Expired { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((actix_web::http::header::RETRY_AFTER, "1"));
        }
        if status == StatusCode::OK {
            return response.json(wire::FilterResult::error(self.to_string()));
        }
        response.content_type("text/plain; charset=utf-8").body(format!("{self}\n"))
    }
}
