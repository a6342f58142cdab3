//! The topology file (pinned in DESIGN.md): its types, validation, and the refusal of files
//! that are empty, comment-only or half-written.

use std::{
    collections::{BTreeMap, HashSet},
    path::Path,
};

use serde::Deserialize;

use super::super::{Error, NodeStatus};

/// The topology file, as pinned in DESIGN.md.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
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
    /// Parses and validates topology YAML. A text with no document at all (empty, or comments
    /// only) is refused: it is what a truncated or half-written file looks like, and taking it
    /// as "no nodes" would fail every pod's storage at once. `nodes: []` says so explicitly.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        if text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
            return Err("the file holds no topology (empty or only comments); write `nodes: []` for none".into());
        }
        let topo: Topology = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
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

/// Reads and validates the topology file at `path`.
pub(super) fn read_topology(path: &Path) -> Result<Topology, Error> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadTopology { path: display.clone(), source })?;
    // Block-style YAML has no end marker: a write caught half way is still a valid document,
    // but it usually stops mid-line, and a whole file ends with a newline. A flow-style (JSON)
    // document ends with its closing bracket, and a truncated one does not parse.
    let flow = text.trim_start().starts_with(['{', '[']);
    if !flow && !text.is_empty() && !text.ends_with('\n') {
        let message = "the file does not end with a newline: half-written? (write a temp file, then rename it over)";
        return Err(Error::Topology { path: display, message: message.into() });
    }
    Topology::from_yaml(&text).map_err(|message| Error::Topology { path: display, message })
}
