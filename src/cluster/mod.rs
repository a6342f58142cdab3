//! `ClusterView`: the cached Kubernetes objects decisions read — StorageClasses, PVCs, PVs,
//! Nodes, Pods (live mode only) and stork VolumeSnapshots. Live mode fills it from reflectors; offline mode (`--objects FILE`) from a YAML file.
//! Both fill the same stores through the same writers and trimming, so decision code cannot tell them apart.
//! PVCs and PVs, the numerous kinds, are kept in a compact form (`compact`, `cache`) and rebuilt on read.

mod cache;
mod changes;
mod compact;
mod live;
mod offline;
pub mod pod;
mod updates;

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use k8s_openapi::api::{
    core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod},
    storage::v1::StorageClass,
};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};

use self::{
    cache::{Cache, CacheWriter},
    changes::Kind,
    compact::{CachedPv, CachedPvc},
};
use crate::model::{crd::VolumeSnapshot, rule::Rule, schedule::SchedulePolicy};

pub use changes::{ClaimChanges, ClaimVersion, MAX_PENDING, Pending, VolumeVersion};
pub use compact::{claim_key, trim_pv, trim_pvc};
pub use live::{run_reflectors, trim_node, trim_pod};
pub use offline::{Objects, load_objects_file};
pub use updates::ObjectUpdates;

/// Errors building or filling the cluster view.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The offline objects file could not be read.
    #[error("failed to read objects file {path}")]
    ReadObjects {
        /// The file.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The offline objects file is not valid YAML of Kubernetes objects.
    #[error("failed to parse objects file {path}: {message}")]
    ParseObjects {
        /// The file.
        path: String,
        /// What was wrong, with the document index.
        message: String,
    },
}

/// Read side of the cache. Cheap to clone; every clone sees the same stores.
#[derive(Clone)]
pub struct ClusterView {
    storage_classes: Store<StorageClass>,
    // Claims and volumes are many and large as typed objects: they are cached compactly and
    // rebuilt on read (see `compact`).
    pvcs: Cache<CachedPvc>,
    pvs: Cache<CachedPv>,
    nodes: Store<Node>,
    synced: Arc<AtomicBool>,
    snapshots: Store<VolumeSnapshot>,
    // Separate from `synced`: the snapshot CRDs are optional, and readiness must not wait on them.
    snapshots_synced: Arc<AtomicBool>,
    // Rules, for `/validate` of snapshots that name them; optional like the snapshot CRDs.
    rules: Store<Rule>,
    rules_synced: Arc<AtomicBool>,
    // Schedule policies, for `/validate` of schedules that name them; optional likewise.
    policies: Store<SchedulePolicy>,
    policies_synced: Arc<AtomicBool>,
    node_changes: Arc<tokio::sync::watch::Sender<u64>>,
    // Same count as `node_changes`, readable without a lock on every extender request.
    node_generation: Arc<AtomicU64>,
    // One trimmed Pod cache for every reader (health monitor, placement gauges); readiness of the
    // extender and webhooks does not wait on it.
    pods: Store<Pod>,
    pods_synced: Arc<tokio::sync::watch::Sender<bool>>,
    pod_changes: Arc<tokio::sync::watch::Sender<u64>>,
    // Which claims, volumes and classes changed, for the driver's claim index.
    claim_changes: Arc<ClaimChanges>,
    id: u64,
}

/// Source of [`ClusterView::id`]s.
static NEXT_VIEW_ID: AtomicU64 = AtomicU64::new(1);

/// Write side of the cache, consumed by the reflectors or the offline loader.
pub struct ClusterWriters {
    pub(crate) storage_classes: Writer<StorageClass>,
    pub(crate) pvcs: CacheWriter<CachedPvc>,
    pub(crate) pvs: CacheWriter<CachedPv>,
    pub(crate) nodes: Writer<Node>,
    pub(crate) synced: Arc<AtomicBool>,
    pub(crate) snapshots: Writer<VolumeSnapshot>,
    pub(crate) snapshots_synced: Arc<AtomicBool>,
    pub(crate) rules: Writer<Rule>,
    pub(crate) rules_synced: Arc<AtomicBool>,
    pub(crate) policies: Writer<SchedulePolicy>,
    pub(crate) policies_synced: Arc<AtomicBool>,
    pub(crate) pods: Writer<Pod>,
    pub(crate) pods_synced: Arc<tokio::sync::watch::Sender<bool>>,
}

