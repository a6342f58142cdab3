//! The `mock` driver: node and volume state from a topology YAML file, re-read when it changes.
//! It is the embedded default behind the demo, the tests and the benchmarks.
//!
//! Snapshots are real state too (the `SnapshotDriver` impl): snapshots, volumes restored from them and
//! in-place restores. A driver loaded from `<dir>/<stem>.yaml` keeps that state in
//! `<dir>/<stem>.snapshots.yaml` ([`state_path`]), written before each action reports success
//! and re-read when it changes, so a restart or another stork replica sees the same volumes
//! ([`MockDriver::load_with_state_file`] puts it elsewhere).
//! The topology file itself is never written.

mod snapshots;
mod state;
mod topology;

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::PersistentVolume;
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio_util::sync::CancellationToken;

use self::state::{Records, RestoredVolume};
use super::{Driver, DriverNode, Error, NodeInventory, SnapshotDriver, Volume};
use crate::metrics::FileLabels;

use self::topology::read_topology;
pub use self::{
    snapshots::REPLICAS_PARAMETER,
    state::state_path,
    topology::{Topology, TopologyNode, TopologyVolume},
};

/// StorageClass provisioner (and CSI driver name) the mock driver owns.
pub const PROVISIONER: &str = "mock.stork.libopenstorage.org";
/// Name prefix of the mock driver's CSI controller pods (as Stork's Portworx and mock drivers).
pub const CSI_POD_PREFIX: &str = "px-csi-ext";
/// How long an in-place restore runs before the volume takes the snapshot's content: long enough
/// for an e2e test to see the claim's pods held Pending.
pub const IN_PLACE_RESTORE_TIME: Duration = Duration::from_secs(3);

/// What readers see: the node inventory and every volume by id (topology volumes, with in-place
/// restores applied, and volumes restored from snapshots). Rebuilt whole after each change.
#[derive(Debug, Default)]
struct State {
    inventory: Arc<NodeInventory>,
    volumes: HashMap<String, Arc<Volume>>,
}

/// What the driver knows, from which [`State`] is built. Guarded by one mutex so that reloads and
/// snapshot actions (read-modify-write of the state file) never interleave.
#[derive(Debug, Default)]
struct Inner {
    topology: Topology,
    inventory: Arc<NodeInventory>,
    /// Ids of the topology file's volumes: stork may not create, delete or shadow these.
    topology_volumes: HashSet<String>,
    records: Records,
}

impl Inner {
    fn new(topology: Topology, records: Records) -> Self {
        let mut inner = Self { records, ..Self::default() };
        inner.set_topology(topology);
        inner
    }

    fn set_topology(&mut self, topology: Topology) {
        let nodes = topology
            .nodes
            .iter()
            .cloned()
            .map(|n| {
                let name = n.name.unwrap_or_else(|| n.id.clone());
                DriverNode {
                    hostname: n.hostname.unwrap_or_else(|| name.clone()).to_lowercase(),
                    id: n.id,
                    name,
                    ips: n.ips,
                    rack: n.rack.unwrap_or_default(),
                    zone: n.zone.unwrap_or_default(),
                    region: n.region.unwrap_or_default(),
                    status: n.status,
                }
            })
            .collect();
        self.inventory = Arc::new(NodeInventory::new(nodes));
        self.topology_volumes = topology.volumes.iter().map(|v| v.id.clone()).collect();
        self.topology = topology;
    }

    fn state(&self) -> State {
        let mut volumes = HashMap::with_capacity(self.topology.volumes.len() + self.records.volumes.len());
        for v in &self.topology.volumes {
            let mut vol = Volume {
                id: v.id.clone(),
                replicas: v.replicas.clone(),
                labels: v.labels.clone(),
                anti_hyperconvergence: v.anti_hyperconvergence,
                windows: v.windows,
                ..Volume::default()
            };
            if let Some(o) = self.records.overrides.get(&v.id) {
                vol.replicas.clone_from(&o.replicas);
                vol.labels.clone_from(&o.labels);
            }
            volumes.insert(v.id.clone(), Arc::new(vol));
        }
        for (id, r) in &self.records.volumes {
            if volumes.contains_key(id) {
                // The topology file gained a volume stork had restored under the same id; the
                // file is the operator's word, so it wins.
                tracing::warn!(volume = %id, "restored volume is shadowed by a topology volume of the same id");
                continue;
            }
            volumes.insert(id.clone(), Arc::new(r.volume(id)));
        }
        State { inventory: self.inventory.clone(), volumes }
    }
}

