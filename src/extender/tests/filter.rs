use super::*;
use crate::{
    driver::NodeStatus::*,
    fixtures::{DriverNodeExt, PodExt, dnode, pod},
    knobs,
};

const ALL: [&str; 5] = ["n1", "n2", "n3", "n4", "n5"];

/// The seed scenario: driver on n1..n3, V1 on n1+n2, V2 on n2+n3, plain nodes n4, n5.
fn seed() -> World {
    World::new()
        .driver_nodes([dnode("n1"), dnode("n2"), dnode("n3")])
        .k8s_node("n4", &[])
        .k8s_node("n5", &[])
        .volume("c1", &["n1", "n2"])
        .volume("c2", &["n2", "n3"])
}

fn p1() -> PodFacts {
    pod("p1").with_pvc("c1").with_pvc("c2")
}

#[test]
fn seed_scenario_keeps_the_driver_nodes_and_says_why_the_others_were_dropped() {
    let out = run_filter(seed(), &p1(), &ALL);
    assert_eq!(out.kept, ["n1", "n2", "n3"]);
    assert_eq!(out.failed.keys().collect::<Vec<_>>(), ["n4", "n5"]);
    assert_eq!(out.failed["n4"], "storage driver is not running on this node");
    assert!(out.unresolvable.is_empty() && out.event.is_none());
}

#[test]
fn a_pod_without_claims_keeps_every_node() {
    let out = run_filter(seed(), &pod("web"), &ALL);
    assert_eq!(out.kept, ALL);
}

#[test]
fn a_pod_whose_claims_belong_to_another_driver_keeps_every_node() {
    let world = seed().claim("foreign", "other-sc", Some("pv-foreign"));
    let out = run_filter(world, &pod("p").with_pvc("foreign"), &ALL);
    assert_eq!(out.kept, ALL);
}

#[test]
fn a_missing_claim_marks_every_node_unresolvable_with_an_event() {
    let out = run_filter(seed(), &pod("p").with_pvc("nope"), &ALL);
    assert!(out.kept.is_empty());
    assert_eq!(out.unresolvable.len(), 5);
    assert!(out.unresolvable["n1"].contains("pvc default/nope"), "{:?}", out.unresolvable);
    assert_eq!(out.event.unwrap().reason, "FailedScheduling");
}

#[test]
fn a_restore_in_progress_blocks_the_pod_even_for_a_claim_of_another_driver() {
    for claim in ["c1", "foreign"] {
        let world = seed().claim("foreign", "other-sc", Some("pv-foreign")).claim_annotation(
            claim,
            knobs::RESTORE_IN_PROGRESS,
            "true",
        );
        let out = run_filter(world, &pod("p").with_pvc(claim), &ALL);
        assert!(out.kept.is_empty(), "{claim}");
        assert!(out.unresolvable["n2"].contains("restore is in progress"), "{claim}");
    }
}

#[test]
fn a_restore_annotation_other_than_exactly_true_is_ignored() {
    let world = seed().claim_annotation("c1", knobs::RESTORE_IN_PROGRESS, "True");
    assert_eq!(run_filter(world, &pod("p").with_pvc("c1"), &ALL).kept, ["n1", "n2", "n3"]);
}

#[test]
fn a_pending_claim_of_an_immediate_class_waits_for_binding() {
    let world = seed().claim("new", "mock-sc", None);
    let out = run_filter(world, &pod("p").with_pvc("new"), &ALL);
    assert!(out.kept.is_empty());
    assert!(out.unresolvable["n1"].contains("waiting for it to be bound"));
}

#[test]
fn a_pending_wait_for_first_consumer_claim_needs_a_healthy_driver_node_only() {
    let world = seed().claim("late", "mock-wffc", None);
    let out = run_filter(world, &pod("p").with_pvc("late"), &ALL);
    assert_eq!(out.kept, ["n1", "n2", "n3"]);
}

