//! Snapshots through the SDK. A snapshot is an SDK volume named with the id stork chose (its
//! `source.parent` is the volume it was taken of), so a retry finds the one taken before a
//! crash by name; a restored volume is a clone of it, named after its PV.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{CSIPersistentVolumeSource, PersistentVolumeSpec};

use super::{
    OsdDriver, OsdError,
    proto::{
        SdkVolumeCloneRequest, SdkVolumeDeleteRequest, SdkVolumeInspectRequest, SdkVolumeInspectWithFiltersRequest,
        SdkVolumeSnapshotCreateRequest, SdkVolumeSnapshotRestoreRequest, Volume as SdkVolume,
    },
};
use crate::driver::{DriverSnapshot, Progress, SnapshotDriver, SnapshotError, SnapshotState, Volume};

/// The CSI driver restored volumes' PVs name.
const PV_DRIVER: &str = "pxd.portworx.com";

/// In-place restores this process ran. The SDK's restore returns when it is done, so a record
/// is the outcome; after a restart there is none, and the restore controller starts it again.
#[derive(Debug, Default)]
pub(super) struct OsdSnapshots {
    restores: Mutex<HashMap<String, Progress>>,
}

impl From<OsdError> for SnapshotError {
    fn from(e: OsdError) -> Self {
        match e {
            OsdError::NotFound(m) => Self::VolumeNotFound(m),
            OsdError::Invalid(m) => Self::Invalid(m),
            other => Self::Failed(other.to_string()),
        }
    }
}

