//! The `openstorage` driver (`--driver openstorage`, alias `portworx`): Portworx, or any
//! OpenStorage SDK server, over gRPC.
//!
//! - Nodes: `OpenStorageNode/EnumerateWithFilters`, statuses mapped as Stork maps them
//!   ([`nodes::status_of`]), failure domains from the SDK's topology or the Kubernetes node.
//! - Volumes: every volume from `OpenStorageVolume/InspectWithFilters`, found by id or name from
//!   the PV's CSI handle or in-tree volume id ([`volumes`]).
//! - State: one background task ([`OsdDriver::run`]) reads both on an interval, and at once
//!   when a controller or an unknown PV asks; readers only load the last result. When the SDK
//!   cannot be read the driver reports its nodes as unknown (never as down): the extender then
//!   keeps every node and the health monitor does nothing.
//! - Snapshots: through the SDK's snapshot calls ([`snapshots`]).

pub mod client;
pub mod config;
pub mod nodes;
#[allow(missing_docs)]
pub mod proto;
mod refresh;
mod snapshots;
pub mod token;
pub mod volumes;

use std::{collections::HashMap, sync::Arc};

use arc_swap::{ArcSwap, ArcSwapOption};
use k8s_openapi::api::core::v1::PersistentVolume;
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::sync::Notify;

pub use self::{
    client::{OsdError, SdkClient},
    config::{ConfigError, EndpointSource, OsdConfig},
    token::Credentials,
};
use super::{Driver, Error, NodeInventory, SnapshotDriver, Volume};
use crate::{cluster::ClusterView, metrics::ApiErrorLabels};

/// Name of the driver in logs, metrics and errors.
pub const NAME: &str = "openstorage";

/// What readers see, replaced whole by each refresh.
#[derive(Debug)]
struct State {
    /// The nodes, or why they are unknown.
    nodes: Result<Arc<NodeInventory>, String>,
    /// Volumes by id and by name (both keys lead to the same volume).
    volumes: Arc<HashMap<String, Arc<Volume>>>,
}

impl Default for State {
    fn default() -> Self {
        Self { nodes: Err("the OpenStorage SDK has not been read yet".into()), volumes: Arc::default() }
    }
}

/// The `openstorage` driver. Cheap to read from any thread; [`Self::run`] keeps it current.
pub struct OsdDriver {
    config: OsdConfig,
    cluster: ClusterView,
    state: ArcSwap<State>,
    /// The connection, once the endpoint is known.
    client: ArcSwapOption<SdkClient>,
    /// Wakes the refresh loop ahead of its interval.
    wake: Notify,
    claims: super::claims::ClaimIndexSlot,
    errors: Family<ApiErrorLabels, Counter>,
    snapshots: snapshots::OsdSnapshots,
}

impl std::fmt::Debug for OsdDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.load();
        f.debug_struct("OsdDriver")
            .field("config", &self.config)
            .field("nodes", &state.nodes.as_ref().map(|n| n.nodes().len()))
            .field("volumes", &state.volumes.len())
            .finish()
    }
}

impl OsdDriver {
    /// A driver that knows nothing yet: its nodes are unknown until [`Self::run`] reads them.
    /// Failed SDK calls are counted in `errors` (`stork_driver_api_errors_total`).
    pub fn new(config: OsdConfig, cluster: ClusterView, errors: Family<ApiErrorLabels, Counter>) -> Arc<Self> {
        Arc::new(Self {
            config,
            cluster,
            state: ArcSwap::from_pointee(State::default()),
            client: ArcSwapOption::empty(),
            wake: Notify::new(),
            claims: Default::default(),
            errors,
            snapshots: snapshots::OsdSnapshots::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OsdConfig {
        &self.config
    }

    /// Asks the refresh loop to read the SDK now (coalesced with a pending request).
    pub fn refresh_soon(&self) {
        self.wake.notify_one();
    }

    /// The connected client, or why there is none.
    fn sdk(&self) -> Result<Arc<SdkClient>, OsdError> {
        self.client.load_full().ok_or_else(|| {
            let why = self.state.load().nodes.as_ref().err().cloned().unwrap_or_default();
            OsdError::Setup(format!("the OpenStorage SDK is not connected yet: {why}"))
        })
    }

    /// Counts a failed call and passes the error on.
    fn count(&self, call: &'static str, e: OsdError) -> OsdError {
        self.errors.get_or_create(&ApiErrorLabels { call, kind: e.kind() }).inc();
        e
    }

    /// Adds a volume a controller just made, so readers see it before the next refresh.
    fn remember(&self, volume: &proto::Volume) {
        let state = self.state.load();
        let mut volumes = (*state.volumes).clone();
        let v = Arc::new(volumes::volume_of(volume));
        volumes.insert(volume.id.clone(), v.clone());
        if let Some(name) = volume.locator.as_ref().map(|l| l.name.clone()).filter(|n| !n.is_empty()) {
            volumes.insert(name, v);
        }
        self.state.store(Arc::new(State { nodes: state.nodes.clone(), volumes: Arc::new(volumes) }));
        self.claims.volumes_changed();
    }
}

impl Driver for OsdDriver {
    fn name(&self) -> &str {
        NAME
    }

    fn owns_provisioner(&self, provisioner: &str) -> bool {
        config::PROVISIONERS.contains(&provisioner)
    }

    fn nodes(&self) -> Result<Arc<NodeInventory>, Error> {
        self.state.load().nodes.clone().map_err(|reason| Error::Unavailable { driver: NAME.to_string(), reason })
    }

    fn volume(&self, pv: &PersistentVolume) -> Result<Option<Arc<Volume>>, Error> {
        let Some(key) = volumes::volume_ref(pv) else { return Ok(None) };
        let found = self.state.load().volumes.get(key).cloned();
        if found.is_none() {
            // A volume made since the last read: read again now rather than in an interval.
            self.refresh_soon();
        }
        Ok(found)
    }

    fn csi_pod_prefix(&self) -> Option<&str> {
        Some(config::CSI_POD_PREFIX)
    }

    fn claim_index(&self) -> Option<&super::claims::ClaimIndexSlot> {
        Some(&self.claims)
    }

    fn snapshots(&self) -> Option<&dyn SnapshotDriver> {
        Some(self)
    }

    /// In-tree Portworx PVs too, not only CSI ones.
    fn owns_pv(&self, pv: &PersistentVolume) -> bool {
        volumes::volume_ref(pv).is_some()
    }
}

#[cfg(test)]
mod tests;
