//! Tests of the offline objects file loader.

use super::*;

#[test]
fn a_nameless_object_is_an_error_of_the_file_not_a_panic() {
    for yaml in [
        "kind: Node\n",
        "kind: StorageClass\n",
        "kind: Node\nmetadata: {namespace: x}\n",
        "kind: PersistentVolumeClaim\nmetadata: {name: ''}\n",
    ] {
        let err = Objects::from_yaml(yaml).err().unwrap_or_else(|| panic!("{yaml:?} was accepted"));
        assert!(err.contains("metadata.name is required"), "{err}");
    }
    let snapshot =
        r#"{"apiVersion":"volumesnapshot.external-storage.k8s.io/v1","kind":"VolumeSnapshot","metadata":{},"spec":{}}"#;
    assert!(Objects::from_yaml(snapshot).is_err());
}

#[test]
fn a_list_and_plain_documents_both_load_and_unknown_kinds_are_ignored() {
    let yaml = "kind: List\napiVersion: v1\nitems:\n- {apiVersion: v1, kind: Node, metadata: {name: n1}}\n---\n\
                apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n\
                apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: pv1}\n";
    let view = Objects::from_yaml(yaml).unwrap().into_view();
    assert!(view.is_synced());
    assert!(view.node("n1").is_some());
    assert!(view.pv("pv1").is_some());
}

#[test]
fn a_wrongly_typed_object_reports_its_index_and_kind() {
    let err = Objects::from_yaml("kind: Node\nmetadata: {name: [1]}\n").unwrap_err();
    assert!(err.contains("object 1 (Node)"), "{err}");
}

#[test]
fn a_json_list_takes_the_same_path_as_yaml_and_nested_lists_flatten() {
    let json = r#"{"kind": "List", "items": [
        {"kind": "Node", "metadata": {"name": "n1"}, "status": {"images": [{"names": ["x"]}]}},
        {"kind": "List", "items": [{"kind": "PersistentVolume", "metadata": {"name": "pv1"}}]},
        {"kind": "ConfigMap", "metadata": {"name": "c"}}, 7, null]}"#;
    let objects = Objects::from_yaml(json).unwrap();
    assert_eq!((objects.nodes.len(), objects.pvs.len()), (1, 1));
    assert!(objects.nodes[0].status.as_ref().unwrap().images.is_none(), "nodes are trimmed as live mode trims them");
    let err = Objects::from_yaml(r#"{"kind": "List", "items": [{"kind": "Node", "metadata": 3}]}"#).unwrap_err();
    assert!(err.contains("object 2 (Node)"), "{err}");
}

#[test]
fn a_yaml_flow_mapping_that_is_not_json_still_loads() {
    let objects = Objects::from_yaml("{kind: Node, metadata: {name: n1}}\n").unwrap();
    assert_eq!(objects.nodes.len(), 1);
}

#[test]
fn many_documents_load_beyond_the_parser_default_budget() {
    let mut yaml = String::new();
    for i in 0..2_000 {
        yaml.push_str(&format!("---\nkind: PersistentVolume\nmetadata: {{name: pv{i}}}\n"));
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), yaml).unwrap();
    let view = load_objects_file(file.path()).unwrap();
    assert!(view.is_synced());
    assert!(view.pv("pv1999").is_some());
}
