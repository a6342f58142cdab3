//! Snapshots of CSI volumes through the Kubernetes CSI snapshot API (`snapshot.storage.k8s.io/v1`),
//! so stork's own `VolumeSnapshot` API and `stork-snapshot` restores work for CSI-owned claims.
//!
//! - A driver snapshot is a CSI `VolumeSnapshot` named by the caller's id, in the namespace of
//!   the snapshotted claim, labelled [`SNAPSHOT_ID_LABEL`] so that a restarted stork finds it
//!   with one list call. The CSI snapshot controller and the driver's csi-snapshotter take it.
//! - A restore cannot hand a CSI volume straight to stork: only the driver's external-provisioner
//!   restores, and only into a claim. So stork makes a helper claim
//!   `stork-restore-<volume id>` with the snapshot as `dataSource` (class from
//!   [`STORAGE_CLASS_PARAMETER`]), waits until it is bound, records the new volume's CSI source
//!   (ConfigMap [`RESTORES_CONFIGMAP`], then memory), turns the helper PV's reclaim policy to
//!   `Retain`, and deletes the helper claim and PV. The backing volume survives and
//!   [`SnapshotDriver::pv_source`] hands its handle to the PV stork's provisioner creates.
//! - Deleting such a volume goes back through the external-provisioner: stork creates a released
//!   PV `stork-delete-<volume id>` with the recorded handle, reclaim policy `Delete` and
//!   `pv.kubernetes.io/provisioned-by: <csi driver>`; the PV controller marks it released and the
//!   external-provisioner deletes the volume and that PV.
//! - CSI has no in-place restore: those calls are [`SnapshotError::Invalid`].
//!
//! Every call here comes from the leader's controllers, never a request path, so reading the API
//! server directly is fine. Decisions are the pure functions; [`CsiSnapshots`] fetches and acts.
//!
//! Layout: the client-side CSI kube types and the stored restore record are in `types`, the pure
//! snapshot builders, state mappings and name rules in `build`, the pure restore builders in
//! `build_restore`, and the restore's API side effects (helper claim, record store, clean-up) in
//! `restore`; this file holds [`CsiSnapshots`] and its [`SnapshotDriver`] implementation.

mod build;
mod build_restore;
mod restore;
mod types;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use k8s_openapi::{
    api::core::v1::{PersistentVolume, PersistentVolumeSpec},
    jiff::Timestamp,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
};

use self::{build::is_snapshot_id, build_restore::check_class};
pub use self::{
    build::{claim_of, csi_snapshot, driver_snapshot, is_label_key, is_object_name, restorable, state_of},
    build_restore::{
        class_fits, deleter_pv, helper_pvc, helper_state, parse_records, pv_source_of, record_from_pv, restore_request,
    },
    types::{
        CsiSnapshotError, CsiSnapshotSource, CsiVolumeSnapshot, CsiVolumeSnapshotContent, CsiVolumeSnapshotContentSpec,
        CsiVolumeSnapshotSpec, CsiVolumeSnapshotStatus, HelperState, RestoreRecord, RestoreRequest,
    },
};
use crate::{
    cluster::ClusterView,
    driver::{DriverSnapshot, Progress, SnapshotDriver, SnapshotError, Volume},
};

/// API group of the CSI snapshot resources.
pub const CSI_SNAPSHOT_GROUP: &str = "snapshot.storage.k8s.io";
/// Label on a CSI `VolumeSnapshot` stork made: the driver snapshot id (also its name).
pub const SNAPSHOT_ID_LABEL: &str = crate::knobs::SNAPSHOT_ID_ANNOTATION;
/// Annotation on a CSI `VolumeSnapshot` stork made: the PV (driver volume id) it was taken of.
pub const SNAPSHOT_VOLUME_ANNOTATION: &str = "stork.libopenstorage.org/snapshot-volume";
/// Restore StorageClass parameter (required): the CSI StorageClass the restored volume is
/// provisioned with. Its provisioner must be the CSI driver that took the snapshot, and it must
/// bind immediately (no pod ever uses the helper claim).
pub const STORAGE_CLASS_PARAMETER: &str = "csi.stork.libopenstorage.org/storage-class";
/// Restore StorageClass parameter: size of the restored volume (default: the snapshot's
/// `restoreSize`).
pub const SIZE_PARAMETER: &str = "csi.stork.libopenstorage.org/size";
/// Restore StorageClass parameter: comma-separated access modes of the helper claim (default
/// `ReadWriteOnce`).
pub const ACCESS_MODES_PARAMETER: &str = "csi.stork.libopenstorage.org/access-modes";
/// ConfigMap (in the namespace given to [`CsiSnapshots::new`]) recording each restored volume's
/// CSI source: data key = volume id, value = JSON.
pub const RESTORES_CONFIGMAP: &str = "stork-csi-restores";
/// Name prefix of the helper claim of a restore.
pub const HELPER_PREFIX: &str = "stork-restore-";
/// Name prefix of the PV through which a restored volume is deleted.
pub const DELETER_PREFIX: &str = "stork-delete-";
/// Label on a deleter PV: the restored volume id it deletes.
pub const RESTORED_VOLUME_LABEL: &str = "stork.libopenstorage.org/restored-volume";