#[test]
fn an_ephemeral_volume_whose_claim_is_not_made_yet_is_treated_as_its_template_class_says() {
    // A WaitForFirstConsumer driver class: like a pending WFFC claim, any healthy driver node.
    let out = run_filter(seed(), &pod("p").with_ephemeral("scratch", Some("mock-wffc")), &ALL);
    assert_eq!(out.kept, ["n1", "n2", "n3"]);
    // An Immediate driver class: the claim must be made and bound first.
    let out = run_filter(seed(), &pod("p").with_ephemeral("scratch", Some("mock-sc")), &ALL);
    assert!(out.kept.is_empty());
    assert!(out.unresolvable["n1"].contains("pvc default/p-scratch"), "{:?}", out.unresolvable);
    // Another driver's class, or one stork does not know: no constraint.
    for class in ["other-sc", "unknown-sc"] {
        assert_eq!(run_filter(seed(), &pod("p").with_ephemeral("scratch", Some(class)), &ALL).kept, ALL, "{class}");
    }
}

#[test]
fn an_ephemeral_volume_whose_claim_exists_is_decided_from_the_claim() {
    let world = seed().volume("p-scratch", &["n3"]);
    let p = pod("p").with_ephemeral("scratch", Some("mock-sc")).annotated(knobs::PREFER_LOCAL_NODE_ONLY, "true");
    assert_eq!(run_filter(world, &p, &ALL).kept, ["n3"]);
}

#[test]
fn offline_and_degraded_nodes_are_dropped_with_their_status_and_storage_down_is_kept() {
    let world = World::new()
        .driver_nodes([
            dnode("n1"),
            dnode("n2").status(Offline),
            dnode("n3").status(Degraded),
            dnode("n4").status(StorageDown),
        ])
        .volume("c1", &["n1"]);
    let out = run_filter(world, &pod("p").with_pvc("c1"), &["n1", "n2", "n3", "n4"]);
    assert_eq!(out.kept, ["n1", "n4"]);
    assert_eq!(out.failed["n2"], "storage driver is Offline on this node");
    assert_eq!(out.failed["n3"], "storage driver is Degraded on this node");
}

#[test]
fn a_volume_without_an_online_replica_marks_every_node_unresolvable() {
    let world = World::new()
        .driver_nodes([dnode("n1").status(StorageDown), dnode("n2").status(Offline), dnode("n3")])
        .volume("c1", &["n1", "n2"]);
    let out = run_filter(world, &pod("p").with_pvc("c1"), &["n1", "n2", "n3"]);
    assert!(out.kept.is_empty());
    assert!(out.unresolvable["n3"].contains("no online node holds a replica of volume pv-c1"));
}

#[test]
fn a_volume_with_replicas_unknown_to_the_driver_counts_as_having_no_online_replica() {
    let world = World::new().driver_nodes([dnode("n1")]).volume("c1", &["ghost"]);
    assert!(run_filter(world, &pod("p").with_pvc("c1"), &["n1"]).kept.is_empty());
}

#[test]
fn a_node_the_storage_operator_marked_unschedulable_is_dropped() {
    for (value, dropped) in [("true", true), ("1", true), ("false", false), ("maybe", false)] {
        let world = seed().node_annotation("n2", knobs::NODE_UNSCHEDULABLE, value);
        let out = run_filter(world, &p1(), &ALL);
        assert_eq!(!out.kept.contains(&"n2".to_string()), dropped, "value {value}");
        if dropped {
            assert!(out.failed["n2"].contains("unschedulable"));
        }
    }
}

#[test]
fn prefer_local_node_only_keeps_only_nodes_holding_every_replica() {
    let p = p1().annotated(knobs::PREFER_LOCAL_NODE_ONLY, "true");
    let out = run_filter(seed(), &p, &ALL);
    assert_eq!(out.kept, ["n2"]);
    assert_eq!(out.failed["n1"], "no replica of pvc default/c2 on this node (preferLocalNodeOnly)");
}

#[test]
fn prefer_local_node_only_with_no_node_holding_every_replica_drops_all_with_an_event() {
    let world = World::new().driver_nodes([dnode("n1"), dnode("n2")]).volume("a", &["n1"]).volume("b", &["n2"]);
    let p = pod("p").with_pvc("a").with_pvc("b").annotated(knobs::PREFER_LOCAL_NODE_ONLY, "true");
    let out = run_filter(world, &p, &["n1", "n2"]);
    assert!(out.kept.is_empty());
    assert!(out.event.unwrap().message.contains("preferLocalNodeOnly"));
}

