use super::*;
use crate::driver::csi::fixtures::{DRIVER, pv};

fn config() -> CsiConfig {
    CsiConfig::for_drivers([DRIVER])
}

type Term<'a> = &'a [(&'a str, &'a str, &'a [&'a str])];

fn locality(annotations: &[(&str, &str)], terms: &[Term<'_>]) -> (Vec<String>, Vec<String>, Vec<String>) {
    let v = volume_of(&pv("pv1", DRIVER, annotations, terms), &config()).expect("a configured driver's volume");
    assert_eq!(v.id, "pv1");
    assert!(v.labels.is_empty());
    (v.replicas, v.zones, v.regions)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_pv_of_an_unconfigured_driver_or_without_csi_is_not_a_driver_volume() {
    assert!(volume_of(&pv("pv1", "other.csi.example.com", &[], &[]), &config()).is_none());
    let mut no_csi = pv("pv1", DRIVER, &[], &[]);
    no_csi.spec.as_mut().unwrap().csi = None;
    assert!(volume_of(&no_csi, &config()).is_none());
}

#[test]
fn a_pv_without_affinity_or_annotation_has_no_locality() {
    assert_eq!(locality(&[], &[]), (vec![], vec![], vec![]));
}

#[test]
fn replicas_come_from_hostname_affinity_across_terms() {
    let hosts: &[&str] = &["n1", "n2"];
    let other: &[&str] = &["n3", "n1"];
    let got = locality(&[], &[&[("kubernetes.io/hostname", "In", hosts)], &[("kubernetes.io/hostname", "In", other)]]);
    assert_eq!(got.0, strings(&["n1", "n2", "n3"]));
}

#[test]
fn a_driver_specific_hostname_key_also_pins_replicas() {
    let got = locality(&[], &[&[("topology.hostpath.csi/hostname", "In", &["n7"])]]);
    assert_eq!(got.0, strings(&["n7"]));
}

#[test]
fn host_requirements_within_one_term_are_intersected_and_not_in_is_ignored() {
    let got = locality(
        &[],
        &[&[
            ("kubernetes.io/hostname", "In", &["n1", "n2"]),
            ("topology.hostpath.csi/hostname", "In", &["n2", "n3"]),
            ("kubernetes.io/hostname", "NotIn", &["n2"]),
        ]],
    );
    assert_eq!(got.0, strings(&["n2"]));
}

#[test]
fn a_metadata_name_field_selector_pins_replicas() {
    let mut v = pv("pv1", DRIVER, &[], &[]);
    let term = serde_json::json!({"required": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n4"]}]}
    ]}});
    v.spec.as_mut().unwrap().node_affinity = Some(serde_json::from_value(term).unwrap());
    assert_eq!(volume_of(&v, &config()).unwrap().replicas, strings(&["n4"]));
}

#[test]
fn the_replica_annotation_wins_over_affinity_and_an_empty_one_is_ignored() {
    let affinity: &[Term<'_>] = &[&[("kubernetes.io/hostname", "In", &["n1"])]];
    let got = locality(&[(REPLICA_NODES_ANNOTATION, " n2, n3,,n2 ")], affinity);
    assert_eq!(got.0, strings(&["n2", "n3"]));
    let got = locality(&[(REPLICA_NODES_ANNOTATION, " , ")], affinity);
    assert_eq!(got.0, strings(&["n1"]));
}

#[test]
fn zones_and_regions_come_from_standard_and_driver_topology_keys() {
    let got = locality(
        &[],
        &[
            &[("topology.kubernetes.io/zone", "In", &["a"]), ("topology.kubernetes.io/region", "In", &["east"])],
            &[("topology.hostpath.csi/zone", "In", &["b", "a"])],
            &[("failure-domain.beta.kubernetes.io/region", "In", &["west"])],
        ],
    );
    assert_eq!(got, (vec![], strings(&["a", "b"]), strings(&["east", "west"])));
}

#[test]
fn hostname_pins_and_a_topology_segment_are_both_kept() {
    let got =
        locality(&[], &[&[("kubernetes.io/hostname", "In", &["n1"]), ("topology.hostpath.csi/zone", "In", &["a"])]]);
    assert_eq!(got, (strings(&["n1"]), strings(&["a"]), vec![]));
}
