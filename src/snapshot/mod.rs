//! Snapshots: the snapshot controller (`VolumeSnapshot` → driver snapshot + `VolumeSnapshotData`),
//! the `stork-snapshot` restore provisioner (a PVC annotated with a snapshot → a new volume and a
//! PV pre-bound to it) and in-place restore (`VolumeSnapshotRestore`).
//!
//! All three run only on the leader. Decisions are pure functions in each submodule; the
//! reconcilers read the object, decide, and carry the decision out, recording what they are about
//! to do before they do it so a restart never repeats a driver action.

mod controller;
mod group;

mod provisioner;
mod restore;
mod schedule;

use std::{sync::Arc, time::Duration};

use kube::{Api, Client, api::ListParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{cluster::ClusterView, driver::Driver, events::EventSink, model::crd};

pub use controller::FINALIZER as SNAPSHOT_FINALIZER;
pub use provisioner::{IDENTITY_ANNOTATION, PROVISIONER_IDENTITY};
pub use restore::FINALIZER as RESTORE_FINALIZER;
pub use schedule::{Timing as ScheduleTiming, plan::next_trigger};

/// Errors of the snapshot controllers. Every one ends as an event on the object and a retry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("api request failed: {0}")]
    Kube(#[from] kube::Error),
    /// The storage driver failed.
    #[error(transparent)]
    Driver(#[from] crate::driver::SnapshotError),
    /// The object asks for something that cannot work; the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    /// Adding or removing a finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

/// Timings of the snapshot controllers.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Re-check of a settled object (Stork: 10 s for restores, 60 s resync for snapshots).
    pub resync: Duration,
    /// Re-check of an object that is in progress or failed (Stork: 2 s).
    pub retry: Duration,
    /// How long pods of an in-place restore may take to stop before they are force-deleted
    /// (Stork: 120 s).
    pub pod_stop_timeout: Duration,
    /// Retries and timeouts of pre- and post-snapshot rule commands.
    pub rules: crate::rule::Settings,
    /// Time zone of schedule policies, and the length of an interval minute.
    pub schedule: schedule::Timing,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(60),
            retry: Duration::from_secs(2),
            pod_stop_timeout: Duration::from_secs(120),
            rules: crate::rule::Settings::default(),
            schedule: schedule::Timing::default(),
        }
    }
}

/// What the snapshot controllers share.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Cached PVCs, PVs, classes and nodes.
    pub cluster: ClusterView,
    /// The storage driver (its [`Driver::snapshots`] side does the work).
    pub driver: Arc<dyn Driver>,
    /// Event queue.
    pub events: EventSink,
    /// Timings.
    pub settings: Settings,
}

impl Context {
    /// The rule executor, with this context's client and settings.
    pub fn rules(&self) -> crate::rule::Executor {
        crate::rule::Executor::new(self.client.clone(), self.settings.rules.clone())
    }
}

/// Runs the snapshot controllers (snapshots, group snapshots, schedules, restore provisioner,
/// in-place restores) while this replica leads; stops them when leadership is lost and
/// starts them afresh on the next term. Ends on `cancel`.
pub async fn run(ctx: Arc<Context>, mut leader: watch::Receiver<bool>, cancel: CancellationToken) {
    if ctx.driver.snapshots().is_none() {
        tracing::info!(driver = ctx.driver.name(), "the storage driver takes no snapshots; snapshot controllers off");
        return;
    }
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            l = leader.wait_for(|l| *l) => if l.is_err() { return },
        }
        tracing::info!("leader: snapshot controllers active");
        let work = async {
            wait_for_crds(&ctx.client).await;
            tokio::join!(
                controller::run(ctx.clone()),
                provisioner::run(ctx.clone()),
                restore::run(ctx.clone()),
                group::run(ctx.clone()),
                schedule::run(ctx.clone()),
            );
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = leader.wait_for(|l| !*l) => tracing::info!("leadership lost: snapshot controllers stopped"),
            _ = work => {}
        }
    }
}

/// Waits until the snapshot CRDs are served, saying once how to install them.
async fn wait_for_crds(client: &Client) {
    let mut told = false;
    loop {
        let snaps =
            Api::<crd::VolumeSnapshot>::all(client.clone()).list_metadata(&ListParams::default().limit(1)).await;
        let restores =
            Api::<crd::VolumeSnapshotRestore>::all(client.clone()).list_metadata(&ListParams::default().limit(1)).await;
        match (snaps, restores) {
            (Ok(_), Ok(_)) => return,
            (Err(e), _) | (_, Err(e)) if !told => {
                tracing::warn!(error = %e, "snapshot CRDs are not served; apply manifests/crds.yaml (`stork crds`)");
                told = true;
            }
            _ => {}
        }
        // poll until the CRDs appear; there is no deadline: controllers wait for them
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}
