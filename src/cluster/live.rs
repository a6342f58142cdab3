//! Live mode: reflectors keep the stores current; objects are trimmed to what decisions read,
//! because a Node with its image list is tens of kilobytes and clusters have thousands.

use std::{fmt::Debug, sync::atomic::Ordering};

use futures::TryStreamExt;
use k8s_openapi::api::{
    core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod},
    storage::v1::StorageClass,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{WatchStreamExt, reflector::store::Writer, watcher},
};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::{
    ClusterView, ClusterWriters,
    cache::{CacheWriter, Packed},
};
use crate::model::{crd::VolumeSnapshot, rule::Rule, schedule::SchedulePolicy};

/// Runs the reflectors until `cancel` fires; marks the view synced once every store has
/// its initial list. Watch errors are retried with backoff and never end the loop.
pub async fn run_reflectors(client: Client, view: ClusterView, writers: ClusterWriters, cancel: CancellationToken) {
    let ClusterWriters {
        storage_classes,
        pvcs,
        pvs,
        nodes,
        synced,
        snapshots,
        snapshots_synced,
        rules,
        rules_synced,
        policies,
        policies_synced,
        pods,
        pods_synced,
    } = writers;
    let sync = async {
        let results = tokio::join!(
            view.storage_classes.wait_until_ready(),
            view.pvcs.wait_until_ready(),
            view.pvs.wait_until_ready(),
            view.nodes.wait_until_ready(),
        );
        if results.0.is_ok() && results.1.is_ok() && results.2.is_ok() && results.3.is_ok() {
            synced.store(true, Ordering::Release);
            tracing::info!(counts = ?view.counts(), "cluster caches synced");
        }
        std::future::pending::<()>().await;
    };
    let snapshots_sync = async {
        if view.snapshots.wait_until_ready().await.is_ok() {
            snapshots_synced.store(true, Ordering::Release);
            tracing::info!(count = view.snapshots.len(), "snapshot cache synced");
        }
        std::future::pending::<()>().await;
    };
    let rules_sync = async {
        if view.rules.wait_until_ready().await.is_ok() {
            rules_synced.store(true, Ordering::Release);
            tracing::info!(count = view.rules.len(), "rule cache synced");
        }
        std::future::pending::<()>().await;
    };
    let policies_sync = async {
        if view.policies.wait_until_ready().await.is_ok() {
            policies_synced.store(true, Ordering::Release);
            tracing::info!(count = view.policies.len(), "schedule policy cache synced");
        }
        std::future::pending::<()>().await;
    };
    let pods_sync = async {
        if view.pods.wait_until_ready().await.is_ok() {
            pods_synced.send_replace(true);
            tracing::info!(count = view.pods.len(), "pod cache synced");
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = sync => {}
        _ = snapshots_sync => {}
        _ = rules_sync => {}
        _ = policies_sync => {}
        _ = pods_sync => {}
        _ = reflect(Api::<Pod>::all(client.clone()), pods, trim_pod, || view.pod_changed()) => {}
        _ = reflect(Api::<StorageClass>::all(client.clone()), storage_classes, trim_meta, || view.class_changed()) => {}
        _ = reflect_compact(Api::<PersistentVolumeClaim>::all(client.clone()), pvcs) => {}
        _ = reflect_compact(Api::<PersistentVolume>::all(client.clone()), pvs) => {}
        _ = reflect(Api::<Node>::all(client.clone()), nodes, trim_node, || view.node_changed()) => {}
        // Without the snapshot CRDs this watch keeps failing (with backoff) and the webhook
        // checks restore claims without it.
        _ = reflect(Api::<VolumeSnapshot>::all(client.clone()), snapshots, trim_meta, || {}) => {}
        _ = reflect(Api::<Rule>::all(client.clone()), rules, trim_meta, || {}) => {}
        _ = reflect(Api::<SchedulePolicy>::all(client), policies, trim_meta, || {}) => {}
    }
}

async fn reflect<K>(api: Api<K>, writer: Writer<K>, trim: fn(&mut K), changed: impl Fn())
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let stream = watcher(api, watcher::Config::default()).default_backoff().modify(trim).reflect(writer);
    let mut stream = std::pin::pin!(stream.touched_objects());
    loop {
        match stream.try_next().await {
            Ok(Some(_)) => changed(),
            Ok(None) => break,
            Err(e) => tracing::warn!(%kind, error = %e, "watch failed; retrying with backoff"),
        }
    }
}

/// [`reflect`] for the compactly cached kinds: the writer trims and packs each object, as the
/// offline loader's does.
async fn reflect_compact<T>(api: Api<T::Full>, mut writer: CacheWriter<T>)
where
    T: Packed,
    T::Full: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let kind = T::Full::kind(&()).to_string();
    let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    loop {
        match stream.try_next().await {
            Ok(Some(event)) => writer.apply(event),
            Ok(None) => break,
            Err(e) => tracing::warn!(%kind, error = %e, "watch failed; retrying with backoff"),
        }
    }
}

fn trim_meta<K: ResourceExt>(obj: &mut K) {
    super::compact::trim_meta(obj.meta_mut());
}

/// Keeps name, labels, annotations, taints, addresses and conditions; drops images, node info,
/// capacity and attached volumes, which are most of a Node's bytes.
pub fn trim_node(node: &mut Node) {
    trim_meta(node);
    if let Some(status) = node.status.as_mut() {
        status.images = None;
        status.node_info = None;
        status.capacity = None;
        status.allocatable = None;
        status.volumes_attached = None;
        status.volumes_in_use = None;
        status.daemon_endpoints = None;
        status.config = None;
        status.features = None;
        status.runtime_handlers = None;
        if let Some(conds) = status.conditions.as_mut() {
            for c in conds {
                c.message = None;
                c.last_heartbeat_time = None;
            }
        }
    }
}

/// Keeps what the health monitor and the placement gauges read: metadata (name, namespace, uid,
/// labels, annotations, deletion timestamp), the node and scheduler names, the volumes, and the
/// phase, reason and conditions; drops the containers and their statuses, most of a Pod's bytes.
pub fn trim_pod(pod: &mut Pod) {
    trim_meta(pod);
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers = Vec::new();
        spec.init_containers = None;
        spec.ephemeral_containers = None;
        spec.affinity = None;
        spec.tolerations = None;
        spec.topology_spread_constraints = None;
        spec.resource_claims = None;
    }
    if let Some(status) = pod.status.as_mut() {
        status.container_statuses = None;
        status.init_container_statuses = None;
        status.ephemeral_container_statuses = None;
        status.resource_claim_statuses = None;
        if let Some(conds) = status.conditions.as_mut() {
            conds.iter_mut().for_each(|c| c.message = None);
        }
    }
}

impl Debug for ClusterView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterView").field("synced", &self.is_synced()).field("counts", &self.counts()).finish()
    }
}
