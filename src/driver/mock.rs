//! The `mock` driver: node and volume state from a topology YAML file, re-read when it changes.
//! It is the embedded default behind the demo, the tests and the benchmarks.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::PersistentVolume;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{Driver, DriverNode, Error, NodeInventory, NodeStatus, Volume};

/// StorageClass provisioner (and CSI driver name) the mock driver owns.
pub const PROVISIONER: &str = "mock.stork.libopenstorage.org";
/// Name prefix of the mock driver's CSI controller pods (as Stork's Portworx and mock drivers).
pub const CSI_POD_PREFIX: &str = "px-csi-ext";

/// The topology file, as pinned in DESIGN.md.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Storage nodes.
    #[serde(default)]
    pub nodes: Vec<TopologyNode>,
    /// Volumes.
    #[serde(default)]
    pub volumes: Vec<TopologyVolume>,
}

/// One node of the topology file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyNode {
    /// Storage id (required, unique).
    pub id: String,
    /// Kubernetes node name; default: id.
    pub name: Option<String>,
    /// Host name; default: name.
    pub hostname: Option<String>,
    /// IPs; default none.
    #[serde(default)]
    pub ips: Vec<String>,
    /// Rack.
    pub rack: Option<String>,
    /// Zone.
    pub zone: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Driver status; default Online.
    #[serde(default)]
    pub status: NodeStatus,
}

/// One volume of the topology file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TopologyVolume {
    /// Volume id = the PV name.
    pub id: String,
    /// Storage ids of replica nodes.
    #[serde(default)]
    pub replicas: Vec<String>,
    /// Volume labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Shared volume better served remotely.
    #[serde(default)]
    pub anti_hyperconvergence: bool,
    /// Windows volume.
    #[serde(default)]
    pub windows: bool,
}

impl Topology {
    /// Parses and validates topology YAML.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let topo: Topology = if text.trim().is_empty() {
            Topology::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| e.to_string())?
        };
        let mut ids = HashSet::new();
        for (i, n) in topo.nodes.iter().enumerate() {
            if n.id.is_empty() {
                return Err(format!("nodes[{i}]: id is required"));
            }
            if !ids.insert(n.id.as_str()) {
                return Err(format!("nodes[{i}]: duplicate id {:?}", n.id));
            }
        }
        let mut vols = HashSet::new();
        for (i, v) in topo.volumes.iter().enumerate() {
            if v.id.is_empty() {
                return Err(format!("volumes[{i}]: id is required"));
            }
            if !vols.insert(v.id.as_str()) {
                return Err(format!("volumes[{i}]: duplicate id {:?}", v.id));
            }
        }
        Ok(topo)
    }
}

/// One loaded topology: the indexed inventory and the volumes by id.
#[derive(Debug, Default)]
struct State {
    inventory: Arc<NodeInventory>,
    volumes: HashMap<String, Arc<Volume>>,
}

impl From<Topology> for State {
    fn from(t: Topology) -> Self {
        let nodes = t
            .nodes
            .into_iter()
            .map(|n| {
                let name = n.name.unwrap_or_else(|| n.id.clone());
                DriverNode {
                    hostname: n.hostname.unwrap_or_else(|| name.clone()).to_lowercase(),
                    id: n.id,
                    name,
                    ips: n.ips,
                    rack: n.rack.unwrap_or_default(),
                    zone: n.zone.unwrap_or_default(),
                    region: n.region.unwrap_or_default(),
                    status: n.status,
                }
            })
            .collect();
        let volumes = t
            .volumes
            .into_iter()
            .map(|v| {
                let vol = Volume {
                    id: v.id.clone(),
                    replicas: v.replicas,
                    labels: v.labels,
                    anti_hyperconvergence: v.anti_hyperconvergence,
                    windows: v.windows,
                };
                (v.id, Arc::new(vol))
            })
            .collect();
        Self { inventory: Arc::new(NodeInventory::new(nodes)), volumes }
    }
}

/// The mock driver. State swaps atomically on reload; readers never block.
pub struct MockDriver {
    path: Option<PathBuf>,
    state: ArcSwap<State>,
}

