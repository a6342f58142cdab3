//! Cluster setup for a run: KWOK nodes, bound claims, warm-up pods.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::json;

use super::{LABEL, Profile, WorkSet, concurrently, create, create_pod, node_ip, node_name, pod_json, poll};
use crate::objects::PROVISIONER;

/// Creates `n` KWOK nodes concurrently (see [`wait_nodes_ready`]).
pub async fn create_nodes(client: &Client, n: usize) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let a = api.clone();
    concurrently(n, move |i| {
        let api = a.clone();
        async move {
            let name = node_name(i);
            let node = json!({
                "metadata": {
                    "name": name,
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok", LABEL: "node"}
                },
                "status": {"addresses": [{"type": "InternalIP", "address": node_ip(i)}, {"type": "Hostname", "address": name}]}
            });
            create(&api, node).await.map(|_| ()).with_context(|| format!("create node {name}"))
        }
    })
    .await
}

/// Waits once until all `n` nodes are Ready and untainted. The not-ready taint the apiserver
/// adds at creation is removed here as soon as a node is Ready: the node lifecycle controller
/// would do the same, but at the controller manager's 20 QPS.
pub async fn wait_nodes_ready(client: &Client, n: usize) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let lp = ListParams::default().labels(&format!("{LABEL}=node"));
    poll("all nodes Ready and untainted", Duration::from_millis(500), Duration::from_secs(300), || async {
        let list = api.list(&lp).await.map_err(|e| e.to_string())?;
        let mut tainted = Vec::new();
        let (mut ready, mut clean) = (0, 0);
        for node in &list.items {
            let is_ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let has_taints = node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some_and(|t| !t.is_empty());
            ready += usize::from(is_ready);
            match (is_ready, has_taints) {
                (true, true) => tainted.push(node.metadata.name.clone().unwrap_or_default()),
                (true, false) => clean += 1,
                _ => {}
            }
        }
        let tainted = Arc::new(tainted);
        let (a, t) = (api.clone(), tainted.clone());
        let untaint = concurrently(tainted.len(), move |i| {
            let (api, name) = (a.clone(), t[i].clone());
            async move {
                let patch = json!({"spec": {"taints": null}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                Ok(())
            }
        });
        untaint.await.map_err(|e| e.to_string())?;
        if clean == n {
            Ok(())
        } else {
            Err(format!("{} nodes, {ready} Ready, {clean} Ready and untainted", list.items.len()))
        }
    })
    .await
}

/// Claim `c-<i>` of `set` and its PV, bound to each other as the PV controller leaves them:
/// the claim annotated bind-completed (what kube-scheduler checks), the PV's claimRef carrying
/// the claim's uid, both statuses Bound.
async fn bind_pair(client: Client, set: Arc<WorkSet>, i: usize) -> Result<()> {
    let (claim, pv) = (format!("c-{i}"), set.pv(i));
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &set.ns);
    let pvs: Api<PersistentVolume> = Api::all(client);
    let created = create(
        &pvcs,
        json!({
            "metadata": {"name": claim, "labels": {LABEL: "claim"},
                         "annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
            "spec": {"storageClassName": "mock-sc", "volumeName": pv, "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}
        }),
    )
    .await
    .with_context(|| format!("create pvc {}/{claim}", set.ns))?;
    let uid = created.metadata.uid.context("claim without uid")?;
    create(
        &pvs,
        json!({
            "metadata": {"name": pv, "labels": {LABEL: "pv"}},
            "spec": {
                "storageClassName": "mock-sc", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": set.ns, "name": claim, "uid": uid},
                "csi": {"driver": PROVISIONER, "volumeHandle": pv}
            }
        }),
    )
    .await
    .with_context(|| format!("create pv {pv}"))?;
    mark_bound(&pvcs, &pvs, &claim, &pv).await
}

async fn mark_bound(
    pvcs: &Api<PersistentVolumeClaim>,
    pvs: &Api<PersistentVolume>,
    claim: &str,
    pv: &str,
) -> Result<()> {
    let pp = PatchParams::default();
    let status =
        json!({"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}});
    pvcs.patch_status(claim, &pp, &Patch::Merge(&status)).await.with_context(|| format!("bind pvc {claim}"))?;
    let status = json!({"status": {"phase": "Bound"}});
    pvs.patch_status(pv, &pp, &Patch::Merge(&status)).await.with_context(|| format!("bind pv {pv}"))?;
    Ok(())
}

/// Creates `per_set` bound claims in every set, then waits until all claims and PVs are Bound
/// (re-marking any the PV controller saw half-made and declared Lost).
pub async fn bind_claims(client: &Client, sets: &[WorkSet], per_set: usize) -> Result<()> {
    let sets: Vec<Arc<WorkSet>> = sets.iter().cloned().map(Arc::new).collect();
    let c = client.clone();
    let s = sets.clone();
    concurrently(sets.len() * per_set, move |k| bind_pair(c.clone(), s[k / per_set].clone(), k % per_set)).await?;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let total = sets.len() * per_set;
    poll("all claims and PVs Bound", Duration::from_millis(500), Duration::from_secs(180), || async {
        let mut bound_claims = 0;
        for set in &sets {
            let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &set.ns);
            let list =
                pvcs.list(&ListParams::default().labels(&format!("{LABEL}=claim"))).await.map_err(|e| e.to_string())?;
            for c in list.items {
                let name = c.metadata.name.clone().unwrap_or_default();
                if c.status.and_then(|s| s.phase).as_deref() == Some("Bound") {
                    bound_claims += 1;
                } else if let Some(pv) = c.spec.and_then(|s| s.volume_name) {
                    mark_bound(&pvcs, &pvs, &name, &pv).await.map_err(|e| format!("{e:#}"))?;
                }
            }
        }
        let list = pvs.list(&ListParams::default().labels(&format!("{LABEL}=pv"))).await.map_err(|e| e.to_string())?;
        let bound_pvs =
            list.items.iter().filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")).count();
        if bound_claims == total && bound_pvs >= total {
            Ok(())
        } else {
            Err(format!("{bound_claims}/{total} claims and {bound_pvs}/{total} PVs Bound"))
        }
    })
    .await
}

/// The warm-up set: claim `c-0` for the `stork` pod, `c-1` for the default one; their volumes
/// are on every node (see [`topology`]).
pub fn warm_up_set(ns: &str) -> WorkSet {
    WorkSet { ns: ns.into(), profile: Profile::Stork, salt: 0 }
}

/// Binds the warm-up claims (after every other claim is Bound) and schedules one pod per
/// profile on them. Both schedulers and stork then have every claim of the benchmark Bound in
/// their caches, as watches deliver in order. The `stork` pod insists on a replica node
/// (`preferLocalNodeOnly`; its volume is on every node), which also proves that stork has
/// loaded the topology.
pub async fn warm_up(client: &Client, ns: &str) -> Result<()> {
    bind_claims(client, &[warm_up_set(ns)], 2).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for (i, profile) in [Profile::Stork, Profile::Default].into_iter().enumerate() {
        let name = format!("warm-{}", profile.label());
        let annotations = match profile {
            Profile::Stork => json!({stork::knobs::PREFER_LOCAL_NODE_ONLY: "true"}),
            Profile::Default => json!({}),
        };
        let pod = pod_json(&name, &format!("c-{i}"), profile, json!({LABEL: "warm-up"}), annotations);
        create_pod(&pods, pod, profile).await?;
    }
    for profile in [Profile::Stork, Profile::Default] {
        let name = format!("warm-{}", profile.label());
        poll(
            &format!("warm-up pod {name} scheduled"),
            Duration::from_millis(250),
            Duration::from_secs(180),
            || async {
                let p = pods.get(&name).await.map_err(|e| e.to_string())?;
                match p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                    Some(n) => Ok(n),
                    None => Err(format!("{:?}", p.status.and_then(|s| s.conditions))),
                }
            },
        )
        .await?;
    }
    Ok(())
}
