//! Storage drivers: the trait every storage system plugs in through, and the pod-volume
//! resolution shared by all of them.
//!
//! Driver methods answer from the driver's own cache: they are called on request paths.

pub mod claims;
pub mod csi;
mod inventory;
pub mod mock;
pub mod node_index;
pub mod openstorage;
mod snapshots;
mod types;

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::api::{
    core::v1::{PersistentVolume, PersistentVolumeClaim},
    storage::v1::StorageClass,
};

pub use inventory::{NodeIdentity, NodeInventory};
pub use snapshots::{DriverSnapshot, Progress, SnapshotDriver, SnapshotError, SnapshotState};
pub use types::{DriverNode, NodeStatus, PodVolume, PodVolumes, Volume};

use crate::cluster::{ClusterView, pod::PodFacts};

/// Errors from drivers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The driver cannot answer right now (not loaded, control plane unreachable).
    #[error("storage driver {driver} is unavailable: {reason}")]
    Unavailable {
        /// Driver name.
        driver: String,
        /// Why.
        reason: String,
    },
    /// The mock topology file could not be read.
    #[error("failed to read mock topology {path}")]
    ReadTopology {
        /// The file.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The mock topology file is invalid.
    #[error("failed to parse mock topology {path}: {message}")]
    Topology {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The mock driver's snapshot state file could not be read.
    #[error("failed to read mock snapshot state {path}")]
    ReadState {
        /// The file.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The mock driver's snapshot state file is invalid.
    #[error("failed to parse mock snapshot state {path}: {message}")]
    State {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Why a pod's volumes could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumesError {
    /// A claim the pod names is not in the cache.
    #[error("pvc {claim} (pod volume {volume}) was not found")]
    PvcNotFound {
        /// `namespace/name`.
        claim: String,
        /// The pod volume that names it.
        volume: String,
    },
    /// A driver claim is not bound and its class binds immediately.
    #[error("pvc {claim} is pending: waiting for it to be bound")]
    PvcPending {
        /// `namespace/name`.
        claim: String,
    },
    /// The driver could not answer.
    #[error("{0}")]
    Driver(String),
}

/// A storage system as stork sees it.
pub trait Driver: Send + Sync + 'static {
    /// Short name for logs and metrics.
    fn name(&self) -> &str;

    /// Whether this driver provisions volumes for a StorageClass provisioner or CSI driver name.
    fn owns_provisioner(&self, provisioner: &str) -> bool;

    /// The node inventory, from the driver's cache.
    fn nodes(&self) -> Result<Arc<NodeInventory>, Error>;

    /// The driver volume behind a bound PV; `None` if the driver does not know it.
    fn volume(&self, pv: &PersistentVolume) -> Result<Option<Arc<Volume>>, Error>;

    /// Name prefix of the driver's own CSI controller pods, which are placed on any healthy
    /// driver node instead of by volume locality.
    fn csi_pod_prefix(&self) -> Option<&str> {
        None
    }

    /// Whether a pod of this name is one of the driver's own CSI controller pods.
    fn is_csi_pod(&self, pod_name: &str) -> bool {
        self.csi_pod_prefix().is_some_and(|p| !p.is_empty() && pod_name.starts_with(p))
    }

    /// Where the driver's claim index is published ([`claims`]), when it keeps one; such a
    /// driver calls [`claims::ClaimIndexSlot::volumes_changed`] whenever [`Self::volume`] may
    /// answer differently for an unchanged PV.
    fn claim_index(&self) -> Option<&claims::ClaimIndexSlot> {
        None
    }

    /// Snapshot actions, when the driver supports snapshots.
    fn snapshots(&self) -> Option<&dyn SnapshotDriver> {
        None
    }

    /// Why the driver's current configuration was refused while an older one keeps serving
    /// (shown by `/readyz`); `None` when the configuration in force is the latest.
    fn config_problem(&self) -> Option<String> {
        None
    }

    /// Whether a PVC is this driver's: its class's provisioner, its PV's CSI driver, or the
    /// provisioner the PV controller assigned (GA or beta annotation). A claim restored from a
    /// snapshot (`stork-snapshot`) belongs to a driver that takes snapshots, as in Stork, so
    /// its pods are routed to stork before the claim is bound.
    fn owns_pvc(&self, pvc: &PersistentVolumeClaim, cluster: &ClusterView) -> bool {
        owns_claim(self, pvc, cluster.class_of(pvc).as_deref(), || bound_pv(pvc, cluster))
    }

    /// Whether claims of this class are this driver's: its provisioner, or `stork-snapshot`
    /// (restores from snapshots) when the driver takes snapshots.
    fn owns_class(&self, class: &StorageClass) -> bool {
        self.owns_provisioner(&class.provisioner)
            || (class.provisioner == crate::knobs::SNAPSHOT_PROVISIONER && self.snapshots().is_some())
    }

    /// Whether a PV is this driver's (its CSI driver name).
    fn owns_pv(&self, pv: &PersistentVolume) -> bool {
        pv.spec.as_ref().and_then(|s| s.csi.as_ref()).is_some_and(|c| self.owns_provisioner(&c.driver))
    }
}

/// [`Driver::owns_pvc`] with the claim's class already looked up and its PV looked up only
/// when the class and annotations do not decide.
fn owns_claim<D: Driver + ?Sized>(
    driver: &D,
    pvc: &PersistentVolumeClaim,
    class: Option<&StorageClass>,
    pv: impl FnOnce() -> Option<Arc<PersistentVolume>>,
) -> bool {
    if class.is_some_and(|class| driver.owns_class(class)) {
        return true;
    }
    let annotated = pvc.metadata.annotations.as_ref().is_some_and(|a| {
        ["volume.kubernetes.io/storage-provisioner", "volume.beta.kubernetes.io/storage-provisioner"]
            .iter()
            .filter_map(|k| a.get(*k))
            .any(|p| driver.owns_provisioner(p))
    });
    annotated || pv().is_some_and(|pv| driver.owns_pv(&pv))
}

fn bound_pv(pvc: &PersistentVolumeClaim, cluster: &ClusterView) -> Option<Arc<PersistentVolume>> {
    let name = pvc.spec.as_ref()?.volume_name.as_deref().filter(|n| !n.is_empty())?;
    cluster.pv(name)
}

fn binds_on_first_consumer(class: &StorageClass) -> bool {
    class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
}

/// What one claim means for placement.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Another driver's claim (or no driver's): no constraint from stork.
    Foreign,
    /// Unbound, of a `WaitForFirstConsumer` class.
    PendingWffc,
    /// Unbound, of a class that binds immediately.
    Pending,
    /// Bound to a driver volume.
    Bound {
        /// The volume (without replicas when the driver does not know it).
        volume: Arc<Volume>,
        /// Effective knobs (see [`pod_volumes`]).
        labels: BTreeMap<String, String>,
    },
}

/// Resolves one cached claim from cached objects and the driver's cache.
pub(crate) fn classify(
    driver: &dyn Driver,
    cluster: &ClusterView,
    pvc: &PersistentVolumeClaim,
) -> Result<Outcome, VolumesError> {
    // The class and the PV are looked up once (the PV is rebuilt from the cache each time).
    let class = cluster.class_of(pvc);
    let pv = bound_pv(pvc, cluster);
    if !owns_claim(driver, pvc, class.as_deref(), || pv.clone()) {
        return Ok(Outcome::Foreign);
    }
    let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let Some(pv) = pv.filter(|_| bound) else {
        let wffc = class.as_deref().is_some_and(binds_on_first_consumer);
        return Ok(if wffc { Outcome::PendingWffc } else { Outcome::Pending });
    };
    let vol = driver.volume(&pv).map_err(|e| VolumesError::Driver(e.to_string()))?;
    let volume = vol.unwrap_or_else(|| {
        tracing::debug!(pv = pv.metadata.name.as_deref().unwrap_or(""), "volume unknown to the driver");
        Arc::new(Volume { id: pv.metadata.name.clone().unwrap_or_default(), ..Volume::default() })
    });
    // Only knobs are kept: a claim's annotations are mostly the PV controller's and
    // kubectl's, and 50,000 indexed claims must not hold a copy of them.
    let knob = |(k, v): (&String, &String)| k.starts_with(crate::knobs::PREFIX).then(|| (k.clone(), v.clone()));
    let mut labels: BTreeMap<String, String> =
        class.as_ref().and_then(|c| c.parameters.as_ref()).into_iter().flatten().filter_map(knob).collect();
    labels.extend(volume.labels.iter().filter_map(knob));
    labels.extend(pvc.metadata.annotations.iter().flatten().filter_map(knob));
    Ok(Outcome::Bound { volume, labels })
}

/// What a claim the cache does not hold means. A generic ephemeral volume's claim the
/// controller has not made (or stork has not cached) yet follows from its template's class;
/// any other missing claim is [`VolumesError::PvcNotFound`].
fn uncreated(
    driver: &dyn Driver,
    cluster: &ClusterView,
    c: &crate::cluster::pod::PodClaim<'_>,
    claim: &str,
) -> Result<Outcome, VolumesError> {
    let Some(class) = c.ephemeral_class else {
        return Err(VolumesError::PvcNotFound { claim: claim.to_string(), volume: c.volume.to_string() });
    };
    Ok(match cluster.template_class(class) {
        Some(class) if driver.owns_class(&class) && binds_on_first_consumer(&class) => Outcome::PendingWffc,
        Some(class) if driver.owns_class(&class) => Outcome::Pending,
        // Another driver's class, or one stork does not know: no constraint from stork.
        _ => Outcome::Foreign,
    })
}

/// Resolves the driver volumes a pod uses: from the driver's claim index ([`claims`]) where it
/// is current, else from cached objects and the driver's cache.
///
/// Claims of other drivers are skipped. An unbound claim of a `WaitForFirstConsumer` class is
/// a pending volume; any other unbound claim is [`VolumesError::PvcPending`]. A bound volume the
/// driver does not know is kept without replicas, so it neither blocks nor steers placement.
/// Effective labels are the knobs (keys under [`crate::knobs::PREFIX`]) among StorageClass
/// parameters, overlaid by the volume's labels, overlaid by the PVC's annotations, so every
/// knob can be set at any of the three levels.
pub fn pod_volumes(driver: &dyn Driver, cluster: &ClusterView, pod: &PodFacts) -> Result<PodVolumes, VolumesError> {
    let ns = pod.metadata.namespace.as_str();
    let index = driver.claim_index().and_then(|slot| slot.current(cluster));
    let mut out = PodVolumes::default();
    for c in pod.claims() {
        let claim = crate::cluster::claim_key(ns, &c.name);
        let resolved;
        let outcome = match index.as_deref().and_then(|i| i.lookup(cluster, &claim)) {
            Some(outcome) => outcome,
            None => {
                resolved = match cluster.pvc(ns, &c.name) {
                    Some(pvc) => classify(driver, cluster, &pvc)?,
                    None => uncreated(driver, cluster, &c, &claim)?,
                };
                &resolved
            }
        };
        match outcome {
            Outcome::Foreign => {}
            Outcome::PendingWffc => out.pending_wffc.push(claim),
            Outcome::Pending => return Err(VolumesError::PvcPending { claim }),
            Outcome::Bound { volume, labels } => {
                out.bound.push(PodVolume { claim, volume: volume.clone(), labels: labels.clone() })
            }
        }
    }
    Ok(out)
}

/// Counts `driver`'s nodes by status for `stork_driver_nodes` (every status, zeros included;
/// nothing while the driver cannot list its nodes).
pub fn census(driver: Arc<dyn Driver>) -> crate::metrics::Census {
    Box::new(move || {
        let Ok(inventory) = driver.nodes() else { return Vec::new() };
        let statuses = [NodeStatus::Online, NodeStatus::StorageDown, NodeStatus::Degraded, NodeStatus::Offline];
        let mut counts = statuses.map(|s| (s, 0i64));
        for node in inventory.nodes() {
            if let Some(c) = counts.iter_mut().find(|(s, _)| *s == node.status) {
                c.1 += 1;
            }
        }
        counts.into_iter().map(|(s, n)| (s.as_str(), n)).collect()
    })
}

/// Whether a claim is annotated as being restored in place (value exactly `"true"`).
pub fn restore_in_progress(pvc: &PersistentVolumeClaim) -> bool {
    pvc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::knobs::RESTORE_IN_PROGRESS))
        .is_some_and(|v| v == "true")
}
