//! The API side of a restore: the helper claim, the record store (ConfigMap
//! [`RESTORES_CONFIGMAP`] with an in-memory cache) and the clean-up that keeps the restored
//! volume while the helper claim and PV go.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions},
};

use super::{
    CsiSnapshots, HELPER_PREFIX, RESTORES_CONFIGMAP, RestoreRecord, RestoreRequest, api_failure,
    build_restore::{helper_pvc, is_helper_pv, lookup, parse_records, reclaim_policy},
};
use crate::driver::SnapshotError;

impl CsiSnapshots {
    /// The record of a restored volume, by id (or, with `by_handle`, by its CSI handle too):
    /// memory first, then the ConfigMap.
    pub(super) async fn record(
        &self,
        key: &str,
        by_handle: bool,
    ) -> Result<Option<(String, RestoreRecord)>, SnapshotError> {
        if let Some(found) = lookup(&self.restores(), key, by_handle) {
            return Ok(Some(found));
        }
        let cm = self
            .configmaps()
            .get_opt(RESTORES_CONFIGMAP)
            .await
            .map_err(|e| api_failure(&format!("read ConfigMap {}/{RESTORES_CONFIGMAP}", self.namespace), e))?;
        let found = lookup(&parse_records(cm.as_ref()), key, by_handle);
        if let Some((id, rec)) = &found {
            self.restores().insert(id.clone(), rec.clone());
        }
        Ok(found)
    }

    /// Writes a record to the ConfigMap, then to memory: success means a restart finds it.
    pub(super) async fn save(&self, volume_id: &str, rec: &RestoreRecord) -> Result<(), SnapshotError> {
        let value = serde_json::to_string(rec).map_err(|e| SnapshotError::Failed(e.to_string()))?;
        let what = format!("record restored volume {volume_id} in ConfigMap {}/{RESTORES_CONFIGMAP}", self.namespace);
        let api = self.configmaps();
        // A merge patch of one key leaves concurrent restores' keys alone.
        let patch = Patch::Merge(serde_json::json!({ "data": { volume_id: &value } }));
        match api.patch(RESTORES_CONFIGMAP, &PatchParams::default(), &patch).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(RESTORES_CONFIGMAP.into()),
                        namespace: Some(self.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    data: Some(BTreeMap::from([(volume_id.to_string(), value)])),
                    ..ConfigMap::default()
                };
                match api.create(&PostParams::default(), &cm).await {
                    Ok(_) => {}
                    // created meanwhile by another restore: patch that one
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        api.patch(RESTORES_CONFIGMAP, &PatchParams::default(), &patch)
                            .await
                            .map_err(|e| api_failure(&what, e))?;
                    }
                    Err(e) => return Err(api_failure(&what, e)),
                }
            }
            Err(e) => return Err(api_failure(&what, e)),
        }
        self.restores().insert(volume_id.to_string(), rec.clone());
        Ok(())
    }

    /// Removes a record from the ConfigMap and memory.
    pub(super) async fn forget(&self, volume_id: &str) -> Result<(), SnapshotError> {
        let patch = Patch::Merge(serde_json::json!({ "data": { volume_id: null } }));
        match self.configmaps().patch(RESTORES_CONFIGMAP, &PatchParams::default(), &patch).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(api_failure(&format!("forget restored volume {volume_id}"), e)),
        }
        self.restores().remove(volume_id);
        Ok(())
    }

    fn configmaps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Gets or creates the helper claim of a restore.
    pub(super) async fn helper_claim(
        &self,
        namespace: &str,
        volume_id: &str,
        snapshot_id: &str,
        req: &RestoreRequest,
    ) -> Result<PersistentVolumeClaim, SnapshotError> {
        let api = Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), namespace);
        let name = format!("{HELPER_PREFIX}{volume_id}");
        let what = format!("create helper claim {namespace}/{name}");
        if let Some(pvc) = api.get_opt(&name).await.map_err(|e| api_failure(&what, e))? {
            return Ok(pvc);
        }
        match api.create(&PostParams::default(), &helper_pvc(volume_id, namespace, snapshot_id, req)).await {
            Ok(pvc) => {
                tracing::info!(%namespace, claim = %name, snapshot = %snapshot_id, "CSI restore claim created");
                Ok(pvc)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => api
                .get_opt(&name)
                .await
                .map_err(|e| api_failure(&what, e))?
                .ok_or_else(|| SnapshotError::Failed(format!("helper claim {namespace}/{name} vanished; retrying"))),
            Err(e) => Err(api_failure(&what, e)),
        }
    }

    /// Keeps the restored volume and removes the helper claim and PV. Safe to repeat: the PV is
    /// `Retain` before its claim goes, so the external-provisioner never deletes the volume.
    pub(super) async fn finish_restore(&self, volume_id: &str, rec: &RestoreRecord) -> Result<(), SnapshotError> {
        let pvs = Api::<PersistentVolume>::all(self.client.clone());
        let claims = Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), &rec.namespace);
        let claim = format!("{HELPER_PREFIX}{volume_id}");
        let helper = pvs.get_opt(&rec.helper_pv).await.map_err(|e| api_failure("read the helper PV", e))?;
        let helper = match helper {
            Some(pv) if !is_helper_pv(&pv, rec) => {
                tracing::warn!(pv = %rec.helper_pv, volume = %volume_id, "helper PV now belongs to something else; left alone");
                return Ok(());
            }
            other => other,
        };
        if let Some(pv) = &helper
            && reclaim_policy(pv) != "Retain"
        {
            let patch = Patch::Merge(serde_json::json!({ "spec": { "persistentVolumeReclaimPolicy": "Retain" } }));
            pvs.patch(&rec.helper_pv, &PatchParams::default(), &patch)
                .await
                .map_err(|e| api_failure(&format!("retain helper PV {}", rec.helper_pv), e))?;
        }
        let by_uid = |uid: &str| DeleteParams {
            preconditions: Some(Preconditions { uid: Some(uid.to_string()), resource_version: None }),
            ..DeleteParams::default()
        };
        match claims.delete(&claim, &by_uid(&rec.helper_claim_uid)).await {
            Ok(_) => {}
            // gone already, or the name is another claim's now (uid precondition)
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(api_failure(&format!("delete helper claim {}/{claim}", rec.namespace), e)),
        }
        if let Some(pv) = &helper {
            match pvs.delete(&rec.helper_pv, &by_uid(&pv.metadata.uid.clone().unwrap_or_default())).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(api_failure(&format!("delete helper PV {}", rec.helper_pv), e)),
            }
        }
        Ok(())
    }
}
