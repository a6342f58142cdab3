//! Live mode: reflectors on CSINodes and on each driver's node-plugin pods, and a rebuild loop
//! that recomputes the inventory when any of them or a Node changes, coalescing bursts.

use std::{fmt::Debug, sync::Arc, time::Duration};

use futures::{TryStreamExt, future::join_all};
use k8s_openapi::api::{
    core::v1::{Pod, PodSpec},
    storage::v1::CSINode,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store, store::Writer},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use tokio::sync::watch as signal;
use tokio_util::sync::CancellationToken;

use super::{Assessed, CsiDriver, status::transitions};

/// Changes arriving within this window after the first one cost a single rebuild.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How often to look whether the cluster's own caches (Nodes) have synced, at startup only.
const SYNC_POLL: Duration = Duration::from_millis(100);

impl CsiDriver {
    /// Watches CSINodes (all) and, per configured node-plugin selector, the pods it selects;
    /// rebuilds the inventory whenever they or a cached Node change, until `cancel`. Until every
    /// cache has synced, [`crate::driver::Driver::nodes`] answers `Unavailable`. Watch errors
    /// are retried with backoff and never end the loop.
    pub async fn run(self: Arc<Self>, client: Client, cancel: CancellationToken) {
        let (changed, changes) = signal::channel(());
        let (csinodes, csinode_writer) = reflector::store::<CSINode>();
        let mut pod_stores: Vec<Store<Pod>> = Vec::new();
        let mut pod_watches = Vec::new();
        for sel in &self.config.node_plugins {
            let (store, writer) = reflector::store::<Pod>();
            pod_stores.push(store);
            let api = Api::<Pod>::namespaced(client.clone(), &sel.namespace);
            let config = watcher::Config::default().labels(&sel.selector);
            pod_watches.push(reflect(api, config, writer, trim_pod, &changed));
        }
        let csinode_api = Api::<CSINode>::all(client);
        let watches = async {
            tokio::join!(
                reflect(csinode_api, watcher::Config::default(), csinode_writer, trim_csinode, &changed),
                join_all(pod_watches),
            )
        };
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = watches => {}
            _ = self.keep_current(&csinodes, &pod_stores, changes, || tokio::time::sleep(DEBOUNCE)) => {}
        }
    }

    /// Waits for every cache, then rebuilds after each change signal (`changes` for CSINodes and
    /// pods, the cluster's own for Nodes): a change starts the `debounce` wait (a [`DEBOUNCE`]
    /// sleep), and everything that arrived by its end costs one rebuild.
    pub(super) async fn keep_current<F: Future<Output = ()>>(
        &self,
        csinodes: &Store<CSINode>,
        pods: &[Store<Pod>],
        mut changes: signal::Receiver<()>,
        mut debounce: impl FnMut() -> F,
    ) {
        let mut node_changes = self.cluster.node_changes();
        let ready = futures::future::try_join(
            csinodes.wait_until_ready(),
            futures::future::try_join_all(pods.iter().map(Store::wait_until_ready)),
        );
        if ready.await.is_err() {
            return;
        }
        // The Node cache has no readiness future; this polls only until startup is over.
        while !self.cluster.is_synced() {
            tokio::time::sleep(SYNC_POLL).await;
        }
        let mut previous = self.rebuild_from(csinodes, pods);
        tracing::info!(
            driver = super::NAME,
            nodes = previous.len(),
            schedulable = previous.iter().filter(|a| a.node.status.is_schedulable()).count(),
            "csi driver caches synced"
        );
        loop {
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                r = node_changes.changed() => if r.is_err() { return },
            }
            debounce().await;
            // Every change up to here is in this rebuild; later ones mark the next.
            changes.borrow_and_update();
            node_changes.borrow_and_update();
            let next = self.rebuild_from(csinodes, pods);
            log_rebuild(&previous, &next);
            previous = next;
        }
    }

    fn rebuild_from(&self, csinodes: &Store<CSINode>, pods: &[Store<Pod>]) -> Vec<Assessed> {
        let pods: Vec<Vec<Arc<Pod>>> = pods.iter().map(Store::state).collect();
        self.rebuild(&csinodes.state(), &pods)
    }
}