const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
// csi-provisioner keeps the secret its DeleteVolume call needs in these PV annotations.
const DELETION_SECRET_ANNOTATION_PREFIX: &str = "volume.kubernetes.io/provisioner-deletion-secret";
const ACCESS_MODES: [&str; 4] = ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"];
const IN_PLACE_UNSUPPORTED: &str = "in-place restore is not supported by CSI drivers: restore into a new claim instead";

/// [`SnapshotDriver`] of the CSI driver, on top of `snapshot.storage.k8s.io/v1`.
pub struct CsiSnapshots {
    client: Client,
    cluster: ClusterView,
    snapshot_class: Option<String>,
    namespace: String,
    restore_timeout: Duration,
    /// Snapshot id → namespace of its CSI VolumeSnapshot.
    locations: Mutex<HashMap<String, String>>,
    /// Restored volume id → record; a cache of [`RESTORES_CONFIGMAP`].
    restores: Mutex<BTreeMap<String, RestoreRecord>>,
}

impl CsiSnapshots {
    /// Snapshots through `snapshot.storage.k8s.io/v1`. `snapshot_class` is the
    /// VolumeSnapshotClass (`None`: each CSI driver's default class); `namespace` holds the
    /// [`RESTORES_CONFIGMAP`] (stork's own); a helper claim unbound past `restore_timeout` turns
    /// the retry message into a pointer at its events.
    pub fn new(
        client: Client,
        cluster: ClusterView,
        snapshot_class: Option<String>,
        namespace: impl Into<String>,
        restore_timeout: Duration,
    ) -> Self {
        Self {
            client,
            cluster,
            snapshot_class: snapshot_class.filter(|c| !c.is_empty()),
            namespace: namespace.into(),
            restore_timeout,
            locations: Mutex::default(),
            restores: Mutex::default(),
        }
    }

