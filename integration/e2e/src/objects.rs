//! Kubernetes objects the tests create, built from JSON, plus waits on them.

use std::time::Duration;

use k8s_openapi::api::{
    core::v1::{PersistentVolume, PersistentVolumeClaim, Pod},
    storage::v1::StorageClass,
};
use kube::{Api, Client, api::PostParams};
use serde_json::{Value, json};

use crate::wait_for;

/// How long object state may take to converge.
pub const WAIT: Duration = Duration::from_secs(90);

/// The mock driver's provisioner.
pub const PROVISIONER: &str = "mock.stork.libopenstorage.org";

/// Creates an object from JSON; an existing one is fine.
pub async fn create<K>(api: &Api<K>, obj: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(obj).expect("object");
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("create failed: {e}"),
    }
}

/// The mock driver's StorageClass `mock-sc`.
pub async fn storage_class(client: &Client) {
    let sc = json!({"metadata": {"name": "mock-sc"}, "provisioner": PROVISIONER, "volumeBindingMode": "Immediate"});
    create(&Api::<StorageClass>::all(client.clone()), sc).await;
}

/// A PV named `pv` and a claim pre-bound to each other by name; the real PV controller binds them.
pub async fn bound_claim(client: &Client, ns: &str, claim: &str, pv: &str) {
    let source = json!({"csi": {"driver": PROVISIONER, "volumeHandle": pv}});
    bound_claim_with(client, ns, claim, pv, "mock-sc", source).await;
}

/// Like [`bound_claim`], for any class, the PV reaching its volume through `source` (an object
/// with one PV volume source, e.g. `{"csi": {…}}` or `{"portworxVolume": {…}}`).
pub async fn bound_claim_with(client: &Client, ns: &str, claim: &str, pv: &str, class: &str, source: Value) {
    let mut spec = json!({
        "storageClassName": class, "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": "Retain",
        // Pre-bound from both sides: the PV controller completes the binding from
        // whichever object it syncs first.
        "claimRef": {"namespace": ns, "name": claim},
    });
    if let (Some(spec), Some(source)) = (spec.as_object_mut(), source.as_object()) {
        spec.extend(source.clone());
    }
    create(&Api::<PersistentVolume>::all(client.clone()), json!({"metadata": {"name": pv}, "spec": spec})).await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    create(
        &pvcs,
        json!({
            "metadata": {"name": claim},
            "spec": {"storageClassName": class, "volumeName": pv, "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}
        }),
    )
    .await;
    // The PV controller sometimes leaves a pre-bound claim Pending for minutes (its resync does
    // not always retry it); an annotation change on the claim every few seconds re-queues it.
    let started = std::time::Instant::now();
    let pokes = std::sync::atomic::AtomicU64::new(0);
    wait_for(&format!("pvc {ns}/{claim} Bound"), WAIT, || async {
        let c = pvcs.get(claim).await.map_err(|e| e.to_string())?;
        let phase = c.status.and_then(|s| s.phase).unwrap_or_default();
        if phase == "Bound" {
            return Ok(());
        }
        let due = started.elapsed().as_secs() / 5;
        if due > pokes.load(std::sync::atomic::Ordering::Relaxed) {
            pokes.store(due, std::sync::atomic::Ordering::Relaxed);
            let patch = json!({"metadata": {"annotations": {"stork-e2e/poke": due.to_string()}}});
            let _ = pvcs.patch(claim, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await;
        }
        Err(phase)
    })
    .await;
}

/// A pod on the `stork` scheduler using `claims`.
pub async fn pod(client: &Client, ns: &str, name: &str, claims: &[&str]) -> Api<Pod> {
    let volumes: Vec<Value> =
        claims.iter().map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}})).collect();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    create(
        &pods,
        json!({
            "metadata": {"name": name},
            "spec": {"schedulerName": "stork", "containers": [{"name": "app", "image": "fake"}], "volumes": volumes}
        }),
    )
    .await;
    pods
}

/// Waits until the pod is bound and returns its node.
pub async fn scheduled_node(pods: &Api<Pod>, name: &str) -> String {
    wait_for(&format!("pod {name} to be scheduled"), WAIT, || async {
        let p = pods.get(name).await.map_err(|e| e.to_string())?;
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
        node.ok_or_else(|| format!("{:?}", p.status.and_then(|s| s.conditions)))
    })
    .await
}

/// A mock-topology node entry.
pub fn driver_node(id: &str, ip: &str, status: &str) -> Value {
    json!({"id": id, "ips": [ip], "status": status})
}
