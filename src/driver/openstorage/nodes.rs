//! SDK nodes as stork's driver nodes: Stork's status table for Portworx, identities and failure
//! domains.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;

use super::proto::{Status, StorageNode};
use crate::driver::{DriverNode, NodeStatus};

/// Stork's mapping of an OpenStorage node status (`drivers/volume/portworx`'s `mapNodeStatus`).
/// `STATUS_NONE` is Online there and here; every status the table does not name is Offline.
pub fn status_of(status: Status) -> NodeStatus {
    match status {
        Status::None | Status::Ok => NodeStatus::Online,
        Status::StorageDown | Status::Poolmaintenance => NodeStatus::StorageDown,
        Status::StorageDegraded | Status::StorageRebalance | Status::StorageDriveReplace => NodeStatus::Degraded,
        Status::Init
        | Status::Offline
        | Status::Error
        | Status::NotInQuorum
        | Status::NotInQuorumNoStorage
        | Status::Decommission
        | Status::Maintenance
        | Status::NeedsReboot
        | Status::Max => NodeStatus::Offline,
    }
}

/// Topology label keys, most specific first: the SDK node's scheduler topology, then the
/// Kubernetes Node's labels (GA keys before the beta ones Stork reads).
const ZONE_KEYS: [&str; 3] =
    ["topology.kubernetes.io/zone", "topology.portworx.io/zone", "failure-domain.beta.kubernetes.io/zone"];
const REGION_KEYS: [&str; 3] =
    ["topology.kubernetes.io/region", "topology.portworx.io/region", "failure-domain.beta.kubernetes.io/region"];

/// A driver node from an SDK node. Failure domains come from the node's scheduler topology
/// labels; what those lack comes from the labels of the Kubernetes node it runs on (`kube`,
/// found by scheduler node name), with the rack under `rack_label` or Stork's `px/rack`.
pub fn driver_node(n: &StorageNode, kube: Option<&Node>, rack_label: &str) -> DriverNode {
    let topology = n.scheduler_topology.as_ref().map(|t| &t.labels);
    let kube_labels = kube.and_then(|k| k.metadata.labels.as_ref());
    let pick = |keys: &[&str]| {
        [topology, kube_labels]
            .into_iter()
            .flatten()
            .find_map(|labels: &BTreeMap<String, String>| keys.iter().find_map(|k| labels.get(*k)).cloned())
            .unwrap_or_default()
    };
    let topology_rack = topology.and_then(|t| t.get("topology.portworx.io/rack").cloned());
    let mut ips: Vec<String> = Vec::with_capacity(2);
    for ip in [&n.mgmt_ip, &n.data_ip] {
        if !ip.is_empty() && !ips.contains(ip) {
            ips.push(ip.clone());
        }
    }
    DriverNode {
        id: n.id.clone(),
        name: n.scheduler_node_name.clone(),
        hostname: n.hostname.to_lowercase(),
        ips,
        rack: topology_rack.unwrap_or_else(|| pick(&[rack_label, "px/rack"])),
        zone: pick(&ZONE_KEYS),
        region: pick(&REGION_KEYS),
        status: status_of(Status::try_from(n.status).unwrap_or(Status::Max)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::openstorage::proto::SchedulerTopology;

    /// Every value of the proto's `Status`, with the status Stork gives it.
    #[test]
    fn node_statuses_map_as_stork_maps_them() {
        use NodeStatus::*;
        let table = [
            (Status::None, Online),
            (Status::Init, Offline),
            (Status::Ok, Online),
            (Status::Offline, Offline),
            (Status::Error, Offline),
            (Status::NotInQuorum, Offline),
            (Status::Decommission, Offline),
            (Status::Maintenance, Offline),
            (Status::StorageDown, StorageDown),
            (Status::StorageDegraded, Degraded),
            (Status::NeedsReboot, Offline),
            (Status::StorageRebalance, Degraded),
            (Status::StorageDriveReplace, Degraded),
            (Status::NotInQuorumNoStorage, Offline),
            (Status::Poolmaintenance, StorageDown),
            (Status::Max, Offline),
        ];
        // The table covers the enum: a status added to the proto must be placed here too.
        let all: Vec<i32> = (0..=64).filter(|v| Status::try_from(*v).is_ok()).collect();
        assert_eq!(all, table.iter().map(|(s, _)| *s as i32).collect::<Vec<_>>());
        for (status, want) in table {
            assert_eq!(status_of(status), want, "{}", status.as_str_name());
        }
    }

    fn sdk_node() -> StorageNode {
        StorageNode {
            id: "px-1".into(),
            scheduler_node_name: "n1".into(),
            hostname: "N1.Example.com".into(),
            mgmt_ip: "10.0.0.1".into(),
            data_ip: "10.0.0.1".into(),
            status: Status::StorageDown as i32,
            ..StorageNode::default()
        }
    }

    #[test]
    fn a_node_keeps_its_ids_once_and_its_host_name_in_lower_case() {
        let node = driver_node(&sdk_node(), None, "px/rack");
        assert_eq!((node.id.as_str(), node.name.as_str(), node.hostname.as_str()), ("px-1", "n1", "n1.example.com"));
        assert_eq!(node.ips, ["10.0.0.1"]);
        assert_eq!(node.status, NodeStatus::StorageDown);
        assert_eq!((node.rack.as_str(), node.zone.as_str(), node.region.as_str()), ("", "", ""));
        let unknown = StorageNode { status: 99, ..sdk_node() };
        assert_eq!(driver_node(&unknown, None, "px/rack").status, NodeStatus::Offline);
    }

    #[test]
    fn failure_domains_come_from_the_sdk_topology_before_the_kubernetes_node() {
        let mut kube = Node::default();
        kube.metadata.labels = Some(BTreeMap::from([
            ("px/rack".to_string(), "r-kube".to_string()),
            ("failure-domain.beta.kubernetes.io/zone".to_string(), "z-beta".to_string()),
            ("topology.kubernetes.io/region".to_string(), "eu".to_string()),
        ]));
        let node = driver_node(&sdk_node(), Some(&kube), "px/rack");
        assert_eq!((node.rack.as_str(), node.zone.as_str(), node.region.as_str()), ("r-kube", "z-beta", "eu"));
        let topology = SchedulerTopology {
            labels: [("topology.portworx.io/zone", "z-px"), ("topology.portworx.io/rack", "r-px")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
        };
        let with_topology = StorageNode { scheduler_topology: Some(topology), ..sdk_node() };
        let node = driver_node(&with_topology, Some(&kube), "px/rack");
        assert_eq!((node.rack.as_str(), node.zone.as_str(), node.region.as_str()), ("r-px", "z-px", "eu"));
    }
}
