use k8s_openapi::api::{
    core::v1::{Node, Pod},
    storage::v1::CSINode,
};

use super::*;
use crate::driver::csi::fixtures::{DRIVER, NodeExt, PluginPodExt, csinode, node, plugin_pod};

fn config(with_plugin: bool) -> CsiConfig {
    let plugins: Vec<String> = if with_plugin { vec!["csi/app=csi-node".into()] } else { vec![] };
    CsiConfig::parse(vec![DRIVER.into()], &plugins, super::super::DEFAULT_RACK_LABEL.into()).unwrap()
}

fn assess_one(config: &CsiConfig, node: Node, csinodes: Vec<CSINode>, pods: Vec<Pod>) -> Option<(NodeStatus, Reason)> {
    let out = assess(config, &[node], &csinodes, &[pods]);
    assert!(out.len() <= 1);
    out.first().map(|a| (a.node.status, a.reason))
}

/// (case, node, CSINodes, plugin pods, expected status and reason; `None`: not a driver node).
type Case = (&'static str, Node, Vec<CSINode>, Vec<Pod>, Option<(NodeStatus, Reason)>);

#[test]
fn each_node_and_plugin_state_maps_to_its_driver_status() {
    use NodeStatus::*;
    use Reason::*;
    let registered = || vec![csinode("n1", &[DRIVER])];
    let cases: Vec<Case> = vec![
        ("ready node, ready plugin", node("n1"), registered(), vec![plugin_pod("p", "n1")], Some((Online, Healthy))),
        (
            "plugin running but not ready",
            node("n1"),
            registered(),
            vec![plugin_pod("p", "n1").unready()],
            Some((StorageDown, PluginNotReady)),
        ),
        (
            "plugin in CrashLoopBackOff",
            node("n1"),
            registered(),
            vec![plugin_pod("p", "n1").waiting("CrashLoopBackOff")],
            Some((Offline, PluginCrashing)),
        ),
        (
            "plugin container waiting on Error",
            node("n1"),
            registered(),
            vec![plugin_pod("p", "n1").waiting("Error")],
            Some((Offline, PluginCrashing)),
        ),
        (
            "plugin container terminated",
            node("n1"),
            registered(),
            vec![plugin_pod("p", "n1").terminated("Error")],
            Some((Offline, PluginCrashing)),
        ),
        (
            "plugin pending",
            node("n1"),
            registered(),
            vec![plugin_pod("p", "n1").phase("Pending").waiting("ContainerCreating")],
            Some((Offline, PluginNotRunning)),
        ),
        (
            "plugin failed",
            node("n1"),
            registered(),
            vec![plugin_pod("p", "n1").phase("Failed")],
            Some((Offline, PluginNotRunning)),
        ),
        (
            "plugin only on another node",
            node("n1"),
            registered(),
            vec![plugin_pod("p", "n2")],
            Some((Offline, PluginAbsent)),
        ),
        ("no plugin pod at all", node("n1"), registered(), vec![], Some((Offline, PluginAbsent))),
        (
            "node NotReady",
            node("n1").ready("False"),
            registered(),
            vec![plugin_pod("p", "n1")],
            Some((Offline, NodeNotReady)),
        ),
        (
            "node Unknown",
            node("n1").ready("Unknown"),
            registered(),
            vec![plugin_pod("p", "n1")],
            Some((Offline, NodeNotReady)),
        ),
        (
            "node without conditions",
            node("n1").without_conditions(),
            registered(),
            vec![plugin_pod("p", "n1")],
            Some((Offline, NodeNotReady)),
        ),
        (
            "rollout: a crashing old pod beside a ready new one",
            node("n1"),
            registered(),
            vec![plugin_pod("old", "n1").waiting("CrashLoopBackOff"), plugin_pod("new", "n1")],
            Some((Online, Healthy)),
        ),
        (
            "CSINode lost the driver while its plugin pod is there",
            node("n1"),
            vec![csinode("n1", &["other.csi.example.com"])],
            vec![plugin_pod("p", "n1")],
            Some((Offline, NotRegistered)),
        ),
        (
            "no CSINode, plugin pod there",
            node("n1"),
            vec![csinode("n2", &[DRIVER])],
            vec![plugin_pod("p", "n1")],
            Some((Offline, NotRegistered)),
        ),
        ("no CSINode entry and no plugin pod: not a driver node", node("n1"), vec![], vec![], None),
    ];
    for (case, node, csinodes, pods, want) in cases {
        assert_eq!(assess_one(&config(true), node, csinodes, pods), want, "{case}");
    }
}

#[test]
fn without_a_plugin_selector_a_registered_node_is_judged_on_its_readiness_alone() {
    let registered = || vec![csinode("n1", &[DRIVER])];
    assert_eq!(
        assess_one(&config(false), node("n1"), registered(), vec![]),
        Some((NodeStatus::Online, Reason::Healthy))
    );
    let down = assess_one(&config(false), node("n1").ready("False"), registered(), vec![]);
    assert_eq!(down, Some((NodeStatus::Offline, Reason::NodeNotReady)));
}

#[test]
fn a_node_serving_several_drivers_takes_the_best_status() {
    let config = CsiConfig::parse(
        vec![DRIVER.into(), "b.csi.example.com".into()],
        &["csi/app=csi-node".into()],
        super::super::DEFAULT_RACK_LABEL.into(),
    )
    .unwrap();
    let both = vec![csinode("n1", &[DRIVER, "b.csi.example.com"])];
    let crashing = vec![plugin_pod("p", "n1").waiting("CrashLoopBackOff")];
    assert_eq!(assess_one(&config, node("n1"), both, crashing.clone()), Some((NodeStatus::Online, Reason::Healthy)));
    let only_first = vec![csinode("n1", &[DRIVER])];
    assert_eq!(
        assess_one(&config, node("n1"), only_first, crashing),
        Some((NodeStatus::Offline, Reason::PluginCrashing))
    );
}

fn described(config: &CsiConfig, node: Node) -> DriverNode {
    describe(config, &node, NodeStatus::Online)
}

#[test]
fn identity_comes_from_the_node_name_hostname_address_and_internal_ips() {
    let n = node("Node-1").addresses(&[
        ("Hostname", "Node-1.Example.com"),
        ("InternalIP", "10.0.0.1"),
        ("ExternalIP", "1.2.3.4"),
        ("InternalIP", "fd00::1"),
    ]);
    let d = described(&config(false), n);
    assert_eq!((d.id.as_str(), d.name.as_str(), d.hostname.as_str()), ("Node-1", "Node-1", "node-1.example.com"));
    assert_eq!(d.ips, ["10.0.0.1", "fd00::1"]);
    let bare = described(&config(false), node("Node-2").addresses(&[]));
    assert_eq!(bare.hostname, "node-2");
}

#[test]
fn zone_and_region_come_from_topology_labels_then_the_deprecated_ones() {
    let c = config(false);
    let ga = node("n").labeled("topology.kubernetes.io/zone", "a").labeled("topology.kubernetes.io/region", "east");
    let ga = ga.labeled("failure-domain.beta.kubernetes.io/zone", "old");
    let d = described(&c, ga);
    assert_eq!((d.zone.as_str(), d.region.as_str()), ("a", "east"));
    let beta = node("n").labeled(ZONE_LABELS[1], "b").labeled(REGION_LABELS[1], "west");
    let d = described(&c, beta);
    assert_eq!((d.zone.as_str(), d.region.as_str()), ("b", "west"));
    let empty = described(&c, node("n").labeled(ZONE_LABELS[0], "").labeled(ZONE_LABELS[1], "c"));
    assert_eq!((empty.zone.as_str(), empty.region.as_str()), ("c", ""));
}

#[test]
fn rack_comes_from_the_configured_label_then_px_rack() {
    let default = config(false);
    assert_eq!(described(&default, node("n").labeled("stork.libopenstorage.org/rack", "r1")).rack, "r1");
    assert_eq!(described(&default, node("n").labeled("px/rack", "r2")).rack, "r2");
    let both = node("n").labeled("stork.libopenstorage.org/rack", "r1").labeled("px/rack", "r2");
    assert_eq!(described(&default, both).rack, "r1");
    let custom = CsiConfig { rack_label: "example.com/rack".into(), ..config(false) };
    let n = node("n").labeled("example.com/rack", "r3").labeled("stork.libopenstorage.org/rack", "r1");
    assert_eq!(described(&custom, n).rack, "r3");
    assert_eq!(described(&custom, node("n")).rack, "");
}

#[test]
fn transitions_report_changed_new_and_departed_nodes_only() {
    let c = config(true);
    let nodes = [node("a"), node("b"), node("c")];
    let csinodes = [csinode("a", &[DRIVER]), csinode("b", &[DRIVER]), csinode("c", &[DRIVER])];
    let before = assess(&c, &nodes, &csinodes, &[vec![plugin_pod("pa", "a"), plugin_pod("pb", "b")]]);
    let after = assess(&c, &nodes[..2], &csinodes, &[vec![plugin_pod("pa", "a"), plugin_pod("pb", "b").unready()]]);
    let t: Vec<_> = transitions(&before, &after).into_iter().map(|t| (t.node, t.from, t.to)).collect();
    assert_eq!(
        t,
        [
            ("b".to_string(), Some(NodeStatus::Online), Some(NodeStatus::StorageDown)),
            ("c".to_string(), Some(NodeStatus::Offline), None),
        ]
    );
    let first = transitions(&[], &after);
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|t| t.from.is_none()));
}
