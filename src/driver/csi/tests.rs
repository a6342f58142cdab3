//! The driver over a whole fixture cluster, and its live rebuild loop over hand-fed stores.

use std::sync::atomic::{AtomicU32, Ordering};

use kube::runtime::{reflector, watcher};

use super::{
    fixtures::{DRIVER, NodeExt, PLUGIN_NS, PluginPodExt, csinode, node, plugin_pod},
    *,
};
use crate::{
    cluster::Objects,
    driver::{NodeStatus, pod_volumes},
    fixtures::{PodExt, pod},
};

const CLUSTER: &str = include_str!("../../../tests/data/csi/cluster.yaml");
const PLUGIN: &str = "csi/app.kubernetes.io/name=csi-hostpathplugin,app.kubernetes.io/component=plugin";

fn fixture_driver() -> (Arc<CsiDriver>, ClusterView) {
    let config = CsiConfig::parse(vec![DRIVER.into()], &[PLUGIN.into()], DEFAULT_RACK_LABEL.into()).unwrap();
    let cluster = Objects::from_yaml(CLUSTER).unwrap().into_view();
    let objects = CsiObjects::from_yaml(CLUSTER).unwrap();
    (CsiDriver::from_objects(config, cluster.clone(), &objects), cluster)
}

#[test]
fn the_fixture_cluster_yields_one_driver_node_per_registered_node_with_its_status() {
    let (driver, _) = fixture_driver();
    let inv = driver.nodes().unwrap();
    let got: Vec<(&str, NodeStatus)> = inv.nodes().iter().map(|n| (n.id.as_str(), n.status)).collect();
    assert_eq!(
        got,
        [
            ("node-1", NodeStatus::Online),
            ("node-2", NodeStatus::StorageDown),
            ("node-3", NodeStatus::Offline),
            ("node-4", NodeStatus::Offline),
        ]
    );
    let n1 = inv.by_id("node-1").unwrap();
    assert_eq!((n1.zone.as_str(), n1.region.as_str(), n1.rack.as_str()), ("a", "east", "r1"));
    assert_eq!(n1.ips, ["10.0.0.1"]);
    let n2 = inv.by_id("node-2").unwrap();
    assert_eq!((n2.hostname.as_str(), n2.rack.as_str()), ("host-2", "r2"));
    assert_eq!(inv.by_id("node-3").unwrap().zone, "b");
}

#[test]
fn a_new_driver_is_unavailable_until_its_caches_are_built() {
    let cluster = Objects::default().into_view();
    let driver = CsiDriver::new(CsiConfig::for_drivers([DRIVER]), cluster);
    let err = driver.nodes().unwrap_err();
    assert!(matches!(err, Error::Unavailable { ref driver, .. } if driver == "csi"), "{err}");
}

#[test]
fn claims_of_a_configured_driver_are_owned_and_others_are_not() {
    let (driver, cluster) = fixture_driver();
    let owns = |claim: &str| driver.owns_pvc(&cluster.pvc("default", claim).expect(claim), &cluster);
    assert!(owns("data"), "class provisioner");
    assert!(owns("fresh"), "pending claim of the class");
    assert!(owns("classless"), "bound PV's CSI driver");
    assert!(!owns("other-claim"), "unconfigured provisioner");
    assert_eq!(driver.name(), "csi");
    assert!(driver.snapshots().is_none() && driver.csi_pod_prefix().is_none());
}

#[test]
fn pod_volumes_see_replicas_from_affinity_and_a_pending_wffc_claim() {
    let (driver, cluster) = fixture_driver();
    let p = pod("app").with_pvc("data").with_pvc("fresh").with_pvc("other-claim");
    let vols = pod_volumes(driver.as_ref(), &cluster, &p).unwrap();
    assert_eq!(vols.bound.len(), 1);
    assert_eq!(vols.bound[0].volume.replicas, ["node-1"]);
    assert_eq!(vols.pending_wffc, ["default/fresh"]);
}

#[test]
fn the_claim_index_is_kept_across_rebuilds_that_change_no_node_id_or_host_name() {
    let (driver, cluster) = fixture_driver();
    let objects = CsiObjects::from_yaml(CLUSTER).unwrap();
    crate::driver::claims::refresh(driver.as_ref(), &cluster);
    let slot = driver.claim_index().unwrap();
    let index = slot.current(&cluster).expect("built");
    assert!(!index.is_empty());
    // What a Node heartbeat triggers: the same nodes assessed again.
    let pods: Vec<Vec<&Pod>> = vec![objects.pods.iter().collect()];
    driver.rebuild(&objects.csinodes, &pods);
    assert!(slot.current(&cluster).is_some(), "a rebuild that changed no volume dropped the claim index");
    // Nodes leaving the driver change which replicas resolve by id.
    driver.rebuild::<CSINode, &Pod>(&[], &[vec![]]);
    assert!(slot.current(&cluster).is_none(), "a changed set of driver nodes kept the old claim index");
}

