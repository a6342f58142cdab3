//! Offline mode: the cluster view loaded once from a multi-document YAML file.

use std::{path::Path, sync::atomic::Ordering};

use k8s_openapi::api::{
    core::v1::{Node, PersistentVolume, PersistentVolumeClaim},
    storage::v1::StorageClass,
};
use kube::runtime::{reflector::store::Writer, watcher};
use serde::de::DeserializeOwned;

use super::{ClusterView, ClusterWriters, Error};
use crate::snapshot::crd::VolumeSnapshot;

const SNAPSHOT_API_VERSION: &str = "volumesnapshot.external-storage.k8s.io/v1";

/// Typed objects of the kinds the view caches.
#[derive(Debug, Default, Clone)]
pub struct Objects {
    /// StorageClasses.
    pub storage_classes: Vec<StorageClass>,
    /// PersistentVolumeClaims.
    pub pvcs: Vec<PersistentVolumeClaim>,
    /// PersistentVolumes.
    pub pvs: Vec<PersistentVolume>,
    /// Nodes.
    pub nodes: Vec<Node>,
    /// stork VolumeSnapshots.
    pub snapshots: Vec<VolumeSnapshot>,
}

impl Objects {
    /// Parses multi-document YAML; `kind: List` documents are flattened, other kinds are
    /// ignored so a full `kubectl get -o yaml` dump can be used as is.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
        let mut out = Self::default();
        let mut queue: Vec<serde_json::Value> = docs.into_iter().rev().collect();
        let mut index = 0;
        while let Some(doc) = queue.pop() {
            index += 1;
            if doc.is_null() {
                continue;
            }
            let kind = doc.get("kind").and_then(|k| k.as_str()).unwrap_or_default().to_string();
            let ctx = |e: serde_json::Error| format!("object {index} ({kind}): {e}");
            match kind.as_str() {
                "List" => {
                    if let Some(items) = doc.get("items").and_then(|i| i.as_array()) {
                        queue.extend(items.iter().rev().cloned());
                    }
                }
                "StorageClass" => out.storage_classes.push(typed(doc).map_err(ctx)?),
                "PersistentVolumeClaim" => out.pvcs.push(typed(doc).map_err(ctx)?),
                "PersistentVolume" => out.pvs.push(typed(doc).map_err(ctx)?),
                "Node" => out.nodes.push(typed(doc).map_err(ctx)?),
                "VolumeSnapshot" if doc.get("apiVersion").and_then(|v| v.as_str()) == Some(SNAPSHOT_API_VERSION) => {
                    out.snapshots.push(typed(doc).map_err(ctx)?)
                }
                _ => {
                    tracing::debug!(%kind, index, "ignoring object of a kind stork does not cache")
                }
            }
        }
        Ok(out)
    }

    /// A synced view holding exactly these objects.
    pub fn into_view(self) -> ClusterView {
        let (view, writers) = ClusterView::new();
        self.fill(writers);
        view
    }

    fn fill(self, w: ClusterWriters) {
        let ClusterWriters { storage_classes, pvcs, pvs, nodes, synced, snapshots, snapshots_synced } = w;
        init(storage_classes, self.storage_classes);
        init(pvcs, self.pvcs);
        init(pvs, self.pvs);
        init(nodes, self.nodes);
        init(snapshots, self.snapshots);
        synced.store(true, Ordering::Release);
        // The file is the whole truth: a snapshot it does not list does not exist.
        snapshots_synced.store(true, Ordering::Release);
    }
}

fn typed<T: DeserializeOwned>(doc: serde_json::Value) -> Result<T, serde_json::Error> {
    serde_json::from_value(doc)
}

/// Replays a complete list into a store, exactly as a watcher's initial list would.
fn init<K>(mut writer: Writer<K>, objects: Vec<K>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    writer.apply_watcher_event(&watcher::Event::Init);
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
}

/// Loads `--objects FILE` into a synced view.
pub fn load_objects_file(path: &Path) -> Result<ClusterView, Error> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadObjects { path: display.clone(), source })?;
    let objects = Objects::from_yaml(&text).map_err(|message| Error::ParseObjects { path: display, message })?;
    tracing::info!(
        path = %path.display(),
        storageclasses = objects.storage_classes.len(),
        pvcs = objects.pvcs.len(),
        pvs = objects.pvs.len(),
        nodes = objects.nodes.len(),
        "loaded offline cluster objects"
    );
    Ok(objects.into_view())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_and_plain_documents_both_load_and_unknown_kinds_are_ignored() {
        let yaml = "kind: List\napiVersion: v1\nitems:\n- {apiVersion: v1, kind: Node, metadata: {name: n1}}\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n\
                    apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: pv1}\n";
        let view = Objects::from_yaml(yaml).unwrap().into_view();
        assert!(view.is_synced());
        assert!(view.node("n1").is_some());
        assert!(view.pv("pv1").is_some());
    }

    #[test]
    fn a_wrongly_typed_object_reports_its_index_and_kind() {
        let err = Objects::from_yaml("kind: Node\nmetadata: {name: [1]}\n").unwrap_err();
        assert!(err.contains("object 1 (Node)"), "{err}");
    }
}
