use super::*;
use crate::extender::prioritize::{NODE_SCORE, RACK_SCORE, REGION_SCORE, ZONE_SCORE, segment_score, storage_down};
use crate::{
    driver::NodeStatus::*,
    fixtures::{DriverNodeExt, PodExt, dnode, pod},
    knobs,
};

#[test]
fn seed_scenario_scores_each_replica_node_100_per_volume() {
    let world = World::new()
        .driver_nodes([dnode("n1"), dnode("n2"), dnode("n3")])
        .volume("c1", &["n1", "n2"])
        .volume("c2", &["n2", "n3"]);
    let (s, event) = run_prioritize(world, &pod("p1").with_pvc("c1").with_pvc("c2"), &["n1", "n2", "n3"]);
    assert_eq!(s, scores(&[("n1", 100), ("n2", 200), ("n3", 100)]));
    assert!(event.is_none());
}

/// Replica on r1 (east/a/rack1); the others share a rack, a zone, a region, or nothing.
fn topology() -> World {
    World::new()
        .driver_nodes([
            dnode("r1").at("east", "a", "rack1"),
            dnode("same-rack").at("east", "a", "rack1"),
            dnode("same-zone").at("east", "a", "rack2"),
            dnode("same-region").at("east", "b", "rack3"),
            dnode("elsewhere").at("west", "c", "rack4"),
            dnode("nowhere"),
        ])
        .volume("c1", &["r1"])
}

const TOPO: [&str; 6] = ["r1", "same-rack", "same-zone", "same-region", "elsewhere", "nowhere"];

#[test]
fn locality_scores_node_rack_zone_region_then_default() {
    let (s, _) = run_prioritize(topology(), &pod("p").with_pvc("c1"), &TOPO);
    let want =
        [("r1", 100), ("same-rack", 50), ("same-zone", 25), ("same-region", 10), ("elsewhere", 5), ("nowhere", 5)];
    assert_eq!(s, scores(&want));
}

#[test]
fn nodes_without_rack_information_in_one_zone_score_as_same_zone_not_same_rack() {
    let world = World::new()
        .driver_nodes([dnode("a").at("east", "z", ""), dnode("b").at("east", "z", "")])
        .volume("c1", &["a"]);
    let (s, _) = run_prioritize(world, &pod("p").with_pvc("c1"), &["a", "b"]);
    assert_eq!(s, scores(&[("a", 100), ("b", 25)]));
}

#[test]
fn storage_down_lowers_a_replica_node_to_25_and_halves_the_rest() {
    let world = World::new()
        .driver_nodes([
            dnode("r").at("e", "a", "1").status(StorageDown),
            dnode("z").at("e", "a", "2").status(StorageDown),
            dnode("o").at("e", "a", "1"),
        ])
        .volume("c1", &["r", "o"]);
    let (s, _) = run_prioritize(world, &pod("p").with_pvc("c1"), &["r", "z", "o"]);
    assert_eq!(s, scores(&[("r", 25), ("z", 12), ("o", 100)]));
}

#[test]
fn storage_down_scores_are_storks_table() {
    for (full, down) in [(NODE_SCORE, 25), (RACK_SCORE, 25), (ZONE_SCORE, 12), (REGION_SCORE, 5), (0, 0)] {
        assert_eq!(storage_down(full), down, "a StorageDown node that would score {full}");
    }
}

#[test]
fn an_offline_replica_gives_no_locality_and_an_offline_node_scores_zero() {
    let world = World::new()
        .driver_nodes([
            dnode("down").at("e", "a", "1").status(Offline),
            dnode("rackmate").at("e", "a", "1"),
            dnode("degraded").status(Degraded),
        ])
        .volume("c1", &["down", "degraded"]);
    let (s, _) = run_prioritize(world, &pod("p").with_pvc("c1"), &["down", "rackmate", "degraded"]);
    assert_eq!(s, scores(&[("down", 0), ("rackmate", 5), ("degraded", 0)]));
}

#[test]
fn a_node_without_the_driver_scores_zero() {
    let world = World::new().driver_nodes([dnode("n1")]).k8s_node("plain", &[]).volume("c1", &["n1"]);
    let (s, _) = run_prioritize(world, &pod("p").with_pvc("c1"), &["n1", "plain"]);
    assert_eq!(s, scores(&[("n1", 100), ("plain", 0)]));
}

#[test]
fn disable_hyperconvergence_gives_every_node_the_default_score() {
    let p = pod("p").with_pvc("c1").annotated(knobs::DISABLE_HYPERCONVERGENCE, "true");
    let (s, _) = run_prioritize(topology(), &p, &TOPO);
    assert!(s.values().all(|&v| v == 5), "{s:?}");
}