    fn locations(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.locations.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn restores(&self) -> MutexGuard<'_, BTreeMap<String, RestoreRecord>> {
        self.restores.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Namespace of snapshot `id`: remembered, or (after a restart) found by its label.
    async fn namespace_of(&self, id: &str) -> Result<Option<String>, SnapshotError> {
        if let Some(ns) = self.locations().get(id) {
            return Ok(Some(ns.clone()));
        }
        if !is_snapshot_id(id) {
            return Ok(None); // stork never made a snapshot it could not name and label
        }
        let api = Api::<CsiVolumeSnapshot>::all(self.client.clone());
        let list = api
            .list(&ListParams::default().labels(&format!("{SNAPSHOT_ID_LABEL}={id}")))
            .await
            .map_err(|e| api_failure("list CSI VolumeSnapshots", e))?;
        let ns = list.items.iter().find(|s| s.metadata.name.as_deref() == Some(id)).and_then(|s| s.namespace());
        if let Some(ns) = &ns {
            self.locations().insert(id.to_string(), ns.clone());
        }
        Ok(ns)
    }

    /// The volume a snapshot was taken of: its annotation, else the claim's current PV.
    fn volume_of(&self, vs: &CsiVolumeSnapshot) -> String {
        if let Some(v) = vs.annotations().get(SNAPSHOT_VOLUME_ANNOTATION) {
            return v.clone();
        }
        let claim = vs.spec.source.persistent_volume_claim_name.as_deref().unwrap_or_default();
        self.cluster
            .pvc(&vs.namespace().unwrap_or_default(), claim)
            .and_then(|c| c.spec.as_ref()?.volume_name.clone())
            .unwrap_or_default()
    }
}

#[async_trait]
impl SnapshotDriver for CsiSnapshots {
    async fn create_snapshot(
        &self,
        id: &str,
        volume_id: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<DriverSnapshot, SnapshotError> {
        if !is_snapshot_id(id) {
            return Err(SnapshotError::Invalid(format!(
                "snapshot id {id:?} cannot name a CSI VolumeSnapshot: it must be a DNS label of at most 63 characters"
            )));
        }
        let pv = self.cluster.pv(volume_id).ok_or_else(|| SnapshotError::VolumeNotFound(volume_id.to_string()))?;
        let (ns, claim) = claim_of(&pv)?;
        let want = csi_snapshot(id, &ns, &claim, volume_id, self.snapshot_class.as_deref(), labels);
        let api = Api::<CsiVolumeSnapshot>::namespaced(self.client.clone(), &ns);
        let what = format!("create CSI VolumeSnapshot {ns}/{id}");
        let vs = match api.create(&PostParams::default(), &want).await {
            Ok(vs) => {
                tracing::info!(%id, %ns, %claim, class = ?self.snapshot_class, "CSI VolumeSnapshot created");
                vs
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let vs = api.get_opt(id).await.map_err(|e| api_failure(&what, e))?.ok_or_else(|| {
                    SnapshotError::Failed(format!("CSI VolumeSnapshot {ns}/{id} was deleted while being created"))
                })?;
                let source = vs.spec.source.persistent_volume_claim_name.as_deref();
                if source != Some(claim.as_str()) {
                    return Err(SnapshotError::Conflict(format!(
                        "CSI VolumeSnapshot {ns}/{id} exists already, of claim {}",
                        source.unwrap_or("(none)")
                    )));
                }
                vs
            }
            Err(e) => return Err(api_failure(&what, e)),
        };
        self.locations().insert(id.to_string(), ns);
        Ok(driver_snapshot(&vs, volume_id))
    }

    async fn snapshot(&self, id: &str) -> Result<Option<DriverSnapshot>, SnapshotError> {
        let Some(ns) = self.namespace_of(id).await? else { return Ok(None) };
        let api = Api::<CsiVolumeSnapshot>::namespaced(self.client.clone(), &ns);
        let vs = api.get_opt(id).await.map_err(|e| api_failure(&format!("read CSI VolumeSnapshot {ns}/{id}"), e))?;
        match vs {
            Some(vs) => Ok(Some(driver_snapshot(&vs, &self.volume_of(&vs)))),
            None => {
                self.locations().remove(id);
                Ok(None)
            }
        }
    }

    async fn delete_snapshot(&self, id: &str) -> Result<(), SnapshotError> {
        let Some(ns) = self.namespace_of(id).await? else { return Ok(()) };
        let api = Api::<CsiVolumeSnapshot>::namespaced(self.client.clone(), &ns);
        match api.delete(id, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(%id, %ns, "CSI VolumeSnapshot deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(api_failure(&format!("delete CSI VolumeSnapshot {ns}/{id}"), e)),
        }
        self.locations().remove(id);
        Ok(())
    }

    async fn restore_volume(
        &self,
        snapshot_id: &str,
        volume_id: &str,
        parameters: &BTreeMap<String, String>,
    ) -> Result<Volume, SnapshotError> {
        let restored = Volume { id: volume_id.to_string(), ..Volume::default() };
        if let Some((_, rec)) = self.record(volume_id, false).await? {
            if rec.snapshot != snapshot_id {
                return Err(SnapshotError::Conflict(format!(
                    "volume {volume_id} was restored from snapshot {}, not {snapshot_id}",
                    rec.snapshot
                )));
            }
            self.finish_restore(volume_id, &rec).await?;
            return Ok(restored);
        }
        let ns =
            self.namespace_of(snapshot_id).await?.ok_or_else(|| SnapshotError::SnapshotNotFound(snapshot_id.into()))?;
        let read = |what: &str, e| api_failure(&format!("read {what} of snapshot {ns}/{snapshot_id}"), e);
        let vs = Api::<CsiVolumeSnapshot>::namespaced(self.client.clone(), &ns)
            .get_opt(snapshot_id)
            .await
            .map_err(|e| read("the CSI VolumeSnapshot", e))?
            .ok_or_else(|| SnapshotError::SnapshotNotFound(snapshot_id.into()))?;
        let content_name = vs.status.as_ref().and_then(|s| s.bound_volume_snapshot_content_name.clone());
        let content = match content_name.filter(|n| !n.is_empty()) {
            Some(n) => Api::<CsiVolumeSnapshotContent>::all(self.client.clone())
                .get_opt(&n)
                .await
                .map_err(|e| read("the content", e))?,
            None => None,
        };
        let content = restorable(&vs, content.as_ref())?;
        let req = restore_request(parameters, vs.status.as_ref().and_then(|s| s.restore_size.as_ref()), content)?;
        check_class(&self.cluster, &req.storage_class, &content.spec.driver)?;
        let claim = self.helper_claim(&ns, volume_id, snapshot_id, &req).await?;
        let pv_name = match helper_state(&claim, snapshot_id, Timestamp::now(), self.restore_timeout) {
            HelperState::Bound(pv) => pv,
            HelperState::Waiting(msg) => return Err(SnapshotError::Failed(msg)),
            HelperState::Foreign(msg) => return Err(SnapshotError::Conflict(msg)),
        };
        let pv = Api::<PersistentVolume>::all(self.client.clone())
            .get_opt(&pv_name)
            .await
            .map_err(|e| api_failure(&format!("read restored PV {pv_name}"), e))?
            .ok_or_else(|| {
                SnapshotError::Failed(format!("restore in progress: waiting for PV {pv_name} to be seen"))
            })?;
        let rec = record_from_pv(snapshot_id, &claim, &pv)?;
        // Recorded before the helper objects go: after that, the record is the only trace of the
        // volume's handle.
        self.save(volume_id, &rec).await?;
        self.finish_restore(volume_id, &rec).await?;
        tracing::info!(volume = %volume_id, snapshot = %snapshot_id, driver = %rec.csi.driver,
            handle = %rec.csi.volume_handle, "CSI volume restored");
        Ok(restored)
    }

    async fn delete_volume(&self, volume_id: &str) -> Result<(), SnapshotError> {
        // The stork provisioner may pass the PV's CSI handle instead of the volume id.
        let Some((id, rec)) = self.record(volume_id, true).await? else {
            tracing::warn!(volume = %volume_id, "no CSI restore record for this volume: its backing volume, if any, \
                must be removed through the storage system");
            return Ok(());
        };
        let pv = deleter_pv(&id, &rec);
        let name = pv.metadata.name.clone().unwrap_or_default();
        let api = Api::<PersistentVolume>::all(self.client.clone());
        match api.create(&PostParams::default(), &pv).await {
            Ok(_) => {
                tracing::info!(volume = %id, pv = %name, driver = %rec.csi.driver, handle = %rec.csi.volume_handle,
                "released PV created for the CSI provisioner to delete the volume")
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let existing = api.get_opt(&name).await.map_err(|e| api_failure(&format!("read PV {name}"), e))?;
                let handle = existing.as_ref().and_then(|p| p.spec.as_ref()?.csi.as_ref()).map(|c| &c.volume_handle);
                if existing.is_some() && handle != Some(&rec.csi.volume_handle) {
                    return Err(SnapshotError::Conflict(format!("PV {name} exists already, for another volume")));
                }
            }
            Err(e) => return Err(api_failure(&format!("create PV {name} to delete volume {id}"), e)),
        }
        self.forget(&id).await
    }

    async fn start_in_place_restore(&self, _: &str, _: &str, _: &str) -> Result<(), SnapshotError> {
        Err(SnapshotError::Invalid(IN_PLACE_UNSUPPORTED.into()))
    }

    async fn in_place_restore_status(&self, _: &str) -> Result<Progress, SnapshotError> {
        Err(SnapshotError::Invalid(IN_PLACE_UNSUPPORTED.into()))
    }

    async fn cleanup_in_place_restore(&self, _: &str) -> Result<(), SnapshotError> {
        Ok(())
    }

    fn pv_source(&self, volume_id: &str) -> PersistentVolumeSpec {
        let rec = self.restores().get(volume_id).cloned();
        if rec.is_none() {
            tracing::warn!(volume = %volume_id, "no CSI restore record for this volume: its PV gets no driver");
        }
        pv_source_of(volume_id, rec.as_ref())
    }
}

/// A kube error as a snapshot error: a rejected object cannot work by retrying, anything else
/// may (RBAC can be fixed, the API server can come back).
fn api_failure(action: &str, e: kube::Error) -> SnapshotError {
    match &e {
        kube::Error::Api(s) if s.code == 400 || s.code == 422 => {
            SnapshotError::Invalid(format!("failed to {action}: {}", s.message))
        }
        kube::Error::Api(s) if s.code == 403 => {
            SnapshotError::Failed(format!("failed to {action}: stork is not allowed to: {}", s.message))
        }
        // the API server's words for a resource type it does not serve
        kube::Error::Api(s) if s.code == 404 && s.message.contains("could not find the requested resource") => {
            SnapshotError::Failed(format!(
                "failed to {action}: {} (is the CSI snapshot controller with its {CSI_SNAPSHOT_GROUP} CRDs installed?)",
                s.message
            ))
        }
        _ => SnapshotError::Failed(format!("failed to {action}: {e}")),
    }
}

#[cfg(test)]
mod tests;
