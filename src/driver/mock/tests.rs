//! Tests of the mock driver's topology loading, defaults and reload of broken files.

use super::*;
use crate::driver::NodeStatus;

#[test]
fn defaults_fill_name_hostname_and_status() {
    let t = Topology::from_yaml("nodes:\n- id: N1\n  hostname: N1.Example\n- id: n2\n  name: k2\n").unwrap();
    let d = MockDriver::from_topology(t);
    let inv = d.nodes().unwrap();
    let n1 = inv.by_id("N1").unwrap();
    assert_eq!((n1.name.as_str(), n1.hostname.as_str(), n1.status), ("N1", "n1.example", NodeStatus::Online));
    assert_eq!(inv.by_id("n2").unwrap().hostname, "k2");
}

#[test]
fn unknown_fields_duplicate_ids_and_missing_ids_are_rejected_with_the_location() {
    assert!(Topology::from_yaml("nodes:\n- id: a\n  zonee: x\n").unwrap_err().contains("zonee"));
    assert!(Topology::from_yaml("nodes:\n- id: a\n- id: a\n").unwrap_err().contains("nodes[1]: duplicate"));
    assert!(Topology::from_yaml("volumes:\n- replicas: [a]\n").is_err());
    assert!(Topology::from_yaml("nodes:\n- id: a\n  status: Sleeping\n").is_err());
}

#[test]
fn a_broken_rewrite_keeps_the_previous_topology() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.yaml");
    std::fs::write(&path, "nodes:\n- id: a\n").unwrap();
    let d = MockDriver::load(&path).unwrap();
    std::fs::write(&path, "nodes: [").unwrap();
    assert!(d.reload().is_err());
    assert!(d.nodes().unwrap().by_id("a").is_some());
    std::fs::write(&path, "nodes:\n- id: b\n  status: Offline\n").unwrap();
    d.reload().unwrap();
    assert_eq!(d.nodes().unwrap().by_id("b").unwrap().status, NodeStatus::Offline);
}

#[test]
fn empty_comment_only_and_half_written_topologies_are_refused_and_the_last_good_one_serves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.yaml");
    std::fs::write(&path, "nodes:\n- id: a\n- id: b\n").unwrap();
    let errors = Family::<FileLabels, Counter>::default();
    let d = MockDriver::load(&path).unwrap().with_error_counter(errors.clone());
    for bad in ["", "# nothing here\n\n", "nodes:\n- id: a\n- i", "\u{0}\u{1}garbage"] {
        std::fs::write(&path, bad).unwrap();
        assert!(d.reload().is_err(), "{bad:?} was accepted");
        assert!(d.config_problem().is_some_and(|p| p.contains("mock topology refused")), "{bad:?}");
        assert_eq!(d.nodes().unwrap().nodes().len(), 2, "after {bad:?}");
    }
    assert_eq!(errors.get_or_create(&FileLabels { file: "topology" }).get(), 4);
    std::fs::write(&path, "nodes: []\n").unwrap();
    d.reload().unwrap();
    assert!(d.config_problem().is_none());
    assert_eq!(d.nodes().unwrap().nodes().len(), 0, "an explicit empty list is the operator's word");
    std::fs::write(&path, r#"{"nodes": [{"id": "j"}]}"#).unwrap();
    d.reload().unwrap();
    assert!(d.nodes().unwrap().by_id("j").is_some(), "JSON needs no final newline");
    std::fs::write(&path, r#"{"nodes": [{"id": "j"}"#).unwrap();
    assert!(d.reload().is_err(), "truncated JSON does not parse");
    assert!(MockDriver::load(&dir.path().join("missing.yaml")).is_err());
    std::fs::write(&path, "").unwrap();
    assert!(MockDriver::load(&path).is_err(), "an empty file is refused at startup too");
}

#[test]
fn an_emptied_state_file_does_not_erase_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.yaml");
    std::fs::write(&path, "nodes:\n- id: a\n").unwrap();
    let state = state_path(&path);
    std::fs::write(&state, "volumes:\n  v1:\n    snapshot: s1\n    replicas: [a]\n").unwrap();
    let d = MockDriver::load(&path).unwrap();
    std::fs::write(&state, "").unwrap();
    assert!(d.reload().is_err());
    assert!(d.config_problem().is_some_and(|p| p.contains("snapshot state refused")));
    assert_eq!(d.lock().records.volumes.len(), 1);
}
