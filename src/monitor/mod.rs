//! Storage health monitor: deletes pods whose node lost its storage driver so their
//! controllers recreate them on a healthy node holding a replica. Decisions live in [`plan`]
//! (pure); this module watches pods, asks the driver, and carries the decisions out while this
//! replica is the leader.

pub mod plan;
pub mod pods;

use std::{collections::BTreeSet, sync::Arc, time::Instant};

use k8s_openapi::api::{core::v1::Pod, storage::v1::VolumeAttachment};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Preconditions},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use plan::{Cause, Deletion, Planner, PodInfo, Settings, Skip};

use crate::{
    cluster::ClusterView,
    driver::Driver,
    events::{EventSink, PodEvent, PodRef},
    metrics::{Metrics, ReasonLabels},
};

/// Errors carrying out a decision.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("api request failed")]
    Kube(#[from] kube::Error),
}

/// Everything the monitor loop needs.
pub struct Monitor {
    /// API client.
    pub client: Client,
    /// Cached PVCs, PVs, classes and nodes.
    pub cluster: ClusterView,
    /// The storage driver.
    pub driver: Arc<dyn Driver>,
    /// Event queue.
    pub events: EventSink,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Timings and limits.
    pub settings: Settings,
}

impl Monitor {
    /// Reads the cluster's Pod cache; decides and acts only while `leader` is true; ends on
    /// `cancel`.
    pub async fn run(self, mut leader: watch::Receiver<bool>, cancel: CancellationToken) {
        let act = async {
            loop {
                if leader.wait_for(|l| *l).await.is_err() {
                    return;
                }
                self.cluster.wait_pods_synced().await;
                tracing::info!("leader: health monitor active");
                // A new term re-proves every outage from scratch.
                let mut planner = Planner::new(self.settings.clone());
                while *leader.borrow() {
                    let wake_at = self.tick(&mut planner, &self.cluster.pods(), &leader).await;
                    let sleep = tokio::time::sleep_until(wake_at.into());
                    tokio::select! {
                        _ = sleep => {}
                        changed = leader.changed() => if changed.is_err() { return },
                    }
                }
                self.metrics.monitor.tracked.set(0);
                tracing::info!("lost leadership: health monitor paused");
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = act => {}
        }
    }

    /// One planner step and its actions; returns when to step again.
    async fn tick(&self, planner: &mut Planner, pods: &[Arc<Pod>], leader: &watch::Receiver<bool>) -> Instant {
        let infos: Vec<PodInfo> =
            pods.iter().filter_map(|p| pods::pod_info(self.driver.as_ref(), &self.cluster, p)).collect();
        let nodes = pods::node_addresses_of(&self.cluster, &infos);
        let inventory = self.driver.nodes();
        let answer = inventory.as_deref().map_err(ToString::to_string);
        let step = planner.step(Instant::now(), answer, &nodes, &infos);
        let m = &self.metrics.monitor;
        m.passes.inc();
        m.tracked.set(i64::try_from(planner.tracked().len()).unwrap_or(i64::MAX));
        for skip in &step.skipped {
            m.skipped.get_or_create(&ReasonLabels { reason: skip.as_str() }).inc();
        }
        let mut cleaned = BTreeSet::new();
        for d in &step.deletions {
            // Leadership can end mid-batch: stop at once rather than act as a former leader.
            if !*leader.borrow() {
                m.skipped.get_or_create(&ReasonLabels { reason: "not_leader" }).inc();
                break;
            }
            let outcome = self.carry_out(d).await;
            m.actions.get_or_create(&ReasonLabels { reason: outcome }).inc();
            if outcome == "deleted" {
                m.rescheduled.inc();
                cleaned.insert(d.pod.node.clone());
            }
        }
        for node in cleaned {
            if let Err(error) = self.remove_attachments(&node).await {
                tracing::warn!(%node, %error, "failed to remove volume attachments");
            }
        }
        step.wake_at
    }

    /// Records the event and, unless dry-running, deletes the pod (grace 0, UID precondition).
    async fn carry_out(&self, d: &Deletion) -> &'static str {
        let p = &d.pod;
        let kind = if p.csi { "CSI Pod" } else { "Pod" };
        let (reason, message) = match d.cause {
            Cause::DriverOffline(status) => (
                "StorageDriverOffline",
                format!("Deleting {kind} from Node {} due to volume driver status: {status}", p.node),
            ),
            Cause::NodeLost => ("NodeLost", format!("Force deleting {kind} as it's in unknown state.")),
        };
        let dry = self.settings.dry_run;
        let message = if dry { format!("[dry run] {message}") } else { message };
        let pod_ref = PodRef { namespace: p.namespace.clone(), name: p.name.clone(), uid: p.uid.clone() };
        self.events.send(pod_ref, PodEvent::warning(reason, message));
        if dry {
            return "dry_run";
        }
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(p.uid.clone()), resource_version: None }),
            ..DeleteParams::default()
        };
        let api = Api::<Pod>::namespaced(self.client.clone(), &p.namespace);
        match api.delete(&p.name, &params).await {
            Ok(_) => {
                tracing::info!(ns = %p.namespace, name = %p.name, node = %p.node, reason, "pod deleted");
                "deleted"
            }
            // Gone already, or the name now belongs to a new pod (UID precondition): not ours.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => "gone",
            Err(error) => {
                tracing::warn!(ns = %p.namespace, name = %p.name, %error, "failed to delete pod");
                "delete_failed"
            }
        }
    }

    /// Deletes the VolumeAttachments on `node` of PVs this driver owns, so the volumes can
    /// attach elsewhere; attachments of other drivers are left alone.
    async fn remove_attachments(&self, node: &str) -> Result<(), Error> {
        let api = Api::<VolumeAttachment>::all(self.client.clone());
        for va in api.list(&ListParams::default()).await? {
            let pv = va.spec.source.persistent_volume_name.as_deref().and_then(|n| self.cluster.pv(n));
            if va.spec.node_name != node || !pv.is_some_and(|pv| self.driver.owns_pv(&pv)) {
                continue;
            }
            let name = va.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => tracing::info!(%node, attachment = %name, "volume attachment removed"),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
