//! The driver's node inventory, indexed so a Kubernetes node finds its driver nodes in O(1).

// FxHash: keys are node names and IPs from our own caches, not attacker-chosen, and SipHash
// was the largest cost of matching at 5,000 nodes.
use rustc_hash::FxHashMap as HashMap;

use super::types::DriverNode;

/// How a Kubernetes node presents itself: name plus `status.addresses`.
#[derive(Debug, Clone, Copy)]
pub struct NodeIdentity<'a> {
    /// `metadata.name`.
    pub name: &'a str,
    /// `status.addresses` as (type, address) pairs.
    pub addresses: &'a [(&'a str, &'a str)],
}

/// Driver nodes in driver order, with lookup indexes for node matching.
#[derive(Debug, Default)]
pub struct NodeInventory {
    nodes: Vec<DriverNode>,
    by_id: HashMap<String, Vec<usize>>,
    by_name: HashMap<String, Vec<usize>>,
    by_hostname: HashMap<String, Vec<usize>>,
    by_ip: HashMap<String, Vec<usize>>,
}

impl NodeInventory {
    /// Builds the indexes; with a duplicate storage id, [`Self::by_id`] answers the first entry.
    pub fn new(nodes: Vec<DriverNode>) -> Self {
        let mut inv = Self { nodes, ..Self::default() };
        for (i, n) in inv.nodes.iter().enumerate() {
            inv.by_id.entry(n.id.clone()).or_default().push(i);
            inv.by_name.entry(n.name.clone()).or_default().push(i);
            inv.by_hostname.entry(n.hostname.clone()).or_default().push(i);
            for ip in &n.ips {
                inv.by_ip.entry(ip.clone()).or_default().push(i);
            }
        }
        inv
    }

    /// All driver nodes, in driver order.
    pub fn nodes(&self) -> &[DriverNode] {
        &self.nodes
    }

    /// The driver node with this storage id.
    pub fn by_id(&self, id: &str) -> Option<&DriverNode> {
        self.index_of(id).map(|i| &self.nodes[i])
    }

    /// Index of the driver node with this storage id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).and_then(|v| v.first().copied())
    }

    /// Driver node at an index returned by [`Self::matches`].
    pub fn get(&self, index: usize) -> &DriverNode {
        &self.nodes[index]
    }

    /// Indices of every driver node that is this Kubernetes node, best status first, then
    /// driver order. Same rules as Stork's `IsNodeMatch`: Kubernetes name equals the driver's
    /// node name; the storage id host-name-matches the Kubernetes name; a `Hostname` address
    /// host-name-matches the driver host name; an `InternalIP` is one of the driver's IPs.
    /// Host-name match means equal, or the Kubernetes side is an FQDN of the driver's short name.
    pub fn matches(&self, node: NodeIdentity<'_>, out: &mut Vec<usize>) {
        out.clear();
        extend(out, self.by_name.get(node.name));
        host_prefixes(node.name).for_each(|p| extend(out, self.by_id.get(p)));
        for &(kind, addr) in node.addresses {
            match kind {
                "Hostname" => host_prefixes(addr).for_each(|p| extend(out, self.by_hostname.get(p))),
                "InternalIP" => extend(out, self.by_ip.get(addr)),
                _ => {}
            }
        }
        out.sort_unstable_by_key(|&i| (self.nodes[i].status.rank(), i));
        out.dedup();
    }

    /// The preferred driver node for this Kubernetes node: best status, then driver order.
    pub fn best_match(&self, node: NodeIdentity<'_>, scratch: &mut Vec<usize>) -> Option<usize> {
        self.matches(node, scratch);
        scratch.first().copied()
    }
}

fn extend(out: &mut Vec<usize>, found: Option<&Vec<usize>>) {
    if let Some(v) = found {
        out.extend_from_slice(v);
    }
}

/// `name` itself and every prefix that ends right before a `.`: the driver-side strings that
/// host-name-match `name` (`node1` matches `node1.example.com`, not the reverse).
fn host_prefixes(name: &str) -> impl Iterator<Item = &str> {
    std::iter::once(name).chain(name.match_indices('.').map(move |(i, _)| &name[..i])).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::types::NodeStatus;

    fn dn(id: &str, status: NodeStatus) -> DriverNode {
        DriverNode {
            id: id.into(),
            name: format!("k8s-{id}"),
            hostname: id.into(),
            ips: vec![format!("10.0.0.{}", id.len())],
            status,
            ..DriverNode::default()
        }
    }

    fn matched(inv: &NodeInventory, name: &str, addrs: &[(&str, &str)]) -> Vec<String> {
        let mut out = Vec::new();
        inv.matches(NodeIdentity { name, addresses: addrs }, &mut out);
        out.into_iter().map(|i| inv.get(i).id.clone()).collect()
    }

    #[test]
    fn kubernetes_name_matches_the_driver_node_name() {
        let inv = NodeInventory::new(vec![dn("a", NodeStatus::Online)]);
        assert_eq!(matched(&inv, "k8s-a", &[]), ["a"]);
    }

    #[test]
    fn fqdn_kubernetes_name_matches_a_short_storage_id_but_not_the_reverse() {
        let inv = NodeInventory::new(vec![dn("a", NodeStatus::Online), dn("b.example.com", NodeStatus::Online)]);
        assert_eq!(matched(&inv, "a.example.com", &[]), ["a"]);
        assert!(matched(&inv, "b", &[]).is_empty());
    }

    #[test]
    fn hostname_and_internal_ip_addresses_match_but_external_ip_does_not() {
        let inv = NodeInventory::new(vec![dn("a", NodeStatus::Online), dn("bb", NodeStatus::Online)]);
        assert_eq!(matched(&inv, "x", &[("Hostname", "a.lan")]), ["a"]);
        assert_eq!(matched(&inv, "x", &[("InternalIP", "10.0.0.2")]), ["bb"]);
        assert!(matched(&inv, "x", &[("ExternalIP", "10.0.0.2")]).is_empty());
    }

    #[test]
    fn an_online_entry_is_preferred_over_a_stale_offline_one_for_the_same_node() {
        let mut stale = dn("old", NodeStatus::Offline);
        stale.name = "k8s-a".into();
        let inv = NodeInventory::new(vec![stale, dn("a", NodeStatus::Online)]);
        assert_eq!(matched(&inv, "k8s-a", &[]), ["a", "old"]);
    }
}
