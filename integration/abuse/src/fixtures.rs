//! Files stork is started on and the requests attacks start from: the seed scenario
//! (examples/seed) and the recorded requests in tests/data, built into the binary.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Value, json};

/// The seed scenario's objects: claims `default/data-1` (pv-v1 on n1, n2) and `default/data-2`
/// (pv-v2 on n2, n3), nodes n1..n5.
pub const SEED_OBJECTS: &str = include_str!("../../../examples/seed/objects.yaml");
/// The seed scenario's mock topology.
pub const SEED_TOPOLOGY: &str = include_str!("../../../examples/seed/topology.yaml");
/// `/filter` ExtenderArgs of the seed pod, names mode.
pub const FILTER_ARGS: &str = include_str!("../../../examples/seed/filter-args.json");
/// `/prioritize` ExtenderArgs of the seed pod, names mode.
pub const PRIORITIZE_ARGS: &str = include_str!("../../../examples/seed/prioritize-args.json");
/// `/filter` ExtenderArgs of the seed pod with full Node objects.
pub const FILTER_NODES: &str = include_str!("../../../tests/data/filter-seed-nodes.json");
/// A recorded AdmissionReview: pod CREATE using claim `default/data-1`.
pub const POD_REVIEW: &str = include_str!("../../../tests/data/admission/pod-with-driver-pvc.json");
/// A recorded AdmissionReview: restore claim CREATE naming a snapshot.
pub const PVC_REVIEW: &str = include_str!("../../../tests/data/admission/pvc-restore-with-snapshot.json");
/// Every recorded AdmissionReview, as mutation seeds.
pub const REVIEWS: [&str; 10] = [
    POD_REVIEW,
    PVC_REVIEW,
    include_str!("../../../tests/data/admission/deployment.json"),
    include_str!("../../../tests/data/admission/pod-dry-run.json"),
    include_str!("../../../tests/data/admission/pod-in-kube-system.json"),
    include_str!("../../../tests/data/admission/pod-opted-out.json"),
    include_str!("../../../tests/data/admission/pod-unknown-pvc.json"),
    include_str!("../../../tests/data/admission/pod-without-pvc.json"),
    include_str!("../../../tests/data/admission/pod-wrong-object.json"),
    include_str!("../../../tests/data/admission/pvc-restore-without-snapshot.json"),
];
/// Every recorded ExtenderArgs, as mutation seeds.
pub const EXTENDER_ARGS: [&str; 3] = [FILTER_ARGS, PRIORITIZE_ARGS, FILTER_NODES];

/// Parses a built-in JSON fixture.
pub fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("built-in fixtures are JSON")
}

/// Writes the seed objects and its topology (in flow style, see [`flow_topology`]) into `dir`.
pub fn write_seed(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let objects = dir.join("objects.yaml");
    let topology = dir.join("topology.yaml");
    std::fs::write(&objects, SEED_OBJECTS).with_context(|| format!("writing {}", objects.display()))?;
    std::fs::write(&topology, flow_topology(SEED_TOPOLOGY)?)
        .with_context(|| format!("writing {}", topology.display()))?;
    Ok((objects, topology))
}

/// The topology as one YAML flow mapping, an entry a line: any cut of it is unparseable (an
/// unclosed brace), unlike block YAML, where a cut between entries still parses.
pub fn flow_topology(yaml: &str) -> anyhow::Result<String> {
    let topology: Value = serde_saphyr::from_str(yaml).context("parsing the seed topology")?;
    let lines =
        |key: &str| -> Vec<String> { topology[key].as_array().into_iter().flatten().map(Value::to_string).collect() };
    Ok(format!(
        "# The seed topology in flow style (stork-abuse).\n{{\"nodes\": [\n{}\n],\n\"volumes\": [\n{}\n]}}\n",
        lines("nodes").join(",\n"),
        lines("volumes").join(",\n")
    ))
}

/// The recorded pod review with another uid.
pub fn pod_review(uid: &str) -> Vec<u8> {
    let mut review = json(POD_REVIEW);
    review["request"]["uid"] = uid.into();
    serde_json::to_vec(&review).expect("encode")
}

/// A pod in `namespace` named `name` with one volume per claim.
pub fn pod(namespace: &str, name: &str, claims: &[String]) -> Value {
    let volumes: Vec<Value> = claims
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"name": format!("v{i}"), "persistentVolumeClaim": {"claimName": c}}))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": "a0000000-0000-0000-0000-000000000001"},
        "spec": {"schedulerName": "stork", "containers": [{"name": "c", "image": "postgres:17"}], "volumes": volumes}
    })
}

/// ExtenderArgs in names mode (`nodeCacheCapable: true`).
pub fn names_args(pod: &Value, names: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({"Pod": pod, "Nodes": null, "NodeNames": names})).expect("encode")
}

/// An AdmissionReview v1 of a CREATE of `object` (`kind` in the core group).
pub fn review(uid: &str, kind: &str, namespace: &str, object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid, "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": format!("{}s", kind.to_lowercase())},
            "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:statefulset-controller"},
            "object": object, "oldObject": null, "dryRun": false
        }
    }))
    .expect("encode")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flow_topology_holds_the_seed_and_no_half_of_it_parses() {
        let text = flow_topology(SEED_TOPOLOGY).unwrap();
        let full: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!((full["nodes"].as_array().unwrap().len(), full["volumes"].as_array().unwrap().len()), (3, 2));
        for cut in (1..text.len() - 2).filter(|&c| text.is_char_boundary(c) && !text[..c].ends_with('#')) {
            let half = &text[..cut];
            if half.trim_end().lines().all(|l| l.starts_with('#')) {
                continue; // only the comment: a null document, refused by other rules
            }
            assert!(serde_saphyr::from_str::<Value>(half).is_err(), "cut at {cut} parses: {half:?}");
        }
    }

    #[test]
    fn every_built_in_fixture_is_json() {
        for text in REVIEWS.iter().chain(&EXTENDER_ARGS) {
            json(text);
        }
    }
}