fn rfc3339(ts: Option<&prost_types::Timestamp>) -> String {
    let at = ts.and_then(|t| jiff::Timestamp::new(t.seconds, t.nanos).ok()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    at.to_string()
}

fn parent_of(v: &SdkVolume) -> &str {
    v.source.as_ref().map_or("", |s| s.parent.as_str())
}

impl OsdDriver {
    /// The SDK volume (or snapshot) named `name`, if any.
    async fn by_name(&self, name: &str) -> Result<Option<SdkVolume>, OsdError> {
        let sdk = self.sdk()?;
        let request =
            sdk.request(SdkVolumeInspectWithFiltersRequest { name: name.to_string(), ..Default::default() })?;
        let found = sdk
            .volumes()
            .inspect_with_filters(request)
            .await
            .map_err(|s| self.count("volume_inspect", sdk.error("OpenStorageVolume/InspectWithFilters", &s)))?
            .into_inner()
            .volumes;
        // A name filter may match more loosely than equality on some servers.
        Ok(found.into_iter().filter_map(|r| r.volume).find(|v| v.locator.as_ref().is_some_and(|l| l.name == name)))
    }

    /// The SDK volume with id `id`, if any.
    async fn by_id(&self, id: &str) -> Result<Option<SdkVolume>, OsdError> {
        let sdk = self.sdk()?;
        let request = sdk.request(SdkVolumeInspectRequest { volume_id: id.to_string(), ..Default::default() })?;
        match sdk.volumes().inspect(request).await {
            Ok(r) => Ok(r.into_inner().volume),
            Err(s) => match sdk.error("OpenStorageVolume/Inspect", &s) {
                OsdError::NotFound(_) => Ok(None),
                e => Err(self.count("volume_inspect", e)),
            },
        }
    }

    /// A volume by id, else by name.
    async fn by_id_or_name(&self, key: &str) -> Result<Option<SdkVolume>, OsdError> {
        match self.by_id(key).await? {
            Some(v) => Ok(Some(v)),
            None => self.by_name(key).await,
        }
    }

    async fn delete_sdk_volume(&self, id: &str) -> Result<(), OsdError> {
        let sdk = self.sdk()?;
        let request = sdk.request(SdkVolumeDeleteRequest { volume_id: id.to_string() })?;
        match sdk.volumes().delete(request).await {
            Ok(_) => Ok(()),
            Err(s) => match sdk.error("OpenStorageVolume/Delete", &s) {
                OsdError::NotFound(_) => Ok(()),
                e => Err(self.count("volume_delete", e)),
            },
        }
    }

    fn snapshot_of(id: &str, v: &SdkVolume) -> DriverSnapshot {
        DriverSnapshot {
            id: id.to_string(),
            volume_id: parent_of(v).to_string(),
            state: SnapshotState::Ready,
            created: rfc3339(v.ctime.as_ref()),
        }
    }

    fn restores(&self) -> std::sync::MutexGuard<'_, HashMap<String, Progress>> {
        self.snapshots.restores.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl SnapshotDriver for OsdDriver {
    async fn create_snapshot(
        &self,
        id: &str,
        volume_id: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<DriverSnapshot, SnapshotError> {
        if let Some(existing) = self.by_name(id).await? {
            if parent_of(&existing) != volume_id {
                return Err(SnapshotError::Conflict(format!(
                    "an OpenStorage volume named {id} exists and is not a snapshot of {volume_id}"
                )));
            }
            return Ok(Self::snapshot_of(id, &existing));
        }
        let sdk = self.sdk()?;
        let request = sdk.request(SdkVolumeSnapshotCreateRequest {
            volume_id: volume_id.to_string(),
            name: id.to_string(),
            labels: labels.clone(),
        })?;
        let created = sdk.volumes().snapshot_create(request).await.map_err(|s| {
            match self.count("snapshot_create", sdk.error("OpenStorageVolume/SnapshotCreate", &s)) {
                OsdError::NotFound(_) => SnapshotError::VolumeNotFound(volume_id.to_string()),
                e => e.into(),
            }
        })?;
        let snapshot_id = created.into_inner().snapshot_id;
        let taken = self.by_id(&snapshot_id).await?.ok_or_else(|| {
            SnapshotError::Failed(format!("snapshot {snapshot_id} of {volume_id} vanished after it was taken"))
        })?;
        Ok(Self::snapshot_of(id, &taken))
    }

    async fn snapshot(&self, id: &str) -> Result<Option<DriverSnapshot>, SnapshotError> {
        Ok(self.by_name(id).await?.map(|v| Self::snapshot_of(id, &v)))
    }

    async fn delete_snapshot(&self, id: &str) -> Result<(), SnapshotError> {
        if let Some(v) = self.by_name(id).await? {
            self.delete_sdk_volume(&v.id).await?;
        }
        Ok(())
    }

    /// A clone of the snapshot named `volume_id`. The class's parameters are not used: a
    /// clone's replicas are placed by Portworx.
    async fn restore_volume(
        &self,
        snapshot_id: &str,
        volume_id: &str,
        _parameters: &BTreeMap<String, String>,
    ) -> Result<Volume, SnapshotError> {
        let snapshot =
            self.by_name(snapshot_id).await?.ok_or_else(|| SnapshotError::SnapshotNotFound(snapshot_id.to_string()))?;
        if let Some(existing) = self.by_name(volume_id).await? {
            if parent_of(&existing) != snapshot.id {
                return Err(SnapshotError::Conflict(format!(
                    "an OpenStorage volume named {volume_id} exists and was not restored from snapshot {snapshot_id}"
                )));
            }
            self.remember(&existing);
            return Ok(super::volumes::volume_of(&existing));
        }
        let sdk = self.sdk()?;
        let request = sdk.request(SdkVolumeCloneRequest {
            name: volume_id.to_string(),
            parent_id: snapshot.id.clone(),
            additional_labels: BTreeMap::new(),
        })?;
        // `clone` is the RPC's name, and also `Clone::clone` on the client.
        let cloned =
            super::proto::open_storage_volume_client::OpenStorageVolumeClient::clone(&mut sdk.volumes(), request)
                .await
                .map_err(|s| self.count("volume_clone", sdk.error("OpenStorageVolume/Clone", &s)))?
                .into_inner();
        let made = self.by_id(&cloned.volume_id).await?.ok_or_else(|| {
            SnapshotError::Failed(format!("volume {volume_id} restored from {snapshot_id} vanished after it was made"))
        })?;
        self.remember(&made);
        self.refresh_soon();
        Ok(super::volumes::volume_of(&made))
    }

    async fn delete_volume(&self, volume_id: &str) -> Result<(), SnapshotError> {
        if let Some(v) = self.by_id_or_name(volume_id).await? {
            self.delete_sdk_volume(&v.id).await?;
        }
        Ok(())
    }

    async fn start_in_place_restore(
        &self,
        restore_id: &str,
        volume_id: &str,
        snapshot_id: &str,
    ) -> Result<(), SnapshotError> {
        let snapshot =
            self.by_name(snapshot_id).await?.ok_or_else(|| SnapshotError::SnapshotNotFound(snapshot_id.to_string()))?;
        let sdk = self.sdk()?;
        let request = sdk.request(SdkVolumeSnapshotRestoreRequest {
            volume_id: volume_id.to_string(),
            snapshot_id: snapshot.id.clone(),
        })?;
        let outcome = match sdk.volumes().snapshot_restore(request).await {
            Ok(_) => Progress::Done,
            Err(s) => match self.count("snapshot_restore", sdk.error("OpenStorageVolume/SnapshotRestore", &s)) {
                // Retrying the call may work: leave no record, so the controller retries.
                e @ (OsdError::Unreachable { .. } | OsdError::AuthRejected { .. } | OsdError::Token { .. }) => {
                    return Err(e.into());
                }
                e => Progress::Failed(e.to_string()),
            },
        };
        self.restores().insert(restore_id.to_string(), outcome);
        Ok(())
    }

    async fn in_place_restore_status(&self, restore_id: &str) -> Result<Progress, SnapshotError> {
        self.restores().get(restore_id).cloned().ok_or_else(|| {
            SnapshotError::Invalid(format!("restore {restore_id} was not started by this stork process"))
        })
    }

    async fn cleanup_in_place_restore(&self, restore_id: &str) -> Result<(), SnapshotError> {
        self.restores().remove(restore_id);
        Ok(())
    }

    /// A Portworx CSI volume; the handle is the volume's id when stork has seen it.
    fn pv_source(&self, volume_id: &str) -> PersistentVolumeSpec {
        let handle = self.state.load().volumes.get(volume_id).map_or_else(|| volume_id.to_string(), |v| v.id.clone());
        PersistentVolumeSpec {
            csi: Some(CSIPersistentVolumeSource {
                driver: PV_DRIVER.to_string(),
                volume_handle: handle,
                ..CSIPersistentVolumeSource::default()
            }),
            ..PersistentVolumeSpec::default()
        }
    }
}
