//! Response types of the extender protocol: the filter result and the prioritize scores.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `ExtenderFilterResult`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FilterResult<'a> {
    /// Kept nodes (full-node mode), raw as received.
    pub nodes: Option<ResponseNodeList<'a>>,
    /// Kept node names (names mode).
    pub node_names: Option<Vec<&'a str>>,
    /// Dropped nodes that preemption might help, with the reason.
    pub failed_nodes: BTreeMap<&'a str, String>,
    /// Dropped nodes nothing on the node can fix, with the reason.
    pub failed_and_unresolvable_nodes: BTreeMap<&'a str, String>,
    /// Non-empty only for an extender error (the scheduler then fails the attempt).
    pub error: String,
}

impl FilterResult<'static> {
    /// An answer that fails the call with `error`, the protocol's way to report an extender
    /// failure (kube-scheduler shows it on the pod and retries later).
    pub fn error(error: String) -> Self {
        Self {
            nodes: None,
            node_names: None,
            failed_nodes: BTreeMap::new(),
            failed_and_unresolvable_nodes: BTreeMap::new(),
            error,
        }
    }
}

/// A `v1.NodeList` of raw nodes.
#[derive(Debug, Serialize)]
pub struct ResponseNodeList<'a> {
    /// Always `{}`.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The kept nodes, untouched.
    pub items: Vec<&'a RawValue>,
}

/// `HostPriority`: one element of the prioritize response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostPriority {
    /// Node name.
    pub host: String,
    /// Raw score (not clamped to 0–10; see prioritize.rs).
    pub score: i64,
}

/// A [`HostPriority`] that borrows its host name, so encoding copies no name.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostScore<'a> {
    /// Node name.
    pub host: &'a str,
    /// Raw score.
    pub score: i64,
}
