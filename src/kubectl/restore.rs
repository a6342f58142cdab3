//! `kubectl stork restore PVC --snapshot SNAP [--in-place]`: a new claim of `stork-snapshot-sc`
//! from the snapshot, or a `VolumeSnapshotRestore` of the claim the snapshot was taken of; then
//! waits, printing progress, until it is done or failed.

use std::{io::Write, time::Duration};

use clap::Args;
use k8s_openapi::api::{core::v1::PersistentVolumeClaim, events::v1::Event};
use kube::{Api, Client, ResourceExt, api::ListParams};
use serde_json::json;

use super::{Error, api_error, create::create, did_you_mean};
use crate::model::crd::{VolumeSnapshot, VolumeSnapshotRestore};

/// `restore PVC --snapshot SNAP`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The claim to create (or, with --in-place, the claim to roll back).
    pub pvc: String,
    /// The snapshot to restore.
    #[arg(long)]
    pub snapshot: String,
    /// Roll the snapshot's own claim back instead of creating a new one (its pods are stopped
    /// while the data is restored).
    #[arg(long)]
    pub in_place: bool,
    /// How long to wait.
    #[arg(long, default_value = "5m", value_parser = crate::cli::parse_duration)]
    pub timeout: Duration,
}

/// Runs `restore`.
pub async fn run(client: &Client, ns: &str, a: &RestoreArgs, out: &mut dyn Write) -> Result<(), Error> {
    let snaps: Api<VolumeSnapshot> = Api::namespaced(client.clone(), ns);
    let resource = "volumesnapshots.volumesnapshot.external-storage.k8s.io";
    let snap = match snaps.get_opt(&a.snapshot).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            let all = snaps.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
            let hint = did_you_mean(&a.snapshot, all.iter().filter_map(|s| s.metadata.name.as_deref()));
            return Err(Error::NotFound(format!("snapshot {} not found in namespace {ns}{hint}", a.snapshot)));
        }
        Err(e) => return Err(api_error(e, &format!("get volumesnapshots in namespace {ns}"), resource)),
    };
    if let Some(err) = snap.status.as_ref().and_then(|s| s.error()) {
        return Err(Error::Failed(format!("snapshot {} failed, nothing to restore: {err}", a.snapshot)));
    }
    if a.in_place { in_place(client, ns, a, &snap, out).await } else { new_claim(client, ns, a, &snap, out).await }
}

async fn new_claim(
    client: &Client,
    ns: &str,
    a: &RestoreArgs,
    snap: &VolumeSnapshot,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let source = pvcs.get_opt(&snap.spec.persistent_volume_claim_name).await.ok().flatten();
    let size = source
        .as_ref()
        .and_then(|c| c.spec.as_ref())
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map_or("1Gi".to_string(), |q| q.0.clone());
    let modes = source
        .as_ref()
        .and_then(|c| c.spec.as_ref())
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_else(|| vec!["ReadWriteOnce".into()]);
    let claim = json!({
        "metadata": {"name": a.pvc, "annotations": {"snapshot.alpha.kubernetes.io/snapshot": a.snapshot}},
        "spec": {"storageClassName": "stork-snapshot-sc", "accessModes": modes, "resources": {"requests": {"storage": size}}}
    });
    create(&pvcs, claim, &format!("claim {ns}/{}", a.pvc), "persistentvolumeclaims").await?;
    writeln!(out, "persistentvolumeclaim {} created from snapshot {}", a.pvc, a.snapshot).map_err(super::output::io)?;
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    wait(a.timeout, out, || async {
        let c = pvcs.get(&a.pvc).await.map_err(|e| Step::Failed(e.to_string()))?;
        let phase = c.status.and_then(|s| s.phase).unwrap_or_else(|| "Pending".into());
        if phase == "Bound" {
            return Ok(format!("claim {} is Bound: restored", a.pvc));
        }
        let failed =
            events.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default().into_iter().find(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(a.pvc.as_str())
                    && e.reason.as_deref() == Some("ProvisioningFailed")
            });
        match failed {
            Some(e) => Err(Step::Failed(format!("restore failed: {}", e.note.unwrap_or_default()))),
            None => Err(Step::Waiting(format!("claim {} is {phase}", a.pvc))),
        }
    })
    .await
}

async fn in_place(
    client: &Client,
    ns: &str,
    a: &RestoreArgs,
    snap: &VolumeSnapshot,
    out: &mut dyn Write,
) -> Result<(), Error> {
    if snap.spec.persistent_volume_claim_name != a.pvc {
        return Err(Error::Usage(format!(
            "snapshot {} was taken of claim {}, not {}: an in-place restore rolls back the claim it was taken of",
            a.snapshot, snap.spec.persistent_volume_claim_name, a.pvc
        )));
    }
    let api: Api<VolumeSnapshotRestore> = Api::namespaced(client.clone(), ns);
    let name = format!("{}-restore-{}", a.pvc, jiff::Timestamp::now().strftime("%Y%m%d%H%M%S"));
    let obj = json!({
        "apiVersion": "stork.libopenstorage.org/v1alpha1", "kind": "VolumeSnapshotRestore",
        "metadata": {"name": name}, "spec": {"sourceName": a.snapshot}
    });
    create(&api, obj, &format!("restore {ns}/{name}"), "volumesnapshotrestores.stork.libopenstorage.org").await?;
    writeln!(out, "volumesnapshotrestore {name} created: rolling {} back to {}", a.pvc, a.snapshot)
        .map_err(super::output::io)?;
    wait(a.timeout, out, || async {
        let r = api.get(&name).await.map_err(|e| Step::Failed(e.to_string()))?;
        let st = r.status.clone().unwrap_or_default();
        match st.status.as_str() {
            "Successful" => {
                Ok(format!("restore {} Successful: {} holds snapshot {}'s data", r.name_any(), a.pvc, a.snapshot))
            }
            "Failed" => Err(Step::Failed(format!("restore failed: {}", st.reason))),
            "" => Err(Step::Waiting("restore accepted".into())),
            s => Err(Step::Waiting(format!("{s}: {}", st.reason))),
        }
    })
    .await
}

enum Step {
    Waiting(String),
    Failed(String),
}

/// Polls `probe` every second, printing each new progress line, until done, failed or timed out.
async fn wait<F, Fut>(timeout: Duration, out: &mut dyn Write, mut probe: F) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<String, Step>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match probe().await {
            Ok(done) => return writeln!(out, "{done}").map_err(super::output::io),
            Err(Step::Failed(why)) => return Err(Error::Failed(why)),
            Err(Step::Waiting(now)) => {
                if now != last {
                    writeln!(out, "  … {now}").map_err(super::output::io)?;
                    last = now;
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Failed(format!("still not done after {}s (last: {last})", timeout.as_secs())));
        }
        tokio::time::sleep(Duration::from_secs(1)).await; // poll until the deadline
    }
}