#[test]
fn skip_scheduler_scoring_and_windows_volumes_are_not_scored() {
    let world = World::new()
        .driver_nodes([dnode("n1"), dnode("n2")])
        .volume_with("skip", &["n1"], |v| drop(v.labels.insert(knobs::SKIP_SCHEDULER_SCORING.into(), "true".into())))
        .volume_with("win", &["n1"], |v| v.windows = true)
        .volume("real", &["n2"]);
    let (s, _) = run_prioritize(world, &pod("p").with_pvc("skip").with_pvc("win").with_pvc("real"), &["n1", "n2"]);
    assert_eq!(s, scores(&[("n1", 5), ("n2", 100)]));
}

#[test]
fn anti_hyperconvergence_favours_healthy_nodes_without_a_replica() {
    let world = World::new().driver_nodes([dnode("rep"), dnode("other"), dnode("sd").status(StorageDown)]).volume_with(
        "shared",
        &["rep"],
        |v| v.anti_hyperconvergence = true,
    );
    let (s, event) = run_prioritize(world, &pod("p").with_pvc("shared"), &["rep", "other", "sd"]);
    assert_eq!(s, scores(&[("rep", 5), ("other", 100), ("sd", 5)]));
    assert!(event.is_none());
}

#[test]
fn anti_hyperconvergence_with_prefer_remote_node_false_scores_like_any_volume() {
    let world = World::new().driver_nodes([dnode("rep"), dnode("other")]).volume_with("shared", &["rep"], |v| {
        v.anti_hyperconvergence = true;
        v.labels.insert(knobs::PREFER_REMOTE_NODE.into(), "false".into());
    });
    let (s, _) = run_prioritize(world, &pod("p").with_pvc("shared"), &["rep", "other"]);
    assert_eq!(s, scores(&[("rep", 100), ("other", 5)]));
}

#[test]
fn a_volume_whose_replica_nodes_were_not_offered_records_a_non_optimum_event() {
    let world = World::new().driver_nodes([dnode("n1"), dnode("n2")]).volume("c1", &["n1"]);
    let (_, event) = run_prioritize(world, &pod("p").with_pvc("c1"), &["n2"]);
    let event = event.expect("event");
    assert_eq!(event.reason, "NonOptimumScheduling");
    assert!(event.message.contains("pv-c1") && event.message.contains("n1"), "{}", event.message);
}

#[test]
fn csi_pods_score_by_driver_health() {
    let world = World::new()
        .driver_nodes([dnode("on"), dnode("sd").status(StorageDown), dnode("off").status(Offline)])
        .k8s_node("plain", &[]);
    let (s, _) = run_prioritize(world, &pod("px-csi-ext-1"), &["on", "sd", "off", "plain"]);
    assert_eq!(s, scores(&[("on", 100), ("sd", 50), ("off", 0), ("plain", 0)]));
}

#[test]
fn csi_pods_score_every_node_the_default_when_the_driver_has_no_nodes() {
    let world = World::new().k8s_node("a", &[]).k8s_node("b", &[]);
    let (s, _) = run_prioritize(world, &pod("px-csi-ext-1"), &["a", "b"]);
    assert_eq!(s, scores(&[("a", 5), ("b", 5)]));
}

#[test]
fn a_pod_with_only_pending_volumes_gets_default_scores() {
    let world = World::new().driver_nodes([dnode("n1")]).claim("late", "mock-wffc", None);
    let (s, _) = run_prioritize(world, &pod("p").with_pvc("late"), &["n1"]);
    assert_eq!(s, scores(&[("n1", 5)]));
}

#[test]
fn a_volume_known_only_by_its_topology_segment_scores_nodes_in_its_zone_then_region() {
    let volume = crate::driver::Volume { zones: vec!["a".into()], regions: vec!["east".into()], ..Default::default() };
    let node = |zone: &str, region: &str| crate::driver::DriverNode {
        zone: zone.into(),
        region: region.into(),
        ..Default::default()
    };
    assert_eq!(segment_score(&node("a", "east"), &volume), ZONE_SCORE);
    assert_eq!(segment_score(&node("b", "east"), &volume), REGION_SCORE);
    assert_eq!(segment_score(&node("c", "west"), &volume), 0);
    let down = crate::driver::DriverNode { status: StorageDown, ..node("a", "east") };
    assert_eq!(segment_score(&down, &volume), ZONE_SCORE / 2);
}
