//! What the harness installs from `manifests/` once the control plane is up: the CRDs, and
//! stork's webhooks (after stork is ready), each waited for until the apiserver serves it.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::locate::repo_root;

/// Applies `manifests/webhooks.yaml` as a user would, with the harness CA as `caBundle` (the
/// apiserver reaches `stork-service.kube-system:443` through the service map), then waits until
/// the apiserver calls them: a dry-run restore PVC without its annotation gets denied.
pub(crate) fn register_webhooks(kubeconfig: &Path, dir: &Path) -> Result<()> {
    use base64::Engine;
    use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
    use kube::api::{Api, PostParams};
    let text = std::fs::read_to_string(repo_root().join("manifests/webhooks.yaml"))?;
    let ca = base64::engine::general_purpose::STANDARD.encode(std::fs::read(dir.join("ca.crt"))?);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).context("parse manifests/webhooks.yaml")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let client = crate::client_for(kubeconfig).await?;
        let pp = PostParams::default();
        for mut doc in docs {
            for hook in doc["webhooks"].as_array_mut().into_iter().flatten() {
                hook["clientConfig"]["caBundle"] = json!(ca);
            }
            match doc["kind"].as_str() {
                Some("MutatingWebhookConfiguration") => {
                    let obj: MutatingWebhookConfiguration = serde_json::from_value(doc)?;
                    Api::<MutatingWebhookConfiguration>::all(client.clone()).create(&pp, &obj).await?;
                }
                Some("ValidatingWebhookConfiguration") => {
                    let obj: ValidatingWebhookConfiguration = serde_json::from_value(doc)?;
                    Api::<ValidatingWebhookConfiguration>::all(client.clone()).create(&pp, &obj).await?;
                }
                other => bail!("unexpected kind {other:?} in manifests/webhooks.yaml"),
            }
        }
        let sc: k8s_openapi::api::storage::v1::StorageClass = serde_json::from_value(
            json!({"metadata": {"name": "stork-snapshot-sc"}, "provisioner": "stork-snapshot"}),
        )?;
        let _ = Api::<k8s_openapi::api::storage::v1::StorageClass>::all(client.clone()).create(&pp, &sc).await;
        let probe: k8s_openapi::api::core::v1::PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "webhook-probe"},
            "spec": {"storageClassName": "stork-snapshot-sc", "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}
        }))?;
        let pvcs = Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(client, "default");
        let dry = PostParams { dry_run: true, ..PostParams::default() };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match pvcs.create(&dry, &probe).await {
                Err(kube::Error::Api(e)) if e.message.contains("snapshot.alpha.kubernetes.io/snapshot") => {
                    return Ok(());
                }
                other if Instant::now() > deadline => bail!("webhooks not called by the apiserver; last: {other:?}"),
                _ => tokio::time::sleep(Duration::from_millis(250)).await, // poll until the deadline
            }
        }
    })
}

/// Creates the CRDs of `manifests/crds.yaml` and waits until the apiserver serves them.
pub(crate) fn apply_crds(kubeconfig: &Path) -> Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, PostParams};
    let text = std::fs::read_to_string(repo_root().join("manifests/crds.yaml"))?;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).context("parse manifests/crds.yaml")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let client = crate::client_for(kubeconfig).await?;
        let api = Api::<CustomResourceDefinition>::all(client);
        let mut names = Vec::new();
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            let crd: CustomResourceDefinition = serde_json::from_value(doc)?;
            names.push(crd.metadata.name.clone().unwrap_or_default());
            match api.create(&PostParams::default(), &crd).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => bail!("creating CRD {:?}: {e}", crd.metadata.name),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for name in names {
            loop {
                let crd = api.get(&name).await?;
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .into_iter()
                    .flatten()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                if established {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("CRD {name} not Established after 30s");
                }
                tokio::time::sleep(Duration::from_millis(100)).await; // poll until the deadline
            }
        }
        Ok(())
    })
}

/// Creates the `stork-service` Service in kube-system with an `admin` port whose Endpoints lead
/// to the harness's stork (through the egress proxy, see [`crate::exec::STORK_ENDPOINT_IP`]), so
/// the API server's service proxy reaches `/explain` as in a real cluster.
pub(crate) fn register_service(kubeconfig: &Path, admin_port: u16) -> Result<()> {
    use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
    use kube::api::{Api, Patch, PatchParams};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let client = crate::client_for(kubeconfig).await?;
        let pp = PatchParams::apply("stork-e2e").force();
        let svc: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "stork-service", "namespace": "kube-system"},
            "spec": {"ports": [{"name": "admin", "port": 9090, "targetPort": admin_port}]}
        }))?;
        Api::<Service>::namespaced(client.clone(), "kube-system").patch("stork-service", &pp, &Patch::Apply(&svc)).await?;
        // The service proxy only dials an address whose targetRef is a Pod with that IP: a pod
        // object stands for the harness's stork (no scheduler picks it up, so nothing runs it).
        let pods = Api::<Pod>::namespaced(client.clone(), "kube-system");
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "stork-harness", "namespace": "kube-system"},
            "spec": {"schedulerName": "stork-e2e-nobody", "containers": [{"name": "stork", "image": "stork"}]}
        }))?;
        let pod = pods.patch("stork-harness", &pp, &Patch::Apply(&pod)).await?;
        let ip = crate::exec::STORK_ENDPOINT_IP;
        let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}});
        pods.patch_status("stork-harness", &PatchParams::default(), &Patch::Merge(&status)).await?;
        let target = json!({"kind": "Pod", "namespace": "kube-system", "name": "stork-harness", "uid": pod.metadata.uid});
        let ep: Endpoints = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "stork-service", "namespace": "kube-system"},
            "subsets": [{"addresses": [{"ip": ip, "targetRef": target}], "ports": [{"name": "admin", "port": admin_port}]}]
        }))?;
        Api::<Endpoints>::namespaced(client, "kube-system").patch("stork-service", &pp, &Patch::Apply(&ep)).await?;
        anyhow::Ok(())
    })
}
