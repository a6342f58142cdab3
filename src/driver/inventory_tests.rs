//! Decision tables for node matching and the Kubernetes node index.

use super::*;

fn dn(id: &str, status: NodeStatus) -> DriverNode {
    DriverNode {
        id: id.into(),
        name: format!("k8s-{id}"),
        hostname: id.into(),
        ips: vec![format!("10.0.0.{}", id.len())],
        status,
        ..DriverNode::default()
    }
}

fn matched(inv: &NodeInventory, name: &str, addrs: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    inv.matches(NodeIdentity { name, addresses: addrs }, &mut out);
    out.into_iter().map(|i| inv.get(i).id.clone()).collect()
}

#[test]
fn kubernetes_name_matches_the_driver_node_name() {
    let inv = NodeInventory::new(vec![dn("a", NodeStatus::Online)]);
    assert_eq!(matched(&inv, "k8s-a", &[]), ["a"]);
}

#[test]
fn fqdn_kubernetes_name_matches_a_short_storage_id_but_not_the_reverse() {
    let inv = NodeInventory::new(vec![dn("a", NodeStatus::Online), dn("b.example.com", NodeStatus::Online)]);
    assert_eq!(matched(&inv, "a.example.com", &[]), ["a"]);
    assert!(matched(&inv, "b", &[]).is_empty());
}

#[test]
fn hostname_and_internal_ip_addresses_match_but_external_ip_does_not() {
    let inv = NodeInventory::new(vec![dn("a", NodeStatus::Online), dn("bb", NodeStatus::Online)]);
    assert_eq!(matched(&inv, "x", &[("Hostname", "a.lan")]), ["a"]);
    assert_eq!(matched(&inv, "x", &[("InternalIP", "10.0.0.2")]), ["bb"]);
    assert!(matched(&inv, "x", &[("ExternalIP", "10.0.0.2")]).is_empty());
}

#[test]
fn an_online_entry_is_preferred_over_a_stale_offline_one_for_the_same_node() {
    let mut stale = dn("old", NodeStatus::Offline);
    stale.name = "k8s-a".into();
    let inv = NodeInventory::new(vec![stale, dn("a", NodeStatus::Online)]);
    assert_eq!(matched(&inv, "k8s-a", &[]), ["a", "old"]);
}

fn k8s_node(name: &str, addresses: &[(&str, &str)], unschedulable: Option<&str>) -> Node {
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name,
            "annotations": unschedulable.map(|v| serde_json::json!({crate::knobs::NODE_UNSCHEDULABLE: v})),
        },
        "status": {"addresses": addresses.iter().map(|(t, a)| serde_json::json!({"type": t, "address": a})).collect::<Vec<_>>()},
    }))
    .unwrap()
}

fn apply(writers: &mut crate::cluster::ClusterWriters, node: Node) {
    writers.nodes.apply_watcher_event(&kube::runtime::watcher::Event::Apply(node));
}

fn indexed(index: &KubeNodes, inv: &NodeInventory, name: &str) -> Option<Vec<String>> {
    index.get(name).map(|e| e.matches().iter().map(|&i| inv.get(i).id.clone()).collect())
}

#[test]
fn the_node_index_answers_what_matching_each_cached_node_answers() {
    let mut stale = dn("old", NodeStatus::Offline);
    stale.name = "k8s-a".into();
    let inv = NodeInventory::new(vec![stale, dn("a", NodeStatus::Online), dn("bb", NodeStatus::Online)]);
    let (view, mut writers) = ClusterView::new();
    apply(&mut writers, k8s_node("k8s-a", &[], Some("true")));
    apply(&mut writers, k8s_node("x", &[("Hostname", "bb.lan"), ("ExternalIP", "10.0.0.1")], Some("nope")));
    apply(&mut writers, k8s_node("plain", &[("InternalIP", "192.168.0.1")], None));
    let index = inv.refresh_node_index(&view);
    assert_eq!((index.inventory(), index.len()), (inv.id(), 3));
    assert_eq!(indexed(&index, &inv, "k8s-a").unwrap(), matched(&inv, "k8s-a", &[]));
    assert_eq!(indexed(&index, &inv, "x").unwrap(), ["bb"]);
    assert_eq!(indexed(&index, &inv, "plain").unwrap(), Vec::<String>::new());
    assert!(indexed(&index, &inv, "unknown").is_none());
    let flags: Vec<bool> =
        ["k8s-a", "x", "plain"].iter().map(|n| index.get(n).unwrap().storage_unschedulable()).collect();
    assert_eq!(flags, [true, false, false]);
    assert!(index.get("x").unwrap().has_addresses([("Hostname", "bb.lan"), ("ExternalIP", "10.0.0.1")].into_iter()));
    assert!(!index.get("x").unwrap().has_addresses([("Hostname", "bb.lan")].into_iter()));
}

