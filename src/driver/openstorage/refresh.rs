//! The one task that reads the SDK: nodes and volumes on an interval and on request, backing
//! off while the SDK cannot be read. Readers never wait for it.

use std::{collections::HashMap, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use tokio_util::sync::CancellationToken;

use super::{
    EndpointSource, OsdDriver, OsdError, SdkClient, State, nodes,
    proto::{SdkNodeEnumerateWithFiltersRequest, SdkVolumeInspectWithFiltersRequest},
    volumes,
};
use crate::driver::{NodeInventory, Volume};

/// First wait after a failed read; doubled up to the poll interval.
const BACKOFF_START: Duration = Duration::from_secs(1);
/// Reads asked for (a PV naming a volume not seen yet, a controller that made one) start no
/// sooner than this after the previous read: many such asks, or one asked on every request for
/// a volume the SDK does not have, cost at most one read per gap.
const MIN_GAP: Duration = Duration::from_secs(1);

impl OsdDriver {
    /// Keeps nodes and volumes current until `cancel`. `kube` finds the SDK through its Service
    /// when no endpoint is given.
    pub async fn run(self: Arc<Self>, kube: Option<kube::Client>, cancel: CancellationToken) {
        let mut backoff = BACKOFF_START;
        let mut problem: Option<String> = None;
        loop {
            let started = tokio::time::Instant::now();
            let wait = match self.refresh(kube.as_ref()).await {
                Ok(()) => {
                    if problem.take().is_some() {
                        tracing::info!(driver = super::NAME, "OpenStorage SDK read again; driver nodes known");
                    }
                    backoff = BACKOFF_START;
                    None
                }
                Err(e) => {
                    let message = e.to_string();
                    // One line per distinct problem, not one per retry.
                    if problem.as_deref() != Some(message.as_str()) {
                        match e {
                            OsdError::AuthRejected { .. } | OsdError::Token { .. } => {
                                tracing::error!(driver = super::NAME, error = %message, "OpenStorage SDK credentials refused")
                            }
                            _ => {
                                tracing::warn!(driver = super::NAME, error = %message, "OpenStorage SDK cannot be read; driver nodes unknown, nodes are not filtered by driver state")
                            }
                        }
                    }
                    self.mark_unknown(message.clone());
                    problem = Some(message);
                    if matches!(self.config.endpoint, EndpointSource::Service { .. })
                        && matches!(e, OsdError::Unreachable { .. } | OsdError::Setup(_))
                    {
                        // The Service may have moved: discover it again on the next try.
                        self.client.store(None);
                    }
                    let wait = backoff;
                    backoff = (backoff * 2).min(self.config.poll_interval);
                    Some(wait)
                }
            };
            let woken = tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait.unwrap_or(self.config.poll_interval)) => false,
                // While failing, requests to read now wait for the backoff.
                () = self.wake.notified(), if wait.is_none() => true,
            };
            if woken {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep_until(started + MIN_GAP) => {}
                }
            }
        }
    }

    /// The client, connecting (and discovering the endpoint) first when there is none.
    async fn connect(&self, kube: Option<&kube::Client>) -> Result<Arc<SdkClient>, OsdError> {
        if let Some(client) = self.client.load_full() {
            return Ok(client);
        }
        let url = match &self.config.endpoint {
            EndpointSource::Given(url) => url.clone(),
            EndpointSource::Service { namespace, name, port } => {
                let kube = kube.ok_or_else(|| {
                    OsdError::Setup(
                        "finding the OpenStorage SDK through its Service needs a live cluster; give --osd-endpoint"
                            .into(),
                    )
                })?;
                let svc = Api::<Service>::namespaced(kube.clone(), namespace).get_opt(name).await.map_err(|e| {
                    OsdError::Setup(format!("cannot read service {namespace}/{name} to find the OpenStorage SDK: {e}"))
                })?;
                let svc = svc.ok_or_else(|| {
                    OsdError::Setup(format!(
                        "service {namespace}/{name} not found: is Portworx installed? (or give --osd-endpoint)"
                    ))
                })?;
                self.config.url_from_service(&svc, port).map_err(|e| OsdError::Setup(e.to_string()))?
            }
        };
        let client = Arc::new(SdkClient::new(
            &url,
            self.config.ca.as_deref(),
            self.config.credentials.clone(),
            self.config.call_timeout,
        )?);
        tracing::info!(driver = super::NAME, endpoint = %url, tls = self.config.tls(), "OpenStorage SDK endpoint");
        self.client.store(Some(client.clone()));
        Ok(client)
    }

    /// One read of nodes and volumes, swapped in whole (what [`Self::run`] does each interval;
    /// public for benchmarks and tools). Failures leave the last result in place.
    pub async fn refresh(&self, kube: Option<&kube::Client>) -> Result<(), OsdError> {
        let sdk = self.connect(kube).await.map_err(|e| self.count("connect", e))?;
        let request = sdk.request(SdkNodeEnumerateWithFiltersRequest {}).map_err(|e| self.count("nodes", e))?;
        let listed = sdk
            .nodes()
            .enumerate_with_filters(request)
            .await
            .map_err(|s| self.count("nodes", sdk.error("OpenStorageNode/EnumerateWithFilters", &s)))?
            .into_inner()
            .nodes;
        if listed.is_empty() {
            // Every storage cluster has the node that answers: an empty list is a fault (or the
            // wrong endpoint), and taken at its word it would make every node a non-driver node.
            let message = "the SDK listed no nodes".to_string();
            return Err(self.count("nodes", OsdError::Failed { call: "OpenStorageNode/EnumerateWithFilters", message }));
        }
        let request =
            sdk.request(SdkVolumeInspectWithFiltersRequest::default()).map_err(|e| self.count("volumes", e))?;
        let found = sdk
            .volumes()
            .inspect_with_filters(request)
            .await
            .map_err(|s| self.count("volumes", sdk.error("OpenStorageVolume/InspectWithFilters", &s)))?
            .into_inner()
            .volumes;

        let driver_nodes: Vec<_> = listed
            .iter()
            .map(|n| {
                let kube = (!n.scheduler_node_name.is_empty()).then(|| self.cluster.node(&n.scheduler_node_name));
                nodes::driver_node(n, kube.flatten().as_deref(), &self.config.rack_label)
            })
            .collect();
        let mut by_key: HashMap<String, Arc<Volume>> = HashMap::with_capacity(found.len() * 2);
        for v in found.iter().filter_map(|r| r.volume.as_ref()) {
            let volume = Arc::new(volumes::volume_of(v));
            if let Some(name) = v.locator.as_ref().map(|l| &l.name).filter(|n| !n.is_empty()) {
                by_key.insert(name.clone(), volume.clone());
            }
            by_key.insert(v.id.clone(), volume);
        }
        let old = self.state.load_full();
        log_transitions(old.nodes.as_ref().ok().map(|i| i.nodes()), &driver_nodes);
        let changed = !same_volumes(&old.volumes, &by_key);
        self.state.store(Arc::new(State {
            nodes: Ok(Arc::new(NodeInventory::new(driver_nodes))),
            volumes: if changed { Arc::new(by_key) } else { old.volumes.clone() },
        }));
        if changed {
            self.claims.volumes_changed();
        }
        Ok(())
    }

    /// Nodes become unknown; volumes keep their last known replicas (they move rarely, and
    /// nothing places by them while the nodes are unknown).
    pub(super) fn mark_unknown(&self, why: String) {
        let old = self.state.load_full();
        self.state.store(Arc::new(State { nodes: Err(why), volumes: old.volumes.clone() }));
    }
}

fn same_volumes(a: &HashMap<String, Arc<Volume>>, b: &HashMap<String, Arc<Volume>>) -> bool {
    a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| **w == **v))
}

/// One log line per node whose status changed (or that came or went).
fn log_transitions(old: Option<&[crate::driver::DriverNode]>, new: &[crate::driver::DriverNode]) {
    let Some(old) = old else { return };
    let before: HashMap<&str, _> = old.iter().map(|n| (n.id.as_str(), n.status)).collect();
    for n in new {
        match before.get(n.id.as_str()) {
            Some(s) if *s == n.status => {}
            was => {
                tracing::info!(driver = super::NAME, node = %n.id, k8s_node = %n.name, from = ?was, to = %n.status, "driver node status")
            }
        }
    }
}