#[test]
fn prefer_remote_node_only_drops_the_replica_nodes_of_an_anti_hyperconverged_volume() {
    let world = World::new().driver_nodes([dnode("n1"), dnode("n2"), dnode("n3")]).volume_with("c1", &["n1"], |v| {
        v.anti_hyperconvergence = true;
        v.labels.insert(knobs::PREFER_REMOTE_NODE_ONLY.into(), "true".into());
    });
    let out = run_filter(world, &pod("p").with_pvc("c1"), &["n1", "n2", "n3"]);
    assert_eq!(out.kept, ["n2", "n3"]);
    assert!(out.failed["n1"].contains("preferRemoteNodeOnly"));
}

#[test]
fn prefer_remote_node_only_set_as_a_pvc_annotation_works_like_a_volume_label() {
    let world = World::new()
        .driver_nodes([dnode("n1"), dnode("n2")])
        .volume_with("c1", &["n1"], |v| v.anti_hyperconvergence = true)
        .claim_annotation("c1", knobs::PREFER_REMOTE_NODE_ONLY, "true");
    assert_eq!(run_filter(world, &pod("p").with_pvc("c1"), &["n1", "n2"]).kept, ["n2"]);
}

#[test]
fn prefer_remote_node_only_without_anti_hyperconvergence_has_no_effect() {
    let world = World::new().driver_nodes([dnode("n1"), dnode("n2")]).volume_with("c1", &["n1"], |v| {
        v.labels.insert(knobs::PREFER_REMOTE_NODE_ONLY.into(), "true".into());
    });
    assert_eq!(run_filter(world, &pod("p").with_pvc("c1"), &["n1", "n2"]).kept, ["n1", "n2"]);
}

#[test]
fn a_windows_volume_keeps_every_node_not_marked_unschedulable() {
    let world = World::new()
        .driver_nodes([dnode("n1").status(Offline)])
        .k8s_node("n2", &[])
        .volume_with("c1", &["n1"], |v| v.windows = true)
        .node_annotation("n2", knobs::NODE_UNSCHEDULABLE, "true");
    let out = run_filter(world, &pod("p").with_pvc("c1"), &["n1", "n2"]);
    assert_eq!(out.kept, ["n1"]);
    assert!(out.failed.contains_key("n2"));
}

#[test]
fn the_drivers_csi_pods_go_to_any_node_with_a_running_driver() {
    let world = World::new()
        .driver_nodes([dnode("n1"), dnode("n2").status(Offline), dnode("n3").status(StorageDown)])
        .k8s_node("n4", &[]);
    let out = run_filter(world, &pod("px-csi-ext-abc"), &["n1", "n2", "n3", "n4"]);
    assert_eq!(out.kept, ["n1", "n3"]);
}

#[test]
fn csi_pods_keep_every_node_when_no_driver_node_is_healthy() {
    let world = World::new().driver_nodes([dnode("n1").status(Offline)]).k8s_node("n2", &[]);
    assert_eq!(run_filter(world, &pod("px-csi-ext-abc"), &["n1", "n2"]).kept, ["n1", "n2"]);
}

#[test]
fn a_driver_node_reporting_another_name_matches_by_internal_ip_or_fqdn_hostname() {
    let world = World::new()
        .driver_nodes([
            dnode("s1").named("storage-1").host("s1", &["10.1.0.1"]),
            dnode("s2").named("storage-2").host("worker2", &[]),
        ])
        .k8s_node("worker1", &["10.1.0.1"])
        .k8s_node("worker2.example.com", &[])
        .volume("c1", &["s1"]);
    let out = run_filter(world, &pod("p").with_pvc("c1"), &["worker1", "worker2.example.com", "storage-1"]);
    assert_eq!(out.kept, ["worker1", "worker2.example.com", "storage-1"]);
}

#[test]
fn a_node_named_by_the_scheduler_but_missing_from_the_cache_still_matches_by_name() {
    let world = World::new().driver_nodes([dnode("n1")]).volume("c1", &["n1"]);
    let out = run_filter(world, &pod("p").with_pvc("c1"), &["n1", "n-unknown"]);
    assert_eq!(out.kept, ["n1"]);
    assert!(out.failed.contains_key("n-unknown"));
}
