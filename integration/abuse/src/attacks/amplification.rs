//! Attack 1, amplification: small requests built so that a naive answer is huge — a pod naming
//! a missing claim with a name of up to 100 KiB, offered 1k–10k nodes, so that a per-node
//! reason quoting the claim repeats it 10k times; long names in every other field too.
//!
//! Asserted for every response: body bytes ≤ 2 × request bytes + 256 × nodes (1 for a review),
//! and stork's VmHWM under the manifests' memory limit.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stork_bench::stork::Extra;

use crate::{
    client::{Endpoint, Request},
    fixtures::{self, names_args, pod, review},
    harness::{Ctx, Target},
    report::{Outcome, mib, ms, size},
};

/// How long one (possibly gigabyte) answer may take.
const TIMEOUT: Duration = Duration::from_secs(120);

/// One request body and how many nodes it offers.
struct Case {
    label: String,
    body: Vec<u8>,
    nodes: usize,
}

/// `len` characters: `prefix` padded with `fill`.
fn long(prefix: &str, fill: char, len: usize) -> String {
    let mut s = String::from(prefix);
    s.extend(std::iter::repeat_n(fill, len.saturating_sub(prefix.len())));
    s
}

/// Node names of `len` characters, distinct.
fn node_names(count: usize, len: usize) -> Vec<String> {
    (0..count).map(|i| long(&format!("node-{i:06}-"), 'x', len)).collect()
}

/// The pod the extender cases schedule: long namespace and name, `claims` missing claims of
/// `claim_len` characters.
fn hostile_pod(claims: usize, claim_len: usize) -> Value {
    let claims: Vec<String> = (0..claims).map(|i| long(&format!("missing-{i}-"), 'c', claim_len)).collect();
    pod(&long("ns-", 'n', 4096), &long("pod-", 'p', 4096), &claims)
}

/// Full-node mode: Node objects with long names, labels and addresses.
fn nodes_args(pod: &Value, count: usize) -> Vec<u8> {
    let items: Vec<Value> = node_names(count, 253)
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {
                    "kubernetes.io/hostname": name, "topology.kubernetes.io/zone": long("zone-", 'z', 63),
                    "stork.libopenstorage.org/rack": long("rack-", 'r', 63)
                }},
                "status": {"addresses": [
                    {"type": "InternalIP", "address": format!("10.9.{}.{}", i / 256, i % 256)},
                    {"type": "Hostname", "address": name}
                ]}
            })
        })
        .collect();
    serde_json::to_vec(&json!({"Pod": pod, "Nodes": {"items": items}, "NodeNames": null})).expect("encode")
}

fn extender_cases() -> Vec<Case> {
    let names = |claims, claim_len, nodes, name_len| Case {
        label: format!("{claims} claim(s) of {} × {nodes} nodes", size(claim_len as u64)),
        body: names_args(&hostile_pod(claims, claim_len), &node_names(nodes, name_len)),
        nodes,
    };
    vec![
        names(1, 100 << 10, 1_000, 64),
        names(1, 1 << 10, 10_000, 253),
        names(1, 100 << 10, 10_000, 64),
        names(50, 2 << 10, 2_000, 64),
        Case {
            label: "full nodes: 1 claim of 10.0 KiB × 1000 nodes".into(),
            body: nodes_args(&hostile_pod(1, 10 << 10), 1_000),
            nodes: 1_000,
        },
    ]
}

fn webhook_cases() -> Vec<(&'static str, Case)> {
    let ns = long("ns-", 'n', 4096);
    let one = review(&long("uid-", 'u', 4096), "Pod", &ns, hostile_pod(1, 100 << 10));
    let many = review(&long("uid-", 'u', 4096), "Pod", &ns, hostile_pod(1_000, 1 << 10));
    let mut pvc = fixtures::json(fixtures::PVC_REVIEW);
    pvc["request"]["uid"] = long("uid-", 'u', 4096).into();
    pvc["request"]["namespace"] = ns.clone().into();
    let object = &mut pvc["request"]["object"]["metadata"];
    object["name"] = long("claim-", 'c', 4096).into();
    object["namespace"] = ns.into();
    for value in object["annotations"].as_object_mut().into_iter().flat_map(|a| a.values_mut()) {
        *value = long("snapshot-", 's', 100 << 10).into();
    }
    let case = |label: &str, body| Case { label: label.into(), body, nodes: 1 };
    vec![
        ("/mutate", case("1 missing claim of 100.0 KiB", one)),
        ("/mutate", case("1000 missing claims of 1.0 KiB", many)),
        ("/validate", case("restore claim, 100.0 KiB snapshot names", serde_json::to_vec(&pvc).expect("encode"))),
    ]
}

/// Sends one case and asserts the answer's size.
fn send(out: &mut Outcome, target: &Target, endpoint: &Endpoint, listener: &str, path: &str, case: &Case) {
    let request = case.body.len() as u64;
    let bound = 2 * request + 256 * case.nodes as u64;
    let start = Instant::now();
    let key = format!("{path} {listener}: {}", case.label);
    match endpoint.exchange(&Request::post(path, &case.body), TIMEOUT) {
        Err(e) => out.fail(format!("{key}: no answer within {} s ({e})", TIMEOUT.as_secs())),
        Ok(r) => {
            out.check(r.body_len <= bound, || {
                format!(
                    "{key}: response {} > bound {} (2 × request {} + 256 × {} nodes)",
                    size(r.body_len),
                    size(bound),
                    size(request),
                    case.nodes
                )
            });
            let peak = target.peak().map_or(Value::Null, |p| mib(p).into());
            out.figure(
                key,
                json!({"status": r.status, "request": size(request), "response": size(r.body_len), "bound": size(bound),
                       "ms": ms(start.elapsed()).round(), "rss_peak_mib": peak}),
            );
        }
    }
}

/// Runs the attack.
pub fn run(ctx: &Ctx, out: &mut Outcome) -> anyhow::Result<()> {
    let target = ctx.start_seed("amplification", &Extra::default())?;
    for case in extender_cases() {
        for (listener, endpoint) in [("https", &target.https), ("plain", &target.plain)] {
            for path in ["/filter", "/prioritize"] {
                send(out, &target, endpoint, listener, path, &case);
            }
        }
    }
    for (path, case) in webhook_cases() {
        send(out, &target, &target.https, "https", path, &case);
    }
    target.finish(ctx, out, "the amplification attack");
    Ok(())
}
