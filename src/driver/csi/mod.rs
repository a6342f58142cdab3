//! The `csi` driver: serves any CSI storage from what every CSI deployment already puts into
//! Kubernetes, nothing vendor-specific.
//!
//! - Driver nodes: Nodes whose `CSINode` lists a configured driver; health from the Node's
//!   readiness and, when a selector is configured, the node-plugin pod on it ([`status`]).
//! - Volumes: from the PV alone — replica nodes from an annotation or hostname node affinity,
//!   zones/regions from topology terms ([`locality`]).
//! - State: reflectors on CSINodes and node-plugin pods plus the cluster's Node cache feed a
//!   debounced rebuild of the inventory, swapped in atomically; readers never block and no
//!   request or monitor tick lists anything ([`CsiDriver::run`]).

mod config;
pub mod locality;
mod selector;
pub mod snapshots;
pub mod status;
mod watch;

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;
use k8s_openapi::api::{
    core::v1::{Node, PersistentVolume, Pod},
    storage::v1::CSINode,
};
use serde::de::DeserializeOwned;

pub use self::{
    config::{ConfigError, CsiConfig, DEFAULT_RACK_LABEL, FALLBACK_RACK_LABEL, NodePluginSelector},
    locality::{HOSTNAME_LABEL, REPLICA_NODES_ANNOTATION, volume_of},
    status::{Assessed, Reason},
};
use super::{Driver, Error, NodeInventory, Volume};
use crate::cluster::ClusterView;

/// Name of the driver (`--driver csi`), in logs and errors.
pub const NAME: &str = "csi";

/// What readers see, rebuilt whole and swapped in.
#[derive(Debug, Default)]
struct State {
    /// False until every cache has its initial list: until then the driver cannot tell a
    /// healthy node from one it has not heard about.
    synced: bool,
    inventory: Arc<NodeInventory>,
    /// `kubernetes.io/hostname` label value to node name, where the two differ, so a PV pinned
    /// by host name finds its node.
    hostnames: HashMap<String, String>,
}

/// The `csi` driver. Cheap to read from any thread; [`CsiDriver::run`] keeps it current.
pub struct CsiDriver {
    config: CsiConfig,
    cluster: ClusterView,
    state: ArcSwap<State>,
    claims: super::claims::ClaimIndexSlot,
    // Set once at startup in live mode (snapshots need an API client).
    snapshots: std::sync::OnceLock<snapshots::CsiSnapshots>,
}

impl std::fmt::Debug for CsiDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.load();
        f.debug_struct("CsiDriver")
            .field("config", &self.config)
            .field("synced", &state.synced)
            .field("nodes", &state.inventory.nodes().len())
            .finish()
    }
}

impl CsiDriver {
    /// A driver with no node state yet: [`Driver::nodes`] is unavailable until [`Self::run`]
    /// has synced its caches. `config` should have passed [`CsiConfig::validate`].
    pub fn new(config: CsiConfig, cluster: ClusterView) -> Arc<Self> {
        Arc::new(Self {
            config,
            cluster,
            state: ArcSwap::from_pointee(State::default()),
            claims: Default::default(),
            snapshots: std::sync::OnceLock::new(),
        })
    }

    /// Enables snapshots through `snapshot.storage.k8s.io/v1` (live mode). A second call is
    /// ignored.
    pub fn enable_snapshots(&self, snapshots: snapshots::CsiSnapshots) {
        let _ = self.snapshots.set(snapshots);
    }

    /// A driver built once from objects (offline mode, tests): Nodes from `cluster`, CSINodes
    /// and pods from `objects`; each selector picks its pods by namespace and labels.
    pub fn from_objects(config: CsiConfig, cluster: ClusterView, objects: &CsiObjects) -> Arc<Self> {
        let driver = Self::new(config, cluster);
        let pods: Vec<Vec<&Pod>> = driver
            .config
            .node_plugins
            .iter()
            .map(|sel| {
                let selected = |p: &&Pod| {
                    p.metadata.namespace.as_deref() == Some(sel.namespace.as_str())
                        && sel.selects(p.metadata.labels.as_ref())
                };
                objects.pods.iter().filter(selected).collect()
            })
            .collect();
        driver.rebuild(&objects.csinodes, &pods);
        driver
    }

    /// The configuration.
    pub fn config(&self) -> &CsiConfig {
        &self.config
    }