#[test]
fn a_replica_pinned_by_host_name_label_resolves_to_its_node_name() {
    let (driver, cluster) = fixture_driver();
    let vol = driver.volume(&cluster.pv("pv-host-2").unwrap()).unwrap().unwrap();
    assert_eq!(vol.replicas, ["node-2"]);
    let zonal = driver.volume(&cluster.pv("pv-zonal").unwrap()).unwrap().unwrap();
    assert_eq!((zonal.replicas.len(), zonal.zones.as_slice()), (0, &["b".to_string()][..]));
    assert!(driver.volume(&cluster.pv("pv-other").unwrap()).unwrap().is_none());
}

#[test]
fn offline_objects_keep_only_csinodes_and_pods_and_report_bad_ones() {
    let objects = CsiObjects::from_yaml(CLUSTER).unwrap();
    assert_eq!((objects.csinodes.len(), objects.pods.len()), (5, 6));
    let err = CsiObjects::from_yaml("kind: CSINode\nmetadata: {name: n}\nspec: {drivers: 3}\n").unwrap_err();
    assert!(err.contains("object 1 (CSINode)"), "{err}");
}

/// Replays a complete list into a store, as a watcher's initial list would.
fn init<K>(writer: &mut reflector::store::Writer<K>, objects: Vec<K>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    writer.apply_watcher_event(&watcher::Event::Init);
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
}

fn status_of(driver: &CsiDriver, node: &str) -> Option<NodeStatus> {
    driver.nodes().ok()?.by_id(node).map(|n| n.status)
}

/// Lets the spawned loop run (single-threaded test runtime) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never happened: {what}");
}

#[tokio::test]
async fn the_live_loop_syncs_then_coalesces_a_burst_of_changes_into_one_rebuild() {
    let (cluster, mut writers) = ClusterView::new();
    init(&mut writers.nodes, vec![node("n1"), node("n2")]);
    writers.synced.store(true, std::sync::atomic::Ordering::Release);
    let config = CsiConfig::parse(vec![DRIVER.into()], &[format!("{PLUGIN_NS}/app=csi-node")], "rack".into()).unwrap();
    let driver = CsiDriver::new(config, cluster.clone());
    let (csinodes, mut csinode_writer) = reflector::store();
    let (pods, mut pod_writer) = reflector::store();
    let (changed, changes) = tokio::sync::watch::channel(());
    // The debounce window stays open until the test closes it; `windows` counts how many opened.
    let (gate, gate_rx) = tokio::sync::watch::channel(0u32);
    let windows = Arc::new(AtomicU32::new(0));
    let debounce = {
        let windows = windows.clone();
        move || {
            let n = windows.fetch_add(1, Ordering::SeqCst) + 1;
            let mut gate = gate_rx.clone();
            async move {
                let _ = gate.wait_for(|opened| *opened >= n).await;
            }
        }
    };
    let live = driver.clone();
    let task = tokio::spawn(async move { live.keep_current(&csinodes, &[pods], changes, debounce).await });

    tokio::task::yield_now().await;
    assert!(driver.nodes().is_err(), "no answer before the CSINode and pod caches have their lists");
    init(&mut csinode_writer, vec![csinode("n1", &[DRIVER]), csinode("n2", &[DRIVER])]);
    init(&mut pod_writer, vec![plugin_pod("p1", "n1"), plugin_pod("p2", "n2")]);
    until("synced", || status_of(&driver, "n1") == Some(NodeStatus::Online)).await;

    // A burst: n1's plugin turns unready, then n2's crashes, within one window.
    pod_writer.apply_watcher_event(&watcher::Event::Apply(plugin_pod("p1", "n1").unready()));
    changed.send_replace(());
    until("window opened", || windows.load(Ordering::SeqCst) == 1).await;
    pod_writer.apply_watcher_event(&watcher::Event::Apply(plugin_pod("p2", "n2").waiting("CrashLoopBackOff")));
    changed.send_replace(());
    tokio::task::yield_now().await;
    assert_eq!(status_of(&driver, "n1"), Some(NodeStatus::Online), "nothing rebuilt within the window");
    gate.send_replace(1);
    until("rebuilt", || status_of(&driver, "n1") == Some(NodeStatus::StorageDown)).await;
    assert_eq!(status_of(&driver, "n2"), Some(NodeStatus::Offline), "the whole burst is in one rebuild");
    assert_eq!(windows.load(Ordering::SeqCst), 1, "the second change did not cost a second rebuild");

    // A Node change arrives through the cluster's own signal.
    writers.nodes.apply_watcher_event(&watcher::Event::Apply(node("n1").ready("Unknown")));
    cluster.node_changed();
    until("window opened", || windows.load(Ordering::SeqCst) == 2).await;
    gate.send_replace(2);
    until("node change seen", || status_of(&driver, "n1") == Some(NodeStatus::Offline)).await;

    drop(changed);
    task.await.unwrap();
}