#[test]
fn the_node_index_is_kept_while_nodes_are_unchanged_and_rebuilt_after_a_node_change() {
    let inv = NodeInventory::new(vec![dn("a", NodeStatus::Online), dn("bb", NodeStatus::Online)]);
    let (view, mut writers) = ClusterView::new();
    apply(&mut writers, k8s_node("n1", &[("Hostname", "a")], None));
    apply(&mut writers, k8s_node("n2", &[], None));
    let first = inv.refresh_node_index(&view);
    assert!(Arc::ptr_eq(&first, &inv.refresh_node_index(&view)), "no change, same index");

    apply(&mut writers, k8s_node("n2", &[("InternalIP", "10.0.0.2")], Some("true")));
    view.node_changed();
    let second = inv.refresh_node_index(&view);
    assert_eq!(indexed(&second, &inv, "n2").unwrap(), ["bb"]);
    assert!(second.get("n2").unwrap().storage_unschedulable());
    assert_eq!(indexed(&second, &inv, "n1").unwrap(), ["a"]);

    // Another view of other stores never sees this view's nodes.
    let (other, _w) = ClusterView::new();
    assert!(inv.refresh_node_index(&other).is_empty());
    assert_eq!(inv.refresh_node_index(&view).len(), 2);
}

#[test]
fn readers_get_the_published_index_as_it_is_and_only_a_refresh_builds_one() {
    let inv = NodeInventory::new(vec![dn("a", NodeStatus::Online)]);
    let (view, mut writers) = ClusterView::new();
    apply(&mut writers, k8s_node("n1", &[("Hostname", "a")], None));
    view.node_changed();
    assert!(inv.node_index(&view).is_none(), "reading never builds");
    assert!(inv.node_index_is_stale(&view));

    let built = inv.refresh_node_index(&view);
    assert!(!inv.node_index_is_stale(&view));
    apply(&mut writers, k8s_node("n2", &[], None));
    view.node_changed();
    let served = inv.node_index(&view).expect("published");
    assert!(Arc::ptr_eq(&built, &served), "a stale index is still served");
    assert!(inv.node_index_is_stale(&view) && served.get("n2").is_none());
}

#[test]
fn the_builder_step_publishes_an_index_of_the_driver_s_current_inventory() {
    use crate::{
        driver::{Driver, node_index},
        fixtures::{World, dnode},
    };
    let (view, driver) = World::new().driver_nodes([dnode("n1"), dnode("n2")]).build();
    let inventory = driver.nodes().expect("inventory");
    assert!(inventory.node_index(&view).is_none());
    node_index::refresh(&driver, &view);
    let index = inventory.node_index(&view).expect("published by the builder step");
    assert_eq!((index.inventory(), index.len()), (inventory.id(), 2));
}

#[test]
fn node_keys_are_equal_exactly_when_the_strings_are_and_empty_is_the_empty_key() {
    let at = |id: &str, rack: &str, zone: &str, region: &str| DriverNode {
        id: id.into(),
        rack: rack.into(),
        zone: zone.into(),
        region: region.into(),
        ..DriverNode::default()
    };
    let inv =
        NodeInventory::new(vec![at("a", "r1", "z1", "east"), at("b", "r1", "z2", "east"), at("c", "", "", "west")]);
    let [a, b, c] = [0, 1, 2].map(|i| inv.keys(i));
    assert_ne!(a.id, b.id);
    assert_eq!((a.rack, a.region), (b.rack, b.region));
    assert_ne!(a.zone, b.zone);
    assert_eq!((c.rack, c.zone), (NodeInventory::EMPTY_KEY, NodeInventory::EMPTY_KEY));
    assert_ne!(c.region, a.region);
    assert_eq!(inv.key_of("z2"), Some(b.zone));
    assert_eq!(inv.key_of("nowhere"), None);
}