impl RestoredVolume {
    fn volume(&self, id: &str) -> Volume {
        Volume {
            id: id.to_string(),
            replicas: self.replicas.clone(),
            labels: self.labels.clone(),
            anti_hyperconvergence: self.anti_hyperconvergence,
            windows: self.windows,
            ..Volume::default()
        }
    }
}

/// The mock driver. Readers see an atomically swapped state and never block.
pub struct MockDriver {
    path: Option<PathBuf>,
    state_path: Option<PathBuf>,
    state: ArcSwap<State>,
    claims: super::claims::ClaimIndexSlot,
    inner: Mutex<Inner>,
    restore_time: Duration,
    /// Why the files on disk are not what is served, if they are not.
    problem: Mutex<Option<String>>,
    config_errors: Option<Family<FileLabels, Counter>>,
}

impl MockDriver {
    /// A driver over an in-memory topology (tests, benchmarks). Snapshot state stays in memory.
    pub fn from_topology(topology: Topology) -> Self {
        Self::new(None, Inner::new(topology, Records::default()))
    }

    /// Loads the topology file and its snapshot state file ([`state_path`]; missing means none
    /// yet); fails with the path and the problem if either is unusable.
    pub fn load(path: &Path) -> Result<Self, Error> {
        Self::load_with_state_file(path, &state_path(path))
    }

    /// As [`Self::load`], with the snapshot state in `state` instead of next to the topology
    /// (for a topology on a read-only mount, such as a ConfigMap volume).
    pub fn load_with_state_file(path: &Path, state: &Path) -> Result<Self, Error> {
        let topology = read_topology(path)?;
        let records = state::read(state)?;
        let files = Some((path.to_path_buf(), state.to_path_buf()));
        Ok(Self::new(files, Inner::new(topology, records)))
    }

    fn new(files: Option<(PathBuf, PathBuf)>, inner: Inner) -> Self {
        let (path, state_path) = files.unzip();
        Self {
            state_path,
            path,
            state: ArcSwap::from_pointee(inner.state()),
            claims: Default::default(),
            inner: Mutex::new(inner),
            restore_time: IN_PLACE_RESTORE_TIME,
            problem: Mutex::new(None),
            config_errors: None,
        }
    }

    /// Counts refused files into `counter` (`stork_driver_config_errors_total`).
    pub fn with_error_counter(mut self, counter: Family<FileLabels, Counter>) -> Self {
        // Both series exist from the start at 0, so an alert on the rate (or on absence) works.
        for file in ["topology", "state"] {
            drop(counter.get_or_create(&FileLabels { file }));
        }
        self.config_errors = Some(counter);
        self
    }

    /// Serves a new state; the claim index is redone, since volumes may have changed.
    fn publish(&self, state: State) {
        self.state.store(Arc::new(state));
        self.claims.volumes_changed();
    }

    fn refused(&self, file: &'static str) {
        if let Some(c) = &self.config_errors {
            c.get_or_create(&FileLabels { file }).inc();
        }
    }

    /// Sets how long an in-place restore takes (default [`IN_PLACE_RESTORE_TIME`]).
    pub fn with_in_place_restore_time(mut self, restore_time: Duration) -> Self {
        self.restore_time = restore_time;
        self
    }

    /// The snapshot state file, when the driver was loaded from a topology file.
    pub fn state_file(&self) -> Option<&Path> {
        self.state_path.as_deref()
    }