impl ClusterView {
    /// Empty stores plus their writers; the view is not synced until the writers say so.
    pub fn new() -> (Self, ClusterWriters) {
        let (storage_classes, sc_w) = reflector::store();
        let claim_changes = Arc::new(ClaimChanges::default());
        let (pvcs, pvc_w) = cache::cache();
        let pvc_w = pvc_w.with_log(claim_changes.clone(), Kind::Claim);
        let (pvs, pv_w) = cache::cache();
        let pv_w = pv_w.with_log(claim_changes.clone(), Kind::Volume);
        let (nodes, node_w) = reflector::store();
        let (snapshots, snap_w) = reflector::store();
        let (rules, rules_w) = reflector::store();
        let rules_synced = Arc::new(AtomicBool::new(false));
        let (policies, policies_w) = reflector::store();
        let policies_synced = Arc::new(AtomicBool::new(false));
        let (pods, pod_w) = reflector::store();
        let pods_synced = Arc::new(tokio::sync::watch::Sender::new(false));
        let synced = Arc::new(AtomicBool::new(false));
        let snapshots_synced = Arc::new(AtomicBool::new(false));
        let view = Self {
            storage_classes,
            pvcs,
            pvs,
            nodes,
            synced: synced.clone(),
            snapshots,
            snapshots_synced: snapshots_synced.clone(),
            rules,
            rules_synced: rules_synced.clone(),
            policies,
            policies_synced: policies_synced.clone(),
            node_changes: Arc::new(tokio::sync::watch::Sender::new(0)),
            node_generation: Arc::new(AtomicU64::new(0)),
            pods,
            pods_synced: pods_synced.clone(),
            pod_changes: Arc::new(tokio::sync::watch::Sender::new(0)),
            claim_changes,
            id: NEXT_VIEW_ID.fetch_add(1, Ordering::Relaxed),
        };
        let writers = ClusterWriters {
            storage_classes: sc_w,
            pvcs: pvc_w,
            pvs: pv_w,
            nodes: node_w,
            synced,
            snapshots: snap_w,
            snapshots_synced,
            rules: rules_w,
            rules_synced,
            policies: policies_w,
            policies_synced,
            pods: pod_w,
            pods_synced,
        };
        (view, writers)
    }