fn log_rebuild(previous: &[Assessed], next: &[Assessed]) {
    for t in transitions(previous, next) {
        let from = t.from.map_or("absent".to_string(), |s| s.to_string());
        let to = t.to.map_or("absent".to_string(), |s| s.to_string());
        let reason = t.reason.map_or("not a driver node", |r| r.as_str());
        tracing::info!(node = %t.node, %from, %to, reason, "csi driver node status changed");
    }
    tracing::debug!(
        nodes = next.len(),
        online = next.iter().filter(|a| a.node.status == crate::driver::NodeStatus::Online).count(),
        storage_down = next.iter().filter(|a| a.node.status == crate::driver::NodeStatus::StorageDown).count(),
        "csi driver inventory rebuilt"
    );
}

/// Feeds one watch into a store, signalling `changed` on every applied or deleted object.
async fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
    trim: fn(&mut K),
    changed: &signal::Sender<()>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let stream = watcher(api, config).default_backoff().modify(trim).reflect(writer);
    let mut stream = std::pin::pin!(stream.touched_objects());
    loop {
        match stream.try_next().await {
            Ok(Some(_)) => {
                changed.send_replace(());
            }
            Ok(None) => break,
            Err(e) => tracing::warn!(%kind, error = %e, "csi driver watch failed; retrying with backoff"),
        }
    }
}

/// Keeps the name and the registered driver names.
fn trim_csinode(csinode: &mut CSINode) {
    trim_meta(csinode);
    for d in &mut csinode.spec.drivers {
        d.allocatable = None;
        d.topology_keys = None;
    }
}

/// Keeps what the status mapping reads: the node, the phase, the Ready condition and the
/// container states (without messages, images or history).
fn trim_pod(pod: &mut Pod) {
    trim_meta(pod);
    pod.metadata.annotations = None;
    pod.metadata.owner_references = None;
    let node_name = pod.spec.as_mut().and_then(|s| s.node_name.take());
    pod.spec = Some(PodSpec { node_name, ..PodSpec::default() });
    if let Some(status) = pod.status.as_mut() {
        status.init_container_statuses = None;
        status.ephemeral_container_statuses = None;
        status.message = None;
        status.pod_ips = None;
        status.host_ips = None;
        status.resource_claim_statuses = None;
        if let Some(conds) = status.conditions.as_mut() {
            conds.retain(|c| c.type_ == "Ready");
            for c in conds {
                c.message = None;
                c.last_probe_time = None;
            }
        }
        for c in status.container_statuses.iter_mut().flatten() {
            c.image.clear();
            c.image_id.clear();
            c.last_state = None;
            c.allocated_resources = None;
            c.allocated_resources_status = None;
            c.resources = None;
            c.volume_mounts = None;
            c.user = None;
            if let Some(state) = c.state.as_mut() {
                state.waiting.iter_mut().for_each(|w| w.message = None);
                state.terminated.iter_mut().for_each(|t| t.message = None);
            }
        }
    }
}

fn trim_meta<K: ResourceExt>(obj: &mut K) {
    obj.managed_fields_mut().clear();
    if let Some(a) = obj.meta_mut().annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::csi::fixtures::{PluginPodExt, plugin_pod};

    #[test]
    fn a_trimmed_plugin_pod_maps_to_the_same_status() {
        for pod in
            [plugin_pod("p", "n1"), plugin_pod("p", "n1").unready(), plugin_pod("p", "n1").waiting("CrashLoopBackOff")]
        {
            let node = crate::driver::csi::fixtures::node("n1");
            let before = crate::driver::csi::status::reason(&node, Some(&[&pod]));
            let mut trimmed = pod.clone();
            trim_pod(&mut trimmed);
            assert_eq!(crate::driver::csi::status::reason(&node, Some(&[&trimmed])), before);
            assert_eq!(trimmed.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some("n1"));
        }
    }
}
