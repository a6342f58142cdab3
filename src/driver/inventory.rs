//! The driver's node inventory, indexed so a Kubernetes node finds its driver nodes in O(1),
//! plus a per-inventory index of the cluster's cached Nodes (see [`KubeNodes`]).

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use arc_swap::ArcSwapOption;
use k8s_openapi::api::core::v1::Node;
// FxHash: keys are node names and IPs from our own caches, not attacker-chosen, and SipHash
// was the largest cost of matching at 5,000 nodes.
use rustc_hash::FxHashMap as HashMap;

use super::types::{DriverNode, NodeStatus};
use crate::cluster::{ClusterView, node_addresses, storage_unschedulable};

/// Source of [`NodeInventory::id`]s.
static NEXT_INVENTORY_ID: AtomicU64 = AtomicU64::new(1);

/// How a Kubernetes node presents itself: name plus `status.addresses`.
#[derive(Debug, Clone, Copy)]
pub struct NodeIdentity<'a> {
    /// `metadata.name`.
    pub name: &'a str,
    /// `status.addresses` as (type, address) pairs.
    pub addresses: &'a [(&'a str, &'a str)],
}

/// A driver node's storage id and failure domains as small integers, equal exactly when the
/// strings are equal, plus its status: placement compares thousands of nodes with these
/// instead of string compares that chase pointers all over the heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeKeys {
    /// Storage id.
    pub id: u32,
    /// Rack ([`NodeInventory::EMPTY_KEY`] when unknown).
    pub rack: u32,
    /// Zone ([`NodeInventory::EMPTY_KEY`] when unknown).
    pub zone: u32,
    /// Region ([`NodeInventory::EMPTY_KEY`] when unknown).
    pub region: u32,
    /// Driver health.
    pub status: NodeStatus,
}

/// Driver nodes in driver order, with lookup indexes for node matching.
#[derive(Debug)]
pub struct NodeInventory {
    id: u64,
    nodes: Vec<DriverNode>,
    by_id: HashMap<String, Vec<usize>>,
    by_name: HashMap<String, Vec<usize>>,
    by_hostname: HashMap<String, Vec<usize>>,
    by_ip: HashMap<String, Vec<usize>>,
    /// [`NodeKeys`] of each node, in driver order.
    keys: Vec<NodeKeys>,
    /// The strings behind the keys.
    interned: HashMap<String, u32>,
    /// The cluster's Nodes matched against this inventory, as last published by the index
    /// builder ([`super::node_index`]); requests read it, never build it.
    kube: ArcSwapOption<KubeNodes>,
}

impl Default for NodeInventory {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl NodeInventory {
    /// Builds the indexes; with a duplicate storage id, [`Self::by_id`] answers the first entry.
    pub fn new(nodes: Vec<DriverNode>) -> Self {
        let mut inv = Self {
            id: NEXT_INVENTORY_ID.fetch_add(1, Ordering::Relaxed),
            nodes,
            by_id: HashMap::default(),
            by_name: HashMap::default(),
            by_hostname: HashMap::default(),
            by_ip: HashMap::default(),
            keys: Vec::new(),
            interned: HashMap::from_iter([(String::new(), Self::EMPTY_KEY)]),
            kube: ArcSwapOption::empty(),
        };
        for (i, n) in inv.nodes.iter().enumerate() {
            inv.by_id.entry(n.id.clone()).or_default().push(i);
            inv.by_name.entry(n.name.clone()).or_default().push(i);
            inv.by_hostname.entry(n.hostname.clone()).or_default().push(i);
            for ip in &n.ips {
                inv.by_ip.entry(ip.clone()).or_default().push(i);
            }
        }
        let mut intern = |s: &str| match inv.interned.get(s) {
            Some(&k) => k,
            None => {
                let k = u32::try_from(inv.interned.len()).unwrap_or(u32::MAX);
                inv.interned.insert(s.to_string(), k);
                k
            }
        };
        let keys = inv.nodes.iter().map(|n| NodeKeys {
            id: intern(&n.id),
            rack: intern(&n.rack),
            zone: intern(&n.zone),
            region: intern(&n.region),
            status: n.status,
        });
        inv.keys = keys.collect();
        inv
    }

    /// The key of the empty string in [`NodeKeys`].
    pub const EMPTY_KEY: u32 = 0;

    /// [`NodeKeys`] of the driver node at an index returned by [`Self::matches`].
    pub fn keys(&self, index: usize) -> NodeKeys {
        self.keys[index]
    }

    /// The key of a storage id, rack, zone or region string, if any driver node has it.
    pub fn key_of(&self, s: &str) -> Option<u32> {
        self.interned.get(s).copied()
    }

    /// Unique among the inventories of this process: tells which inventory match indices refer to.
    pub fn id(&self) -> u64 {
        self.id
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
        if out.len() > 1 {
            out.sort_unstable_by_key(|&i| (self.nodes[i].status.rank(), i));
            out.dedup();
        }
    }

    /// The preferred driver node for this Kubernetes node: best status, then driver order.
    pub fn best_match(&self, node: NodeIdentity<'_>, scratch: &mut Vec<usize>) -> Option<usize> {
        self.matches(node, scratch);
        scratch.first().copied()
    }
}

impl NodeInventory {
    /// The published index of `cluster`'s Nodes matched against this inventory, however many
    /// Node changes ago it was built; `None` before the first build for this inventory and view.
    /// Lock-free, and never builds: the index builder ([`super::node_index::run`]) keeps it
    /// current off the request path, and a reader copes with a stale one (a Node it does not
    /// list is read from the cache; addresses that differ from the request's are matched again).
    pub fn node_index(&self, cluster: &ClusterView) -> Option<Arc<KubeNodes>> {
        self.kube.load_full().filter(|k| k.view == cluster.id())
    }

