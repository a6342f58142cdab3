//! Planner tests against the fake driver, scripted so its `nodes()` answers a sequence.

use super::*;
use crate::{
    driver::{Driver, DriverNode},
    fixtures::FakeDriver,
};

/// The fake driver answering `nodes()` with these (id, status) lists in order (`Err`: the driver
/// is unreachable); the last answer repeats.
fn scripted(script: Vec<Result<Vec<(&'static str, NodeStatus)>, ()>>) -> FakeDriver {
    let node = |(id, status): (&str, NodeStatus)| DriverNode {
        id: id.into(),
        name: id.into(),
        status,
        ..DriverNode::default()
    };
    FakeDriver::scripted(script.into_iter().map(|a| a.map(|nodes| nodes.into_iter().map(node).collect())).collect())
}

use NodeStatus::{Degraded, Offline, Online};

fn healthy() -> Vec<(&'static str, NodeStatus)> {
    vec![("n1", Online), ("n2", Online), ("n3", Online), ("n4", Online)]
}

fn with(node: &'static str, status: NodeStatus) -> Vec<(&'static str, NodeStatus)> {
    healthy().into_iter().map(|(n, s)| if n == node { (n, status) } else { (n, s) }).collect()
}

fn pod(name: &str, node: &str) -> PodInfo {
    PodInfo {
        namespace: "ns".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        node: node.into(),
        csi: false,
        uses_driver: true,
        unknown_state: false,
    }
}

/// Steps the planner at each offset (seconds from the start), asking the driver each time;
/// returns the names deleted at each offset.
fn run(planner: &mut Planner, driver: &FakeDriver, pods: &[PodInfo], at: &[u64]) -> Vec<(u64, Vec<String>)> {
    let start = Instant::now();
    at.iter()
        .map(|&secs| {
            let inv = driver.nodes();
            let answer = inv.as_deref().map_err(|e| e.to_string());
            let step = planner.step(start + Duration::from_secs(secs), answer, &NodeAddresses::new(), pods);
            (secs, step.deletions.into_iter().map(|d| d.pod.name).collect())
        })
        .collect()
}

fn deleted(out: &[(u64, Vec<String>)]) -> Vec<String> {
    out.iter().flat_map(|(_, names)| names.clone()).collect()
}

/// Stork's check times: 0, 10, 30, 70, 150 s.
const CHECKS: [u64; 5] = [0, 10, 30, 70, 150];

#[test]
fn a_node_down_through_every_recheck_loses_its_driver_pods_only() {
    let driver = scripted(vec![Ok(with("n1", Offline))]);
    let mut pods = vec![pod("a", "n1"), pod("b", "n2")];
    pods.push(PodInfo { uses_driver: false, ..pod("plain", "n1") });
    let mut planner = Planner::new(Settings::default());
    let out = run(&mut planner, &driver, &pods, &CHECKS);
    assert_eq!(deleted(&out[..4]), Vec::<String>::new(), "nothing before the last check");
    assert_eq!(out[4].1, ["a"]);
}

#[test]
fn a_flapping_node_that_comes_back_during_backoff_loses_nothing() {
    let driver =
        scripted(vec![Ok(with("n1", Offline)), Ok(with("n1", Offline)), Ok(healthy()), Ok(with("n1", Offline))]);
    let mut planner = Planner::new(Settings::default());
    let out = run(&mut planner, &driver, &[pod("a", "n1")], &[0, 10, 30, 70, 150, 160]);
    assert!(deleted(&out).is_empty(), "{out:?}");
    assert_eq!(planner.tracked(), ["n1"], "the new sighting starts a fresh probation");
}

#[test]
fn an_unreachable_driver_means_no_action_and_restarts_the_probation() {
    let driver = scripted(vec![
        Ok(with("n1", Offline)),
        Ok(with("n1", Offline)),
        Ok(with("n1", Offline)),
        Err(()),
        Ok(with("n1", Offline)),
    ]);
    let mut planner = Planner::new(Settings::default());
    let out = run(&mut planner, &driver, &[pod("a", "n1")], &[0, 10, 30, 70, 150]);
    assert!(deleted(&out).is_empty(), "{out:?}");
    let always_down = scripted(vec![Err(())]);
    let mut planner = Planner::new(Settings::default());
    assert!(deleted(&run(&mut planner, &always_down, &[pod("a", "n1")], &CHECKS)).is_empty());
}

#[test]
fn more_than_half_the_driver_nodes_down_is_a_driver_outage_and_nothing_is_deleted() {
    let mass = vec![("n1", Offline), ("n2", Offline), ("n3", Degraded), ("n4", Online)];
    let driver = scripted(vec![Ok(mass)]);
    let pods = [pod("a", "n1"), pod("b", "n2"), pod("c", "n3")];
    let mut planner = Planner::new(Settings::default());
    let start = Instant::now();
    for secs in CHECKS {
        let inv = driver.nodes().unwrap();
        let step = planner.step(start + Duration::from_secs(secs), Ok(&inv), &NodeAddresses::new(), &pods);
        assert!(step.deletions.is_empty());
        assert_eq!(step.skipped, [Skip::MassOutage]);
    }
}

#[test]
fn a_real_outage_deletes_csi_pods_first_in_batches_of_five_thirty_seconds_apart() {
    let driver = scripted(vec![Ok(with("n1", Degraded))]);
    let mut pods: Vec<PodInfo> = (0..11).map(|i| pod(&format!("p{i:02}"), "n1")).collect();
    pods.push(PodInfo { csi: true, uses_driver: false, ..pod("zz-csi", "n1") });
    let mut planner = Planner::new(Settings::default());
    let out = run(&mut planner, &driver, &pods, &[0, 10, 30, 70, 150, 160, 180, 200, 210]);
    let at = |t: u64| out.iter().find(|(s, _)| *s == t).unwrap().1.clone();
    assert_eq!(at(150), ["zz-csi", "p00", "p01", "p02", "p03"]);
    assert!(at(160).is_empty(), "30 s between batches");
    assert_eq!(at(180), ["p04", "p05", "p06", "p07", "p08"]);
    assert!(at(200).is_empty());
    assert_eq!(at(210), ["p09", "p10"]);
}

#[test]
fn the_driver_is_reinspected_before_each_batch() {
    let down = with("n1", Offline);
    let driver = scripted(vec![Ok(down.clone()); 5].into_iter().chain([Ok(healthy())]).collect());
    let pods: Vec<PodInfo> = (0..7).map(|i| pod(&format!("p{i}"), "n1")).collect();
    let mut planner = Planner::new(Settings::default());
    let out = run(&mut planner, &driver, &pods, &[0, 10, 30, 70, 150, 180]);
    assert_eq!(deleted(&out).len(), 5, "the second batch is called off: {out:?}");
}

#[test]
fn the_per_minute_ceiling_holds_across_nodes_and_resumes_after_a_minute() {
    let driver = scripted(vec![Ok(vec![("n1", Offline), ("n2", Offline), ("n3", Online), ("n4", Online)])]);
    let pods: Vec<PodInfo> = (0..10).map(|i| pod(&format!("p{i}"), if i < 5 { "n1" } else { "n2" })).collect();
    let settings = Settings { max_deletions_per_minute: 3, ..Settings::default() };
    let mut planner = Planner::new(settings);
    let out = run(&mut planner, &driver, &pods, &[0, 10, 30, 70, 150, 180, 209, 210]);
    let at = |t: u64| out.iter().find(|(s, _)| *s == t).unwrap().1.len();
    assert_eq!(at(150), 3);
    assert_eq!(at(180), 0, "still inside the minute");
    assert_eq!(at(209), 0);
    assert_eq!(at(210), 3);
}

#[test]
fn dry_run_still_decides_but_each_pod_only_once() {
    // The planner emits the decision; the loop records an event instead of deleting. A pod that
    // survives (as in a dry run) is not decided on again.
    let driver = scripted(vec![Ok(with("n1", Offline))]);
    let mut planner = Planner::new(Settings { dry_run: true, ..Settings::default() });
    let out = run(&mut planner, &driver, &[pod("a", "n1")], &[0, 10, 30, 70, 150, 180, 210]);
    assert_eq!(deleted(&out), ["a"]);
}

#[test]
fn pods_in_unknown_state_using_driver_volumes_are_deleted_at_once() {
    let driver = scripted(vec![Ok(healthy())]);
    let lost = PodInfo { unknown_state: true, ..pod("lost", "n2") };
    let plain = PodInfo { unknown_state: true, uses_driver: false, ..pod("plain", "n2") };
    let mut planner = Planner::new(Settings::default());
    let out = run(&mut planner, &driver, &[lost, plain], &[0]);
    assert_eq!(out[0].1, ["lost"]);
}

#[test]
fn a_stale_offline_entry_beside_an_online_one_does_not_mark_the_node_down() {
    let driver = scripted(vec![Ok(vec![("n1", Online), ("n2", Online), ("n3", Online)])]);
    let inv = driver.nodes().unwrap();
    let mut nodes: Vec<DriverNode> = inv.nodes().to_vec();
    nodes.push(DriverNode { id: "old".into(), name: "n1".into(), status: Offline, ..DriverNode::default() });
    let inv = NodeInventory::new(nodes);
    let mut planner = Planner::new(Settings { backoff_checks: 1, ..Settings::default() });
    let step = planner.step(Instant::now(), Ok(&inv), &NodeAddresses::new(), &[pod("a", "n1")]);
    assert!(step.deletions.is_empty() && planner.tracked().is_empty());
}

#[test]
fn a_drained_node_that_stays_down_is_not_reported_as_recovered() {
    let driver = scripted(vec![Ok(with("n1", Offline))]);
    let mut planner = Planner::new(Settings::default());
    run(&mut planner, &driver, &[pod("a", "n1")], &CHECKS);
    let start = Instant::now();
    let inv = driver.nodes().unwrap();
    let step = planner.step(start + Duration::from_secs(200), Ok(&inv), &NodeAddresses::new(), &[]);
    assert!(step.skipped.is_empty(), "{:?}", step.skipped);
    assert_eq!(planner.tracked(), ["n1"]);
    let back = NodeInventory::new(vec![DriverNode { id: "n1".into(), name: "n1".into(), ..DriverNode::default() }]);
    let step = planner.step(start + Duration::from_secs(230), Ok(&back), &NodeAddresses::new(), &[]);
    assert_eq!(step.skipped, [Skip::Recovered]);
}