impl MockDriver {
    /// A driver over an in-memory topology (tests, benchmarks).
    pub fn from_topology(topology: Topology) -> Self {
        Self { path: None, state: ArcSwap::from_pointee(topology.into()) }
    }

    /// Loads the topology file; fails with the path and the problem if it is unusable.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let state = read_state(path)?;
        Ok(Self { path: Some(path.to_path_buf()), state: ArcSwap::from_pointee(state) })
    }

    /// Re-reads the file. On error the previous state stays in force.
    pub fn reload(&self) -> Result<(), Error> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let state = read_state(path)?;
        tracing::info!(
            path = %path.display(),
            nodes = state.inventory.nodes().len(),
            volumes = state.volumes.len(),
            "mock topology reloaded"
        );
        self.state.store(Arc::new(state));
        Ok(())
    }

    /// Re-reads the topology whenever the file changes, until `cancel` fires.
    pub async fn watch(self: Arc<Self>, cancel: CancellationToken) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let mut watch = match crate::watch::FileWatch::new(std::slice::from_ref(&path), Duration::from_secs(5)) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot watch mock topology; changes need a restart");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                alive = watch.changed() => {
                    if !alive { return; }
                    if let Err(e) = self.reload() {
                        tracing::warn!(error = %e, "keeping the previous mock topology");
                    }
                }
            }
        }
    }
}

fn read_state(path: &Path) -> Result<State, Error> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadTopology { path: display.clone(), source })?;
    let topo = Topology::from_yaml(&text).map_err(|message| Error::Topology { path: display, message })?;
    Ok(topo.into())
}

impl Driver for MockDriver {
    fn name(&self) -> &str {
        "mock"
    }

    fn owns_provisioner(&self, provisioner: &str) -> bool {
        provisioner == PROVISIONER
    }

    fn nodes(&self) -> Result<Arc<NodeInventory>, Error> {
        Ok(self.state.load().inventory.clone())
    }

    fn volume(&self, pv: &PersistentVolume) -> Result<Option<Arc<Volume>>, Error> {
        let name = pv.metadata.name.as_deref().unwrap_or_default();
        Ok(self.state.load().volumes.get(name).cloned())
    }

    fn csi_pod_prefix(&self) -> Option<&str> {
        Some(CSI_POD_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_name_hostname_and_status() {
        let t = Topology::from_yaml("nodes:\n- id: N1\n  hostname: N1.Example\n- id: n2\n  name: k2\n").unwrap();
        let d = MockDriver::from_topology(t);
        let inv = d.nodes().unwrap();
        let n1 = inv.by_id("N1").unwrap();
        assert_eq!((n1.name.as_str(), n1.hostname.as_str(), n1.status), ("N1", "n1.example", NodeStatus::Online));
        assert_eq!(inv.by_id("n2").unwrap().hostname, "k2");
    }

    #[test]
    fn unknown_fields_duplicate_ids_and_missing_ids_are_rejected_with_the_location() {
        assert!(Topology::from_yaml("nodes:\n- id: a\n  zonee: x\n").unwrap_err().contains("zonee"));
        assert!(Topology::from_yaml("nodes:\n- id: a\n- id: a\n").unwrap_err().contains("nodes[1]: duplicate"));
        assert!(Topology::from_yaml("volumes:\n- replicas: [a]\n").is_err());
        assert!(Topology::from_yaml("nodes:\n- id: a\n  status: Sleeping\n").is_err());
    }

    #[test]
    fn a_broken_rewrite_keeps_the_previous_topology() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("topology.yaml");
        std::fs::write(&path, "nodes:\n- id: a\n").unwrap();
        let d = MockDriver::load(&path).unwrap();
        std::fs::write(&path, "nodes: [").unwrap();
        assert!(d.reload().is_err());
        assert!(d.nodes().unwrap().by_id("a").is_some());
        std::fs::write(&path, "nodes:\n- id: b\n  status: Offline\n").unwrap();
        d.reload().unwrap();
        assert_eq!(d.nodes().unwrap().by_id("b").unwrap().status, NodeStatus::Offline);
    }
}