    /// Ticks (a counter) whenever a cached Node changes, for drivers that derive their node
    /// state from Nodes and must recompute it.
    pub fn node_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.node_changes.subscribe()
    }

    /// All cached Nodes.
    pub fn nodes(&self) -> Vec<Arc<Node>> {
        self.nodes.state()
    }

    pub(crate) fn node_changed(&self) {
        // Bumped after the store write it reports, so a reader that sees the new count also sees the write.
        self.node_generation.fetch_add(1, Ordering::AcqRel);
        self.node_changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// All cached Pods (trimmed by [`trim_pod`]); empty in offline mode.
    pub fn pods(&self) -> Vec<Arc<Pod>> {
        self.pods.state()
    }

    /// A cached (trimmed) Pod by namespace and name.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        self.pods.get(&ObjectRef::new(name).within(namespace))
    }

    /// Ticks whenever a cached Pod changes.
    pub fn pod_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.pod_changes.subscribe()
    }

    pub(crate) fn pod_changed(&self) {
        self.pod_changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Waits until the Pod cache holds its initial list (offline: the file's Pods).
    pub async fn wait_pods_synced(&self) {
        let mut synced = self.pods_synced.subscribe();
        // The view holds the sender, so the channel never closes while `self` exists.
        let _ = synced.wait_for(|s| *s).await;
    }

    /// Counts Node changes: anything derived from the Node cache while this returned `g` is
    /// current for as long as it still returns `g`. Read it before reading the Nodes.
    pub fn node_generation(&self) -> u64 {
        self.node_generation.load(Ordering::Acquire)
    }

    /// Identifies the stores behind this view (shared by its clones), for caches keyed by view.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The change log of claims, volumes and classes (see [`ClaimChanges`]).
    pub fn claim_changes(&self) -> &ClaimChanges {
        &self.claim_changes
    }

    pub(crate) fn class_changed(&self) {
        self.claim_changes.class_changed();
    }

    /// The stored version of a PVC by its key (`namespace/name`), without rebuilding it.
    pub fn claim_version(&self, key: &str) -> Option<ClaimVersion> {
        self.pvcs.get(key).map(ClaimVersion)
    }

    /// The stored version of a PV by name, without rebuilding it.
    pub fn volume_version(&self, name: &str) -> Option<VolumeVersion> {
        self.pvs.get(name).map(VolumeVersion)
    }

    /// Every cached PVC's key and stored version.
    pub fn claim_versions(&self) -> Vec<(Box<str>, ClaimVersion)> {
        self.pvcs.entries().into_iter().map(|(k, v)| (k, ClaimVersion(v))).collect()
    }

    /// A stork `VolumeSnapshot` by namespace and name. The outer `None` means stork holds no
    /// snapshot cache (CRDs not installed or not synced yet), so absence proves nothing.
    pub fn snapshot(&self, namespace: &str, name: &str) -> Option<Option<Arc<VolumeSnapshot>>> {
        self.snapshots_synced
            .load(Ordering::Acquire)
            .then(|| self.snapshots.get(&ObjectRef::new(name).within(namespace)))
    }

    /// A `Rule` by namespace and name. The outer `None` means stork holds no rule cache (CRD not
    /// installed or not synced yet), so absence proves nothing.
    pub fn rule(&self, namespace: &str, name: &str) -> Option<Option<Arc<Rule>>> {
        self.rules_synced.load(Ordering::Acquire).then(|| self.rules.get(&ObjectRef::new(name).within(namespace)))
    }

    /// A `SchedulePolicy` by name; the outer `None` means stork holds no policy cache yet.
    pub fn schedule_policy(&self, name: &str) -> Option<Option<Arc<SchedulePolicy>>> {
        self.policies_synced.load(Ordering::Acquire).then(|| self.policies.get(&ObjectRef::new(name)))
    }

    /// True once every store has its initial list (readiness).
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// A PVC by namespace and name, as cached (trimmed by [`trim_pvc`]); each call builds a
    /// new object, so hold on to it rather than asking again.
    pub fn pvc(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.pvcs.get(&compact::claim_key(namespace, name)).map(|c| c.get())
    }

    /// A PV by name, as cached (trimmed by [`trim_pv`]); each call builds a new object.
    pub fn pv(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.pvs.get(name).map(|v| v.get())
    }

    /// A StorageClass by name.
    pub fn storage_class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.storage_classes.get(&ObjectRef::new(name))
    }

    /// The class a claim without a class name gets: the one annotated as the cluster's default
    /// (GA or beta annotation); the newest of several, as the apiserver's DefaultStorageClass
    /// admission picks it.
    pub fn default_storage_class(&self) -> Option<Arc<StorageClass>> {
        const DEFAULT: [&str; 2] =
            ["storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class"];
        let is_default = |c: &StorageClass| {
            c.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| DEFAULT.iter().any(|k| a.get(*k).is_some_and(|v| v == "true")))
        };
        let created = |c: &Arc<StorageClass>| c.metadata.creation_timestamp.clone().map(|t| t.0);
        self.storage_classes.state().into_iter().filter(|c| is_default(c)).max_by_key(created)
    }

    /// The class a generic ephemeral volume's claim will have: the one its template names, else
    /// the default class.
    pub fn template_class(&self, name: Option<&str>) -> Option<Arc<StorageClass>> {
        match name {
            Some(name) => self.storage_class(name),
            None => self.default_storage_class(),
        }
    }

    /// A Node by name.
    pub fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.nodes.get(&ObjectRef::new(name))
    }

    /// Object counts per kind, for logs and readiness detail.
    pub fn counts(&self) -> [(&'static str, usize); 4] {
        [
            ("storageclasses", self.storage_classes.len()),
            ("persistentvolumeclaims", self.pvcs.len()),
            ("persistentvolumes", self.pvs.len()),
            ("nodes", self.nodes.len()),
        ]
    }

    /// The StorageClass a PVC names (`spec.storageClassName`, or the beta annotation).
    pub fn class_of(&self, pvc: &PersistentVolumeClaim) -> Option<Arc<StorageClass>> {
        storage_class_name(pvc).and_then(|name| self.storage_class(name))
    }
}

/// The class name of a PVC: `spec.storageClassName`, else the legacy beta annotation.
pub fn storage_class_name(pvc: &PersistentVolumeClaim) -> Option<&str> {
    let spec = pvc.spec.as_ref().and_then(|s| s.storage_class_name.as_deref());
    spec.or_else(|| {
        pvc.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class"))
            .map(String::as_str)
    })
    .filter(|n| !n.is_empty())
}

/// Whether the storage operator marked the Node unschedulable for storage (annotation parsed as true).
pub fn storage_unschedulable(node: &Node) -> bool {
    let value = node.metadata.annotations.as_ref().and_then(|a| a.get(crate::knobs::NODE_UNSCHEDULABLE));
    value.and_then(|v| crate::knobs::parse_bool(v)) == Some(true)
}

/// `status.addresses` of a Node as (type, address) pairs.
pub fn node_addresses(node: &Node) -> Vec<(&str, &str)> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(|a| a.iter().map(|a| (a.type_.as_str(), a.address.as_str())).collect())
        .unwrap_or_default()
}
