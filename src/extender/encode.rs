//! Response bodies written straight into one buffer sized up front: the same bytes serde_json
//! writes for [`FilterResult`](super::wire::FilterResult) and a list of
//! [`HostScore`](super::wire::HostScore)s (checked by the tests below), without building an
//! intermediate list per node or going through serde's per-field machinery 5,000 times.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

/// The kept nodes of a filter answer.
pub enum Kept<'a> {
    /// Full-node mode: the request's Node objects, untouched.
    Nodes(Vec<&'a RawValue>),
    /// Names mode.
    Names(Vec<&'a str>),
}

/// `ExtenderFilterResult` with an empty `Error`.
pub fn filter_result(
    kept: &Kept<'_>,
    failed: &BTreeMap<&str, String>,
    unresolvable: &BTreeMap<&str, String>,
    size: usize,
) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(size);
    match kept {
        Kept::Nodes(items) => {
            out.extend_from_slice(br#"{"Nodes":{"metadata":{},"items":["#);
            for (i, raw) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(raw.get().as_bytes());
            }
            out.extend_from_slice(br#"]},"NodeNames":null"#);
        }
        Kept::Names(names) => {
            out.extend_from_slice(br#"{"Nodes":null,"NodeNames":["#);
            for (i, name) in names.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(&mut out, name)?;
            }
            out.push(b']');
        }
    }
    out.extend_from_slice(br#","FailedNodes":"#);
    serde_json::to_writer(&mut out, failed)?;
    out.extend_from_slice(br#","FailedAndUnresolvableNodes":"#);
    serde_json::to_writer(&mut out, unresolvable)?;
    out.extend_from_slice(br#","Error":""}"#);
    Ok(out)
}

/// A prioritize answer: `[{"Host":..,"Score":..},..]`.
pub fn host_scores<'a>(scores: impl ExactSizeIterator<Item = (&'a str, i64)>) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(2 + scores.len() * 48);
    out.push(b'[');
    for (i, (host, score)) in scores.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"Host":"#);
        string(&mut out, host)?;
        out.extend_from_slice(br#","Score":"#);
        serde_json::to_writer(&mut out, &score)?;
        out.push(b'}');
    }
    out.push(b']');
    Ok(out)
}

/// A JSON string, escaped by serde_json.
fn string(out: &mut Vec<u8>, s: &str) -> serde_json::Result<()> {
    serde_json::to_writer(out, s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extender::wire::{FilterResult, HostScore, ResponseNodeList};

    const NAMES: [&str; 5] = ["n1", "node-00001.example.com", "quo\"te", "back\\slash", "tab\there\u{1}é"];

    fn reasons() -> BTreeMap<&'static str, String> {
        BTreeMap::from([("b\"x", "why \"not\"\n".to_string()), ("a", "storage driver is Offline".to_string())])
    }

    #[test]
    fn filter_answers_are_the_bytes_serde_json_writes_for_filter_result() {
        let raw: Vec<Box<RawValue>> = [r#"{"metadata":{"name":"n1"}}"#, r#"{ "kind" : "Node" }"#]
            .iter()
            .map(|s| RawValue::from_string(s.to_string()).unwrap())
            .collect();
        let items: Vec<&RawValue> = raw.iter().map(AsRef::as_ref).collect();
        for (failed, unresolvable) in [(reasons(), BTreeMap::new()), (BTreeMap::new(), reasons())] {
            let cases = [
                (Kept::Names(NAMES.to_vec()), None, Some(NAMES.to_vec())),
                (Kept::Names(Vec::new()), None, Some(Vec::new())),
                (
                    Kept::Nodes(items.clone()),
                    Some(ResponseNodeList { metadata: Default::default(), items: items.clone() }),
                    None,
                ),
                (Kept::Nodes(Vec::new()), Some(ResponseNodeList { metadata: Default::default(), items: vec![] }), None),
            ];
            for (kept, nodes, node_names) in cases {
                let want = serde_json::to_vec(&FilterResult {
                    nodes,
                    node_names,
                    failed_nodes: failed.clone(),
                    failed_and_unresolvable_nodes: unresolvable.clone(),
                    error: String::new(),
                })
                .unwrap();
                let got = filter_result(&kept, &failed, &unresolvable, 0).unwrap();
                assert_eq!(String::from_utf8(got).unwrap(), String::from_utf8(want).unwrap());
            }
        }
    }

    #[test]
    fn prioritize_answers_are_the_bytes_serde_json_writes_for_host_scores() {
        let scores = [0, 5, -3, i64::MAX, i64::MIN];
        let list: Vec<HostScore<'_>> =
            NAMES.iter().zip(scores).map(|(&host, score)| HostScore { host, score }).collect();
        let want = serde_json::to_vec(&list).unwrap();
        let got = host_scores(list.iter().map(|h| (h.host, h.score))).unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), String::from_utf8(want).unwrap());
        assert_eq!(host_scores(std::iter::empty()).unwrap(), b"[]");
    }
}
