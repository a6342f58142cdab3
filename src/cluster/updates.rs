//! Changes applied to an offline view after it was built, the way watch events change a live
//! one: what tests and benchmarks of "what follows a change" drive.

use k8s_openapi::api::{
    core::v1::{PersistentVolume, PersistentVolumeClaim},
    storage::v1::StorageClass,
};
use kube::runtime::watcher;

use super::{ClusterView, ClusterWriters};

/// Changes to a view built by [`super::Objects::into_view_with_updates`], applied as watch events
/// are in live mode (tests and benchmarks of what follows a change).
pub struct ObjectUpdates {
    view: ClusterView,
    writers: ClusterWriters,
}

impl ObjectUpdates {
    pub(super) fn new(view: ClusterView, writers: ClusterWriters) -> Self {
        Self { view, writers }
    }

    /// Adds or replaces a PVC.
    pub fn apply_pvc(&mut self, pvc: PersistentVolumeClaim) {
        self.writers.pvcs.apply(watcher::Event::Apply(pvc));
    }

    /// Removes a PVC.
    pub fn delete_pvc(&mut self, pvc: PersistentVolumeClaim) {
        self.writers.pvcs.apply(watcher::Event::Delete(pvc));
    }

    /// Adds or replaces a PV.
    pub fn apply_pv(&mut self, pv: PersistentVolume) {
        self.writers.pvs.apply(watcher::Event::Apply(pv));
    }

    /// Adds or replaces a StorageClass.
    pub fn apply_class(&mut self, class: StorageClass) {
        self.writers.storage_classes.apply_watcher_event(&watcher::Event::Apply(class));
        self.view.class_changed();
    }
}
