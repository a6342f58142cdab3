//! The mock driver's dynamic provisioning, played by the test the way a CSI driver's
//! external-provisioner does it: a `WaitForFirstConsumer` claim of the mock provisioner gets a
//! volume once kube-scheduler has written the node it picked (`volume.kubernetes.io/selected-node`).
//! The volume's replicas are that node and the one the test pairs it with; the PV is pre-bound to
//! the claim, and the real PV controller completes the binding.
//!
//! stork itself provisions nothing for the mock driver (only restores from snapshots), so this
//! stands in for the storage system, as the topology file does.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::{Cluster, objects::PROVISIONER};

/// The annotation kube-scheduler's VolumeBinding plugin writes on a WFFC claim.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// Provisions the WFFC claims of namespace `ns` until the returned task is aborted (or its
/// runtime ends). `partner` names the second replica for a volume on a selected node.
pub fn spawn(
    cluster: &'static Cluster,
    client: Client,
    ns: &str,
    partner: impl Fn(&str) -> String + Send + Sync + 'static,
) -> JoinHandle<()> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pvs: Api<PersistentVolume> = Api::all(client);
    tokio::spawn(async move {
        loop {
            if let Ok(list) = claims.list(&ListParams::default()).await {
                for claim in list {
                    if let Err(e) = provision(cluster, &pvs, &claim, &partner).await {
                        eprintln!("[provisioner] {:?}: {e:#}", claim.metadata.name);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await; // poll: a provisioner's resync
        }
    })
}

async fn provision(
    cluster: &Cluster,
    pvs: &Api<PersistentVolume>,
    claim: &PersistentVolumeClaim,
    partner: &impl Fn(&str) -> String,
) -> anyhow::Result<()> {
    let annotations = claim.metadata.annotations.clone().unwrap_or_default();
    let ours = annotations.get("volume.kubernetes.io/storage-provisioner").is_some_and(|p| p == PROVISIONER);
    let spec = claim.spec.clone().unwrap_or_default();
    let (Some(node), true, None) = (annotations.get(SELECTED_NODE), ours, spec.volume_name.as_deref()) else {
        return Ok(());
    };
    let uid = claim.metadata.uid.clone().unwrap_or_default();
    let name = format!("pvc-{uid}");
    if pvs.get_opt(&name).await?.is_some() {
        return Ok(());
    }
    let replicas = [node.clone(), partner(node)];
    cluster.update_topology(|t| {
        let volumes = t["volumes"].as_array_mut().expect("volumes list");
        if !volumes.iter().any(|v| v["id"] == name) {
            volumes.push(json!({"id": name, "replicas": replicas}));
        }
    })?;
    let pv = json!({
        "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {
            "storageClassName": spec.storage_class_name, "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain",
            "claimRef": {"namespace": claim.metadata.namespace, "name": claim.metadata.name, "uid": uid},
            "csi": {"driver": PROVISIONER, "volumeHandle": name}
        }
    });
    pvs.create(&PostParams::default(), &serde_json::from_value(pv)?).await?;
    Ok(())
}

/// The replicas of the volume bound to each claim of `ns`, by claim name (from the topology
/// the harness wrote).
pub async fn replicas_by_claim(cluster: &Cluster, client: &Client, ns: &str) -> BTreeMap<String, Vec<String>> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let topology = cluster.topology();
    let mut out = BTreeMap::new();
    for c in claims.list(&ListParams::default()).await.expect("list claims") {
        let Some(pv) = c.spec.and_then(|s| s.volume_name) else { continue };
        let volume = topology["volumes"].as_array().into_iter().flatten().find(|v| v["id"] == pv.as_str());
        let replicas = volume
            .and_then(|v| v["replicas"].as_array())
            .map(|r| r.iter().filter_map(|n| n.as_str().map(String::from)).collect())
            .unwrap_or_default();
        out.insert(c.metadata.name.unwrap_or_default(), replicas);
    }
    out
}
