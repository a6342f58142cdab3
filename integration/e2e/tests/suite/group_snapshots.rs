//! Group snapshots on the real control plane: one GroupVolumeSnapshot takes a snapshot of every
//! claim its selector picks inside one pre/post rule window (the mock driver takes them at one
//! instant), each restorable through `stork-snapshot-sc`; a group that cannot be taken fails in
//! PreChecks and leaves nothing behind.

use std::time::Instant;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use stork::model::{crd::VolumeSnapshot, group::GroupVolumeSnapshot};
use stork_e2e::{
    apps::{app_pod, driver_snapshot_time, event_notes, read, rule},
    kwok_nodes, namespace,
    objects::{WAIT, bound_claim, create, storage_class},
    shared, wait_for,
};

const GROUP_LABEL: &str = "stork.libopenstorage.org/group-snapshot";

/// The ids of the mock driver's snapshots.
fn snapshot_ids(state: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(state).unwrap_or_default();
    let v: serde_json::Value = serde_saphyr::from_str(&text).unwrap_or_default();
    v["snapshots"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

async fn label_claim(pvcs: &Api<PersistentVolumeClaim>, claim: &str) {
    let patch = json!({"metadata": {"labels": {"app": "grp"}}});
    pvcs.patch(claim, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("label the claim");
}

async fn group(client: &kube::Client, ns: &str, name: &str, pre: &str, post: &str) -> Api<GroupVolumeSnapshot> {
    let api: Api<GroupVolumeSnapshot> = Api::namespaced(client.clone(), ns);
    create(
        &api,
        json!({"apiVersion": "stork.libopenstorage.org/v1alpha1", "kind": "GroupVolumeSnapshot",
               "metadata": {"name": name},
               "spec": {"preExecRule": pre, "postExecRule": post, "pvcSelector": {"matchLabels": {"app": "grp"}}}}),
    )
    .await;
    api
}

/// Waits until the group settles (Successful or Failed) and returns its stage, status and message.
async fn settled(api: &Api<GroupVolumeSnapshot>, name: &str) -> (String, String, String) {
    wait_for(&format!("group snapshot {name} to settle"), WAIT, || async {
        let g = api.get(name).await.map_err(|e| e.to_string())?;
        let st = g.status.unwrap_or_default();
        match st.status.as_str() {
            "Successful" | "Failed" => Ok((st.stage, st.status, st.message)),
            _ => Err(format!("{} {} {}", st.stage, st.status, st.message)),
        }
    })
    .await
}

#[tokio::test]
async fn a_group_snapshot_of_three_claims_runs_one_pre_and_one_post_and_every_snapshot_restores() {
    let (cluster, client) = shared().await;
    let nodes = [("grp-n1", "10.8.0.1"), ("grp-n2", "10.8.0.2"), ("grp-n3", "10.8.0.3")];
    let volumes: [(&str, &[&str]); 3] =
        [("pv-grp-0", &["grp-n1"]), ("pv-grp-1", &["grp-n2"]), ("pv-grp-2", &["grp-n3"])];
    cluster.add_storage(&nodes, "Online", &volumes).unwrap();
    kwok_nodes(&client, &nodes).await.unwrap();
    storage_class(&client).await;
    let ns = namespace(&client, "group").await.unwrap();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    for (i, (pv, _)) in volumes.iter().enumerate() {
        let claim = format!("data-mysql-{i}");
        bound_claim(&client, &ns, &claim, pv).await;
        label_claim(&pvcs, &claim).await;
    }
    let dir = tempfile::tempdir().unwrap();
    app_pod(&client, &ns, "mysql-0", "grp-n1", json!({"app": "mysql"}), dir.path()).await;
    rule(
        &client,
        &ns,
        "freeze",
        json!([{"podSelector": {"app": "mysql"}, "actions": [
            {"type": "command", "value": "date +%s%N >> pre.log"},
            {"type": "command", "background": true, "value": "${WAIT_PLACEHOLDER}; date +%s%N >> released.log"}
        ]}]),
    )
    .await;
    rule(
        &client,
        &ns,
        "thaw",
        json!([{"podSelector": {"app": "mysql"}, "actions": [
            {"type": "command", "value": "date +%s%N >> post.log"}
        ]}]),
    )
    .await;

    let started = Instant::now();
    let groups = group(&client, &ns, "mysql-group", "freeze", "thaw").await;
    let (stage, status, message) = settled(&groups, "mysql-group").await;
    assert_eq!((stage.as_str(), status.as_str()), ("Final", "Successful"), "{message}");
    let snaps: Api<VolumeSnapshot> = Api::namespaced(client.clone(), &ns);
    let members = wait_for("three member snapshots Ready", WAIT, || async {
        let list = snaps.list(&ListParams::default().labels(&format!("{GROUP_LABEL}=mysql-group"))).await;
        let list = list.map_err(|e| e.to_string())?.items;
        let ready = list.iter().filter(|s| s.status.as_ref().is_some_and(|st| st.is_ready())).count();
        if list.len() == 3 && ready == 3 { Ok(list) } else { Err(format!("{} members, {ready} Ready", list.len())) }
    })
    .await;
    println!("3-PVC group snapshot: {:?} from creation to three Ready snapshots ({message})", started.elapsed());

    let (pre, released, post) =
        (read(dir.path(), "pre.log"), read(dir.path(), "released.log"), read(dir.path(), "post.log"));
    assert_eq!(
        (pre.lines().count(), released.lines().count(), post.lines().count()),
        (1, 1, 1),
        "one window for the group"
    );
    let state = stork::driver::mock::state_path(&cluster.info.topology);
    let times: Vec<i128> = members
        .iter()
        .map(|m| driver_snapshot_time(&state, &m.spec.snapshot_data_name).expect("driver snapshot of every member"))
        .collect();
    assert!(times.iter().all(|t| *t == times[0]), "the mock takes a group at one instant: {times:?}");
    let (pre_t, post_t): (i128, i128) = (pre.parse().unwrap(), post.parse().unwrap());
    assert!(pre_t < times[0] && times[0] < post_t, "inside the window: {pre_t} < {} < {post_t}", times[0]);
    let g = groups.get("mysql-group").await.unwrap();
    let listed = g.status.unwrap().volume_snapshots;
    assert_eq!(listed.len(), 3, "status lists every snapshot");

    // Every member restores through the stork-snapshot provisioner, unchanged.
    create(
        &Api::<k8s_openapi::api::storage::v1::StorageClass>::all(client.clone()),
        json!({"metadata": {"name": "stork-snapshot-sc"}, "provisioner": "stork-snapshot"}),
    )
    .await;
    for m in &members {
        let name = format!("restored-{}", m.spec.persistent_volume_claim_name);
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": {"snapshot.alpha.kubernetes.io/snapshot": m.name_any()}},
            "spec": {"storageClassName": "stork-snapshot-sc", "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}
        }))
        .unwrap();
        pvcs.create(&PostParams::default(), &pvc).await.expect("restore claim admitted");
    }
    for m in &members {
        let name = format!("restored-{}", m.spec.persistent_volume_claim_name);
        wait_for(&format!("{name} Bound"), WAIT, || async {
            let c = pvcs.get(&name).await.map_err(|e| e.to_string())?;
            let phase = c.status.and_then(|s| s.phase).unwrap_or_default();
            if phase == "Bound" { Ok(()) } else { Err(phase) }
        })
        .await;
    }

    // Deleting the group deletes its snapshots (owner references) and their driver snapshots.
    groups.delete("mysql-group", &DeleteParams::default()).await.unwrap();
    wait_for("members deleted with the group", WAIT, || async {
        let left = snaps.list(&ListParams::default().labels(&format!("{GROUP_LABEL}=mysql-group"))).await;
        let left = left.map_err(|e| e.to_string())?.items.len();
        if left == 0 { Ok(()) } else { Err(format!("{left} left")) }
    })
    .await;
    wait_for("driver snapshots deleted", WAIT, || async {
        let ids = snapshot_ids(&state);
        let left: Vec<&String> =
            members.iter().map(|m| &m.spec.snapshot_data_name).filter(|id| ids.contains(id)).collect();
        if left.is_empty() { Ok(()) } else { Err(format!("{left:?}")) }
    })
    .await;
}

#[tokio::test]
async fn a_group_with_an_unbound_claim_fails_in_pre_checks_and_leaves_nothing_behind() {
    let (cluster, client) = shared().await;
    let nodes = [("grp-n4", "10.8.0.4")];
    cluster.add_storage(&nodes, "Online", &[("pv-grp-ok", &["grp-n4"])]).unwrap();
    kwok_nodes(&client, &nodes).await.unwrap();
    storage_class(&client).await;
    let ns = namespace(&client, "group-bad").await.unwrap();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    bound_claim(&client, &ns, "data-ok", "pv-grp-ok").await;
    label_claim(&pvcs, "data-ok").await;
    // An Immediate claim nothing provisions stays Pending.
    create(
        &pvcs,
        json!({"metadata": {"name": "data-pending", "labels": {"app": "grp"}},
               "spec": {"storageClassName": "mock-sc", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    let state = stork::driver::mock::state_path(&cluster.info.topology);
    let before = snapshot_ids(&state);

    let groups = group(&client, &ns, "half-bound", "", "").await;
    let (stage, status, message) = settled(&groups, "half-bound").await;
    assert_eq!((stage.as_str(), status.as_str()), ("PreChecks", "Failed"), "{message}");
    assert!(message.contains("data-pending") && message.contains("not bound"), "{message}");
    let snaps: Api<VolumeSnapshot> = Api::namespaced(client.clone(), &ns);
    assert!(snaps.list(&ListParams::default()).await.unwrap().items.is_empty(), "no VolumeSnapshot made");
    let new: Vec<String> = snapshot_ids(&state).into_iter().filter(|id| !before.contains(id)).collect();
    assert!(new.is_empty(), "no driver snapshot taken: {new:?}");
    let notes = event_notes(&client, &ns, "half-bound").await;
    assert!(notes.iter().any(|n| n.contains("GroupSnapshotFailed") && n.contains("data-pending")), "{notes:?}");
}
