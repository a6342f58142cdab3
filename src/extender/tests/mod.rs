//! Decision tables for `/filter` and `/prioritize`, over builder fixtures.

mod filter;
mod prioritize;

use std::collections::BTreeMap;

use crate::{
    cluster::pod::PodFacts,
    events::PodEvent,
    extender::{filter::filter, prioritize::prioritize},
    fixtures::{Built, World},
};

/// A filter decision with node names instead of indices.
#[derive(Debug)]
struct Filtered {
    kept: Vec<String>,
    failed: BTreeMap<String, String>,
    unresolvable: BTreeMap<String, String>,
    event: Option<PodEvent>,
}

fn run_filter(world: World, pod: &PodFacts, names: &[&str]) -> Filtered {
    let built = Built::from(world);
    built.with_candidates(pod, names, |inputs, nodes| {
        let d = filter(inputs, nodes).expect("no deadline");
        let named = |v: Vec<(usize, String)>| v.into_iter().map(|(i, r)| (names[i].to_string(), r)).collect();
        Filtered {
            kept: d.kept.iter().map(|&i| names[i].to_string()).collect(),
            failed: named(d.failed),
            unresolvable: named(d.unresolvable),
            event: d.event,
        }
    })
}

/// Scores by node name, plus the event.
fn run_prioritize(world: World, pod: &PodFacts, names: &[&str]) -> (BTreeMap<String, i64>, Option<PodEvent>) {
    let built = Built::from(world);
    built.with_candidates(pod, names, |inputs, nodes| {
        let s = prioritize(inputs, nodes).expect("no deadline");
        (names.iter().map(|n| n.to_string()).zip(s.scores).collect(), s.event)
    })
}

fn scores(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(n, s)| (n.to_string(), *s)).collect()
}
