//! Snapshot schedules on the real control plane: a SchedulePolicy and a VolumeSnapshotSchedule
//! applied as Stork users write them; stork takes the snapshots on the policy's interval (the
//! harness runs stork with `--schedule-test-minute=5s`), keeps `retain`, and removes them with
//! the schedule; `/validate` refuses a policy that cannot trigger.

use std::collections::BTreeSet;

use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use serde_json::json;
use stork::model::{
    crd::VolumeSnapshot,
    schedule::{SchedulePolicy, VolumeSnapshotSchedule},
};
use stork_e2e::{
    kwok_nodes, namespace,
    objects::{WAIT, bound_claim, create, storage_class},
    shared, wait_for,
};

const SCHEDULE_LABEL: &str = "stork.libopenstorage.org/snapshot-schedule";

#[tokio::test]
async fn an_interval_schedule_with_retain_two_keeps_exactly_two_snapshots_after_four_triggers() {
    let (cluster, client) = shared().await;
    let node = ("sched-n1", "10.9.0.1");
    cluster.add_storage(&[node], "Online", &[("pv-sched", &["sched-n1"])]).unwrap();
    kwok_nodes(&client, &[node]).await.unwrap();
    storage_class(&client).await;
    let ns = namespace(&client, "sched").await.unwrap();
    bound_claim(&client, &ns, "mysql-data", "pv-sched").await;

    let policies: Api<SchedulePolicy> = Api::all(client.clone());
    let policy = format!("every-minute-{ns}");
    let doc = |minutes: i64| {
        serde_json::from_value::<SchedulePolicy>(json!({
            "apiVersion": "stork.libopenstorage.org/v1alpha1", "kind": "SchedulePolicy",
            "metadata": {"name": policy},
            "policy": {"interval": {"intervalMinutes": minutes, "retain": 2}}
        }))
        .unwrap()
    };
    let refused = policies.create(&Default::default(), &doc(0)).await.expect_err("intervalMinutes 0 is refused");
    assert!(refused.to_string().contains("intervalMinutes is 0"), "{refused}");
    policies.create(&Default::default(), &doc(1)).await.expect("a valid policy is admitted");

    let schedules: Api<VolumeSnapshotSchedule> = Api::namespaced(client.clone(), &ns);
    create(
        &schedules,
        json!({"apiVersion": "stork.libopenstorage.org/v1alpha1", "kind": "VolumeSnapshotSchedule",
               "metadata": {"name": "mysql-every-minute"},
               "spec": {"schedulePolicyName": policy, "reclaimPolicy": "Delete",
                        "template": {"spec": {"persistentVolumeClaimName": "mysql-data"}}}}),
    )
    .await;

    // Collect every snapshot the schedule ever had, until four triggers happened.
    let snaps: Api<VolumeSnapshot> = Api::namespaced(client.clone(), &ns);
    let list = ListParams::default().labels(&format!("{SCHEDULE_LABEL}=mysql-every-minute"));
    let mut seen = BTreeSet::new();
    while seen.len() < 4 {
        let names = wait_for("the next scheduled snapshot", WAIT, || async {
            let now: Vec<String> =
                snaps.list(&list).await.map_err(|e| e.to_string())?.items.iter().map(|s| s.name_any()).collect();
            if now.iter().any(|n| !seen.contains(n)) { Ok(now) } else { Err(format!("seen {seen:?}, now {now:?}")) }
        })
        .await;
        seen.extend(names);
    }
    let patch = json!({"spec": {"suspend": true}});
    schedules.patch("mysql-every-minute", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();

    let survivors = wait_for("exactly two Ready snapshots left", WAIT, || async {
        let items = snaps.list(&list).await.map_err(|e| e.to_string())?.items;
        let ready = items.iter().filter(|s| s.status.as_ref().is_some_and(|st| st.is_ready())).count();
        let s = schedules.get("mysql-every-minute").await.map_err(|e| e.to_string())?;
        let pending = s.status.unwrap_or_default().items.values().flatten().filter(|i| i.status == "Pending").count();
        if items.len() == 2 && ready == 2 && pending == 0 {
            Ok(items)
        } else {
            Err(format!("{} snapshots, {ready} Ready, {pending} Pending in status", items.len()))
        }
    })
    .await;
    assert!(seen.len() >= 4, "{seen:?}");
    let newest: Vec<&String> = seen.iter().rev().take(2).collect();
    for s in &survivors {
        assert!(newest.contains(&&s.name_any()), "the newest two survive: {} not in {newest:?}", s.name_any());
        assert_eq!(s.annotations()["stork.libopenstorage.org/snapshotSchedulePolicyType"], "Interval");
        assert!(s.name_any().starts_with("mysql-every-minute-interval-"), "{}", s.name_any());
    }
    let status = schedules.get("mysql-every-minute").await.unwrap().status.unwrap();
    assert_eq!(status.items["Interval"].len(), 2, "{status:?}");

    // reclaimPolicy Delete: the schedule goes with its snapshots.
    schedules.delete("mysql-every-minute", &DeleteParams::default()).await.unwrap();
    wait_for("the schedule's snapshots deleted with it", WAIT, || async {
        let left = snaps.list(&list).await.map_err(|e| e.to_string())?.items.len();
        if left == 0 { Ok(()) } else { Err(format!("{left} left")) }
    })
    .await;
    policies.delete(&policy, &DeleteParams::default()).await.unwrap();
}