    /// Re-reads the topology and snapshot state files. A file that fails to read keeps its
    /// previous content in force; the first failure is returned.
    pub fn reload(&self) -> Result<(), Error> {
        let (Some(path), Some(state_path)) = (&self.path, &self.state_path) else {
            return Ok(());
        };
        let mut inner = self.lock();
        let mut changed = false;
        let topology = read_topology(path).map(|t| {
            if t != inner.topology {
                tracing::info!(
                    path = %path.display(),
                    nodes = t.nodes.len(),
                    volumes = t.volumes.len(),
                    "mock topology reloaded"
                );
                inner.set_topology(t);
                changed = true;
            }
        });
        let records = state::read(state_path).and_then(|r| {
            // stork writes the state file whole (temp file, rename), so an empty one was not
            // written by stork: refuse it rather than forget every snapshot and restore.
            if r == Records::default() && inner.records != Records::default() && state::is_blank(state_path) {
                return Err(Error::State {
                    path: state_path.display().to_string(),
                    message: "the file is empty; it would erase every snapshot and restored volume".into(),
                });
            }
            if r != inner.records {
                tracing::info!(
                    path = %state_path.display(),
                    snapshots = r.snapshots.len(),
                    volumes = r.volumes.len(),
                    restores = r.restores.len(),
                    "mock snapshot state reloaded"
                );
                inner.records = r;
                changed = true;
            }
            Ok(())
        });
        if changed {
            self.publish(inner.state());
        }
        drop(inner);
        let mut problems = Vec::new();
        if let Err(e) = &topology {
            self.refused("topology");
            problems.push(format!("mock topology refused, the last good one serves: {e}"));
        }
        if let Err(e) = &records {
            self.refused("state");
            problems.push(format!("mock snapshot state refused, the last good one serves: {e}"));
        }
        *self.problem.lock().unwrap_or_else(PoisonError::into_inner) =
            (!problems.is_empty()).then(|| problems.join("; "));
        match (topology, records) {
            (Err(e), Err(other)) => {
                tracing::warn!(error = %other, "keeping the previous mock snapshot state");
                Err(e)
            }
            (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
            (Ok(()), Ok(())) => Ok(()),
        }
    }

    /// Re-reads the topology and snapshot state whenever either file changes, until `cancel`.
    pub async fn watch(self: Arc<Self>, cancel: CancellationToken) {
        let (Some(path), Some(state_path)) = (self.path.clone(), self.state_path.clone()) else {
            return;
        };
        let mut watch = match crate::watch::FileWatch::new(&[path.clone(), state_path], Duration::from_secs(5)) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot watch mock topology; changes need a restart");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                alive = watch.changed() => {
                    if !alive { return; }
                    if let Err(e) = self.reload() {
                        tracing::warn!(error = %e, "keeping the previous mock driver state");
                    }
                }
            }
        }
    }

    /// The guarded state; a panic elsewhere while holding it leaves consistent data (every
    /// change is built aside and swapped in), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Driver for MockDriver {
    fn name(&self) -> &str {
        "mock"
    }

    fn owns_provisioner(&self, provisioner: &str) -> bool {
        provisioner == PROVISIONER
    }

    fn nodes(&self) -> Result<Arc<NodeInventory>, Error> {
        Ok(self.state.load().inventory.clone())
    }

    fn volume(&self, pv: &PersistentVolume) -> Result<Option<Arc<Volume>>, Error> {
        let name = pv.metadata.name.as_deref().unwrap_or_default();
        Ok(self.state.load().volumes.get(name).cloned())
    }

    fn csi_pod_prefix(&self) -> Option<&str> {
        Some(CSI_POD_PREFIX)
    }

    fn claim_index(&self) -> Option<&super::claims::ClaimIndexSlot> {
        Some(&self.claims)
    }

    fn snapshots(&self) -> Option<&dyn SnapshotDriver> {
        Some(self)
    }

    fn config_problem(&self) -> Option<String> {
        self.problem.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[cfg(test)]
mod tests;