    /// Whether the published index (if any) predates the Node cache's current state.
    pub fn node_index_is_stale(&self, cluster: &ClusterView) -> bool {
        self.node_index(cluster).is_none_or(|k| k.generation != cluster.node_generation())
    }

    /// Builds the index if the Node cache changed since the published one, reusing the entries of
    /// Nodes that did not change, and publishes it. Meant for one caller at a time (the builder
    /// task, tests, a benchmark's warm-up): concurrent callers may publish out of order.
    pub fn refresh_node_index(&self, cluster: &ClusterView) -> Arc<KubeNodes> {
        // The generation is read before the Nodes: a change after this read bumps it again.
        let generation = cluster.node_generation();
        let previous = self.node_index(cluster);
        if let Some(k) = previous.as_ref().filter(|k| k.generation == generation) {
            return k.clone();
        }
        let built = Arc::new(self.build_kube_nodes(cluster, generation, previous.as_deref()));
        self.kube.store(Some(built.clone()));
        built
    }

    /// Builds an index of `cluster`'s Nodes at Node generation `generation`, taking the entries
    /// of unchanged Nodes from `previous` (pure: nothing is published).
    pub fn build_kube_nodes(&self, cluster: &ClusterView, generation: u64, previous: Option<&KubeNodes>) -> KubeNodes {
        // Match indices refer to one inventory, and Node Arcs to one view's stores.
        let previous = previous.filter(|p| p.inventory == self.id && p.view == cluster.id());
        let nodes = cluster.nodes();
        let mut by_name = HashMap::with_capacity_and_hasher(nodes.len(), Default::default());
        let mut scratch = Vec::new();
        for node in nodes {
            let Some(name) = node.metadata.name.as_deref() else { continue };
            // The store replaces a changed Node's Arc, so an unchanged Arc means an unchanged entry.
            let same =
                previous.and_then(|p| p.by_name.get_key_value(name)).filter(|(_, e)| Arc::ptr_eq(&e.node, &node));
            if let Some((key, entry)) = same {
                by_name.insert(key.clone(), entry.clone());
                continue;
            }
            let addresses = node_addresses(&node);
            self.matches(NodeIdentity { name, addresses: &addresses }, &mut scratch);
            let key = Arc::from(name);
            let entry =
                KubeNode { storage_unschedulable: storage_unschedulable(&node), found: Found::of(&scratch), node };
            by_name.insert(key, entry);
        }
        KubeNodes { inventory: self.id, view: cluster.id(), generation, by_name }
    }
}

/// The cached Nodes of one cluster view, each with its driver matches in one inventory: what
/// names mode needs per node, looked up with one hash probe instead of a cache read and a match.
pub struct KubeNodes {
    inventory: u64,
    view: u64,
    generation: u64,
    by_name: HashMap<Arc<str>, KubeNode>,
}

impl KubeNodes {
    /// The [`NodeInventory::id`] that match indices refer to.
    pub fn inventory(&self) -> u64 {
        self.inventory
    }

    /// The cached Node of this name.
    pub fn get(&self, name: &str) -> Option<&KubeNode> {
        self.by_name.get(name)
    }

    /// Number of cached Nodes.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether no Node is cached.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

impl std::fmt::Debug for KubeNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeNodes")
            .field("inventory", &self.inventory)
            .field("view", &self.view)
            .field("generation", &self.generation)
            .field("nodes", &self.by_name.len())
            .finish()
    }
}

/// One cached Node with what decisions read about it.
#[derive(Debug, Clone)]
pub struct KubeNode {
    node: Arc<Node>,
    storage_unschedulable: bool,
    found: Found,
}

impl KubeNode {
    /// The driver entries that are this node, best first: [`NodeInventory::matches`] of the Node.
    pub fn matches(&self) -> &[usize] {
        match &self.found {
            Found::Few(n, idx) => &idx[..usize::from(*n)],
            Found::Many(idx) => idx,
        }
    }

    /// The storage operator marked the Node unschedulable.
    pub fn storage_unschedulable(&self) -> bool {
        self.storage_unschedulable
    }

    /// Whether the cached Node has exactly these `status.addresses`, in this order.
    pub fn has_addresses<'s>(&self, mut addresses: impl ExactSizeIterator<Item = (&'s str, &'s str)>) -> bool {
        let cached = self.node.status.as_ref().and_then(|s| s.addresses.as_deref()).unwrap_or_default();
        cached.len() == addresses.len()
            && cached.iter().all(|c| addresses.next().is_some_and(|(k, a)| c.type_ == k && c.address == a))
    }
}

/// Match indices stored inline for the usual one or two entries.
#[derive(Debug, Clone)]
enum Found {
    Few(u8, [usize; 2]),
    Many(Arc<[usize]>),
}

impl Found {
    fn of(matches: &[usize]) -> Self {
        match *matches {
            [] => Self::Few(0, [0; 2]),
            [a] => Self::Few(1, [a, 0]),
            [a, b] => Self::Few(2, [a, b]),
            _ => Self::Many(matches.into()),
        }
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
#[path = "inventory_tests.rs"]
mod tests;