    /// Recomputes the inventory from the Node cache and these CSINodes and plugin pods
    /// (`pods[i]` selected by `node_plugins[i]`), swaps it in as synced, and returns the
    /// assessment (for transition logs).
    fn rebuild<C: std::borrow::Borrow<CSINode>, P: std::borrow::Borrow<Pod>>(
        &self,
        csinodes: &[C],
        pods: &[Vec<P>],
    ) -> Vec<Assessed> {
        let nodes = self.cluster.nodes();
        let assessed = status::assess(&self.config, &nodes, csinodes, pods);
        let hostnames = hostname_aliases(&nodes, &assessed);
        let inventory = Arc::new(NodeInventory::new(assessed.iter().map(|a| a.node.clone()).collect()));
        let old = self.state.swap(Arc::new(State { synced: true, inventory, hostnames }));
        // `volume` maps replica host names through the node ids and host-name aliases: only a
        // change of those changes indexed volumes. Node heartbeats rebuild the inventory all
        // the time and must not rebuild the claim index each time.
        let new = self.state.load();
        if old.hostnames != new.hostnames || node_ids(&old) != node_ids(&new) {
            self.claims.volumes_changed();
        }
        assessed
    }
}

/// The driver node ids of a state.
fn node_ids(state: &State) -> std::collections::HashSet<&str> {
    state.inventory.nodes().iter().map(|n| n.id.as_str()).collect()
}

/// Host-name label values of driver nodes whose label differs from the node name.
fn hostname_aliases(nodes: &[Arc<Node>], assessed: &[Assessed]) -> HashMap<String, String> {
    let served = |name: &str| assessed.binary_search_by(|a| a.node.name.as_str().cmp(name)).is_ok();
    nodes
        .iter()
        .filter_map(|n| {
            let name = n.metadata.name.as_deref()?;
            let host = n.metadata.labels.as_ref()?.get(HOSTNAME_LABEL)?;
            (host != name && served(name)).then(|| (host.clone(), name.to_string()))
        })
        .collect()
}

impl Driver for CsiDriver {
    fn name(&self) -> &str {
        NAME
    }

    fn owns_provisioner(&self, provisioner: &str) -> bool {
        self.config.serves(provisioner)
    }

    fn claim_index(&self) -> Option<&super::claims::ClaimIndexSlot> {
        Some(&self.claims)
    }

    fn snapshots(&self) -> Option<&dyn super::SnapshotDriver> {
        self.snapshots.get().map(|s| s as &dyn super::SnapshotDriver)
    }

    fn nodes(&self) -> Result<Arc<NodeInventory>, Error> {
        let state = self.state.load();
        if !state.synced {
            return Err(Error::Unavailable {
                driver: NAME.to_string(),
                reason: "waiting for the Node, CSINode and node-plugin pod caches to sync".to_string(),
            });
        }
        Ok(state.inventory.clone())
    }

    fn volume(&self, pv: &PersistentVolume) -> Result<Option<Arc<Volume>>, Error> {
        let Some(mut volume) = volume_of(pv, &self.config) else {
            return Ok(None);
        };
        let state = self.state.load();
        for replica in &mut volume.replicas {
            if state.inventory.by_id(replica).is_none()
                && let Some(name) = state.hostnames.get(replica.as_str())
            {
                replica.clone_from(name);
            }
        }
        Ok(Some(Arc::new(volume)))
    }
}

/// CSINodes and pods for [`CsiDriver::from_objects`].
#[derive(Debug, Default, Clone)]
pub struct CsiObjects {
    /// CSINodes (storage.k8s.io/v1).
    pub csinodes: Vec<CSINode>,
    /// Pods; only those a node-plugin selector picks are used.
    pub pods: Vec<Pod>,
}

impl CsiObjects {
    /// Reads the CSINodes and Pods of multi-document YAML (`kind: List` flattened, other kinds
    /// ignored), so the `--objects` file can carry them beside the cluster view's kinds.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
        let mut out = Self::default();
        let mut queue: Vec<serde_json::Value> = docs.into_iter().rev().collect();
        let mut index = 0;
        while let Some(doc) = queue.pop() {
            index += 1;
            let kind = doc.get("kind").and_then(|k| k.as_str()).unwrap_or_default().to_string();
            let ctx = |e: serde_json::Error| format!("object {index} ({kind}): {e}");
            match kind.as_str() {
                "List" => {
                    queue.extend(doc.get("items").and_then(|i| i.as_array()).into_iter().flatten().rev().cloned())
                }
                "CSINode" => out.csinodes.push(typed(doc).map_err(ctx)?),
                "Pod" => out.pods.push(typed(doc).map_err(ctx)?),
                _ => {}
            }
        }
        Ok(out)
    }
}

fn typed<T: DeserializeOwned>(doc: serde_json::Value) -> Result<T, serde_json::Error> {
    serde_json::from_value(doc)
}

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;
