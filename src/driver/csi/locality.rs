//! Where a CSI volume lives, pure, from its PersistentVolume alone: replica nodes from an
//! explicit annotation or from required node affinity that pins host names, and the topology
//! segment (zones, regions) from affinity terms that CSI drivers derive from their
//! `AccessibleTopology`.

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, PersistentVolume};

use super::config::CsiConfig;
use crate::driver::Volume;

/// PV annotation listing the nodes holding the volume's replicas (`n1,n2`), for storage systems
/// that publish placement; it wins over node affinity.
pub const REPLICA_NODES_ANNOTATION: &str = "stork.libopenstorage.org/replica-nodes";
/// The node label that carries the host name (its value is the node name in most clusters).
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// The driver volume behind a PV of a configured CSI driver; `None` for any other PV.
/// Replicas are Kubernetes node names (the csi driver's storage ids). Labels stay empty:
/// StorageClass parameters and PVC annotations are merged by `pod_volumes`.
pub fn volume_of(pv: &PersistentVolume, config: &CsiConfig) -> Option<Volume> {
    let spec = pv.spec.as_ref()?;
    let driver = spec.csi.as_ref()?.driver.as_str();
    if !config.serves(driver) {
        return None;
    }
    let terms = spec
        .node_affinity
        .as_ref()
        .and_then(|a| a.required.as_ref())
        .map(|r| r.node_selector_terms.as_slice())
        .unwrap_or_default();
    let replicas = annotated_replicas(pv).unwrap_or_else(|| pinned_hosts(terms));
    Some(Volume {
        id: pv.metadata.name.clone().unwrap_or_default(),
        replicas,
        zones: segment(terms, is_zone_key),
        regions: segment(terms, is_region_key),
        ..Volume::default()
    })
}

/// Node names from [`REPLICA_NODES_ANNOTATION`]; `None` when absent or listing no name.
fn annotated_replicas(pv: &PersistentVolume) -> Option<Vec<String>> {
    let value = pv.metadata.annotations.as_ref()?.get(REPLICA_NODES_ANNOTATION)?;
    let names = dedup(value.split(',').map(str::trim).filter(|n| !n.is_empty()).map(String::from));
    (!names.is_empty()).then_some(names)
}

/// Host names the required terms pin the volume to. Terms are alternatives, so their hosts are
/// united; within one term every host requirement must hold, so those are intersected. A term
/// that pins no host adds nothing (it does not mean "anywhere" for locality).
fn pinned_hosts(terms: &[NodeSelectorTerm]) -> Vec<String> {
    let mut out = Vec::new();
    for term in terms {
        let by_label = term.match_expressions.iter().flatten().filter(|r| is_hostname_key(&r.key));
        let by_field = term.match_fields.iter().flatten().filter(|r| r.key == "metadata.name");
        let mut sets = by_label.chain(by_field).filter_map(in_values);
        let Some(first) = sets.next() else { continue };
        let rest: Vec<&[String]> = sets.collect();
        out.extend(first.iter().filter(|h| rest.iter().all(|s| s.contains(h))).cloned());
    }
    dedup(out)
}

/// Values of `In` requirements on keys `wanted` accepts, across every term.
fn segment(terms: &[NodeSelectorTerm], wanted: fn(&str) -> bool) -> Vec<String> {
    let values = terms
        .iter()
        .flat_map(|t| t.match_expressions.iter().flatten())
        .filter(|r| wanted(&r.key))
        .filter_map(in_values)
        .flatten()
        .cloned();
    dedup(values)
}

fn in_values(r: &NodeSelectorRequirement) -> Option<&[String]> {
    (r.operator == "In").then(|| r.values.as_deref().unwrap_or_default())
}

fn is_hostname_key(key: &str) -> bool {
    key == HOSTNAME_LABEL || key.ends_with("/hostname")
}

/// `topology.kubernetes.io/zone`, the beta label, and driver keys such as `topology.<driver>/zone`.
fn is_zone_key(key: &str) -> bool {
    key.ends_with("/zone")
}

fn is_region_key(key: &str) -> bool {
    key.ends_with("/region")
}

/// Keeps the first occurrence of each non-empty value, in order.
fn dedup(values: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        if !v.is_empty() && !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
#[path = "locality_tests.rs"]
mod tests;
