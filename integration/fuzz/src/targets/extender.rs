//! ExtenderArgs bodies through `/filter` and `/prioritize` (`filter_body`, `prioritize_body`:
//! decode, decide against the cached cluster and driver, encode).
//!
//! Properties, besides never panicking: an answer is JSON; a filter answer accounts for every
//! candidate node (kept, failed or unresolvable) and names no other; a prioritize answer scores
//! exactly the candidates, in order.

use std::{collections::BTreeMap, sync::Arc};

use serde::Deserialize;
use serde_json::value::RawValue;
use stork::extender::{
    http::{ExtenderState, filter_body, prioritize_body},
    limits::Deadline,
    wire::ExtenderArgs,
};

use super::{Check, Fixture, Seen, normalize};

/// The `extender` target's properties.
pub struct Extender {
    fixture: Arc<Fixture>,
}

impl Extender {
    /// The properties, checked against `fixture`'s clusters.
    pub fn new(fixture: Arc<Fixture>) -> Self {
        Self { fixture }
    }
}

impl Check for Extender {
    fn run(&self, input: &[u8], seen: &mut Seen) -> Result<(), String> {
        let (_, state) = self.fixture.pick(input);
        let filtered = call(state, input, Verb::Filter);
        let prioritized = call(state, input, Verb::Prioritize);
        let mut decided = false;
        for (verb, answer) in [("filter", &filtered), ("prioritize", &prioritized)] {
            match answer {
                Ok(_) => decided = true,
                Err(e) => seen.class(&format!("{verb}: err {}: {}", e.metric_label(), normalize(&e.to_string()))),
            }
        }
        if !decided {
            return Ok(());
        }
        seen.decided += 1;
        let args: ExtenderArgs<'_> =
            serde_json::from_slice(input).map_err(|e| format!("answered a body that does not decode: {e}"))?;
        let candidates = Candidates::of(&args);
        if let Ok(body) = &filtered {
            check_filter(body, &candidates, seen)?;
        }
        if let Ok(body) = &prioritized {
            check_prioritize(body, &candidates, seen)?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Verb {
    Filter,
    Prioritize,
}

/// One verb on `body`, as its handler runs it (without the HTTP envelope, and without a
/// deadline: a deadline would make outcomes depend on the machine's load).
fn call(state: &ExtenderState, body: &[u8], verb: Verb) -> Result<Vec<u8>, stork::extender::Error> {
    match verb {
        Verb::Filter => filter_body(state, body, Deadline::NONE),
        Verb::Prioritize => prioritize_body(state, body, Deadline::NONE),
    }
}

/// The request's candidate nodes: names, and in full-node mode each node's raw JSON.
struct Candidates<'a> {
    names: Vec<&'a str>,
    raws: Vec<&'a str>,
}

impl<'a> Candidates<'a> {
    fn of(args: &'a ExtenderArgs<'a>) -> Self {
        match (&args.nodes, &args.node_names) {
            (Some(list), _) => Self {
                names: list.items.iter().map(|n| &*n.name).collect(),
                raws: list.items.iter().map(|n| n.raw.get()).collect(),
            },
            (None, Some(names)) => Self { names: names.iter().map(|n| &**n).collect(), raws: Vec::new() },
            (None, None) => Self { names: Vec::new(), raws: Vec::new() },
        }
    }
}

#[derive(Deserialize)]
struct FilterAnswer<'a> {
    #[serde(rename = "Nodes", borrow)]
    nodes: Option<NodeListAnswer<'a>>,
    #[serde(rename = "NodeNames")]
    node_names: Option<Vec<String>>,
    #[serde(rename = "FailedNodes")]
    failed: BTreeMap<String, String>,
    #[serde(rename = "FailedAndUnresolvableNodes", default)]
    unresolvable: BTreeMap<String, String>,
    #[serde(rename = "Error")]
    error: String,
}

#[derive(Deserialize)]
struct NodeListAnswer<'a> {
    #[serde(borrow)]
    items: Vec<&'a RawValue>,
}

fn check_filter(body: &[u8], c: &Candidates<'_>, seen: &mut Seen) -> Result<(), String> {
    let answer: FilterAnswer<'_> = serde_json::from_slice(body).map_err(|e| {
        format!("filter answer is not an ExtenderFilterResult ({e}): {}", String::from_utf8_lossy(body))
    })?;
    if !answer.error.is_empty() {
        return Err(format!("filter answer with an error: {}", answer.error));
    }
    let in_request = |name: &str| c.names.contains(&name);
    let mut accounted: Vec<&str> = Vec::new();
    match (&answer.nodes, &answer.node_names) {
        (Some(list), None) => {
            for raw in &list.items {
                let i =
                    c.raws.iter().position(|r| *r == raw.get()).ok_or("filter kept a node the request did not send")?;
                accounted.push(c.names[i]);
            }
        }
        (None, Some(names)) => {
            if let Some(n) = names.iter().find(|n| !in_request(n)) {
                return Err(format!("filter kept {n:?}, which the request did not name"));
            }
            accounted.extend(names.iter().map(String::as_str));
        }
        _ => return Err("filter answer has both or neither of Nodes and NodeNames".into()),
    }
    for name in answer.failed.keys().chain(answer.unresolvable.keys()) {
        if !in_request(name) {
            return Err(format!("filter failed {name:?}, which the request did not name"));
        }
        accounted.push(name);
    }
    if let Some(lost) = c.names.iter().find(|n| !accounted.contains(n)) {
        return Err(format!("filter neither kept nor failed candidate {lost:?}"));
    }
    let kept = accounted.len() - answer.failed.len() - answer.unresolvable.len();
    seen.class(match (kept, answer.failed.is_empty() && answer.unresolvable.is_empty()) {
        (0, true) => "filter: ok, no candidates",
        (0, false) => "filter: ok, every node failed",
        (_, true) => "filter: ok, every node kept",
        (_, false) => "filter: ok, some nodes failed",
    });
    Ok(())
}

#[derive(Deserialize)]
struct HostPriority {
    #[serde(rename = "Host")]
    host: String,
    #[serde(rename = "Score")]
    score: i64,
}

fn check_prioritize(body: &[u8], c: &Candidates<'_>, seen: &mut Seen) -> Result<(), String> {
    let scores: Vec<HostPriority> = serde_json::from_slice(body).map_err(|e| {
        format!("prioritize answer is not a HostPriority list ({e}): {}", String::from_utf8_lossy(body))
    })?;
    let hosts: Vec<&str> = scores.iter().map(|s| s.host.as_str()).collect();
    if hosts != c.names {
        return Err(format!("prioritize scored {hosts:?} for candidates {:?}", c.names));
    }
    if scores.iter().any(|s| s.score < 0) {
        return Err(format!("negative score in {}", String::from_utf8_lossy(body)));
    }
    let distinct: std::collections::BTreeSet<i64> = scores.iter().map(|s| s.score).collect();
    seen.class(match distinct.len() {
        0 => "prioritize: ok, no candidates",
        1 => "prioritize: ok, one score for all",
        _ => "prioritize: ok, nodes ranked",
    });
    Ok(())
}
