//! Storage-driver domain types: the node inventory and volumes, shared by every driver.

use std::{collections::BTreeMap, sync::Arc};

use serde::{Deserialize, Serialize};

/// Health of the storage driver on one node, as the driver reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum NodeStatus {
    /// The driver serves I/O on this node.
    #[default]
    Online,
    /// The driver process is down or the node left the storage cluster.
    Offline,
    /// The driver runs but its local storage pool is down: reachable, not local.
    StorageDown,
    /// The driver is unhealthy; treated like Offline for placement.
    Degraded,
}

impl NodeStatus {
    /// Whether a pod may be placed here: Stork admits Online and StorageDown nodes.
    pub fn is_schedulable(self) -> bool {
        matches!(self, Self::Online | Self::StorageDown)
    }

    /// Preference when several driver entries map to one Kubernetes node (lower wins).
    pub(crate) fn rank(self) -> u8 {
        match self {
            Self::Online => 0,
            Self::StorageDown => 1,
            Self::Degraded => 2,
            Self::Offline => 3,
        }
    }
}

impl NodeStatus {
    /// The status's name as the topology file, logs and metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "Online",
            Self::Offline => "Offline",
            Self::StorageDown => "StorageDown",
            Self::Degraded => "Degraded",
        }
    }
}

impl std::fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node of the storage cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DriverNode {
    /// The driver's storage id (unique within the driver).
    pub id: String,
    /// The Kubernetes node name the driver reports for this node (Stork's `SchedulerID`).
    pub name: String,
    /// Host name, lower case; a short name matches an FQDN Kubernetes host name.
    pub hostname: String,
    /// Management and data IPs.
    pub ips: Vec<String>,
    /// Failure domains; empty means unknown.
    pub rack: String,
    /// Zone; empty means unknown.
    pub zone: String,
    /// Region; empty means unknown.
    pub region: String,
    /// Driver health on this node.
    pub status: NodeStatus,
}

/// A driver volume with everything placement needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Volume {
    /// Driver volume id (for the mock: the PV name).
    pub id: String,
    /// Storage ids of the nodes holding a replica.
    pub replicas: Vec<String>,
    /// Volume labels; placement knobs such as `preferRemoteNodeOnly` live here.
    pub labels: BTreeMap<String, String>,
    /// A shared volume that is better served from another node (Stork: sharedv4 service).
    pub anti_hyperconvergence: bool,
    /// A Windows (SMB) volume: placement constraints do not apply.
    pub windows: bool,
    /// Zones the volume is accessible in (CSI topology), when the driver knows no replica
    /// nodes: a node in one of them scores as same-zone.
    pub zones: Vec<String>,
    /// Regions the volume is accessible in: a node in one of them scores as same-region.
    pub regions: Vec<String>,
}

/// A pod's driver volume, with the PVC it came from and its effective labels.
#[derive(Debug, Clone)]
pub struct PodVolume {
    /// `namespace/name` of the claim, for messages.
    pub claim: String,
    /// The driver volume.
    pub volume: Arc<Volume>,
    /// Knobs (keys under [`crate::knobs::PREFIX`]) from StorageClass parameters, overlaid by
    /// the volume's labels, overlaid by the PVC's annotations.
    pub labels: BTreeMap<String, String>,
}

/// The driver volumes of a pod.
#[derive(Debug, Clone, Default)]
pub struct PodVolumes {
    /// Bound volumes the driver knows.
    pub bound: Vec<PodVolume>,
    /// Claims of a WaitForFirstConsumer class not bound yet (`namespace/name`).
    pub pending_wffc: Vec<String>,
}

impl PodVolumes {
    /// True when the pod uses no driver volume at all.
    pub fn is_empty(&self) -> bool {
        self.bound.is_empty() && self.pending_wffc.is_empty()
    }
}
