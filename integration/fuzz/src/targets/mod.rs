//! What is fuzzed, and the properties checked on every input. A check returns `Err` with a
//! description when a property fails; a panic is caught by the engine.

mod extender;
mod objects;
mod review;
mod topology;

use std::{collections::HashMap, sync::Arc};

use anyhow::Context;
use stork::{
    cluster::Objects,
    driver::mock::{MockDriver, Topology},
    events::EventSink,
    extender::{http::ExtenderState, limits::ExtenderLimits},
    metrics::Metrics,
    webhook::{WebhookConfig, WebhookState},
};
use stork_synth::SynthCluster;

use crate::corpus::{self, Corpus, Family, Seed, repo_root};
pub use extender::Extender;
pub use objects::ObjectsFile;
pub use review::Review;
pub use topology::TopologyFile;

/// The properties of one target.
pub trait Check: Send + Sync {
    /// Runs one input, noting outcomes in `seen`; `Err` describes a failed property.
    fn run(&self, input: &[u8], seen: &mut Seen) -> Result<(), String>;
}

/// A decoder under test: its name, its seeds and its properties.
pub struct Target {
    /// Its name (`--target`, crash file names, the summary).
    pub name: &'static str,
    /// Its seeds.
    pub corpus: Corpus,
    check: Box<dyn Check>,
}

impl Target {
    /// Runs one input (see [`Check::run`]).
    pub fn run(&self, input: &[u8], seen: &mut Seen) -> Result<(), String> {
        self.check.run(input, seen)
    }
}

/// Counts a load error as an outcome class, or notes a decision: what the file targets share.
fn loaded<T>(result: Result<T, String>, seen: &mut Seen) -> Option<T> {
    match result {
        Ok(t) => {
            seen.decided += 1;
            Some(t)
        }
        Err(e) => {
            seen.class(&format!("err: {}", normalize(&e)));
            None
        }
    }
}

/// Outcomes one worker saw for one target.
#[derive(Debug, Default)]
pub struct Seen {
    /// How often each outcome class was seen.
    pub classes: HashMap<String, u64>,
    /// Inputs that reached a decision (past decoding, into stork's logic).
    pub decided: u64,
    /// Nesting probes run (and survived: a stack overflow would have ended the process).
    pub probes: u64,
}

impl Seen {
    /// Counts one outcome of class `label` (allocates only for a class not seen before).
    pub fn class(&mut self, label: &str) {
        match self.classes.get_mut(label) {
            Some(n) => *n += 1,
            None => {
                self.classes.insert(label.to_owned(), 1);
            }
        }
    }

    /// Adds another worker's counts.
    pub fn merge(&mut self, other: Seen) {
        for (k, v) in other.classes {
            *self.classes.entry(k).or_default() += v;
        }
        self.decided += other.decided;
        self.probes += other.probes;
    }
}

/// An error message as an outcome class: positions, numbers and quoted input removed, so that
/// classes name what went wrong, not where or with which bytes.
pub fn normalize(message: &str) -> String {
    // The first line only (YAML errors go on with a snippet of the input), without its position.
    let message = message.lines().next().unwrap_or_default();
    let message = message.split(" at line ").next().unwrap_or(message);
    let message = match message.strip_prefix("error: line ") {
        Some(rest) => rest.split_once(": ").map_or(rest, |(_, m)| m),
        None => message,
    };
    // The YAML parser names the duplicated key, which comes from the input.
    let message = if message.starts_with("duplicate mapping key") { "duplicate mapping key" } else { message };
    let mut out = String::with_capacity(64);
    // The open quote, and whether its text is kept; Debug-escaped quotes inside are skipped.
    let mut quote: Option<(char, bool)> = None;
    let mut escaped = false;
    for c in message.chars() {
        match quote {
            Some((q, keep)) => {
                if c == q && !escaped {
                    quote = None;
                    out.push(c);
                } else if keep {
                    out.push(c);
                }
                escaped = c == '\\' && !escaped;
            }
            None if c == '`' || c == '"' => {
                // Missing and duplicate fields name a part of the schema: keep them.
                let keep = out.ends_with("missing field ") || out.ends_with("duplicate field ");
                out.push(c);
                if !keep {
                    out.push('…');
                }
                quote = Some((c, keep));
            }
            None if c.is_ascii_digit() => {
                if !out.ends_with('#') {
                    out.push('#');
                }
            }
            None => out.push(c),
        }
        if out.len() >= 90 {
            out.push('…');
            break;
        }
    }
    out
}

/// The offline clusters decisions run against: the seed scenario (with a restore class and
/// snapshots, for `/validate`) and a small zoned synthetic cluster. Which one an input meets
/// depends on the input alone, so a saved input replays the same way.
pub struct Fixture {
    clusters: Vec<(WebhookState, ExtenderState)>,
    /// Strings of the fixtures' objects and topologies, for the dictionaries.
    pub strings: Vec<String>,
}

/// The restore StorageClass `/validate` looks for.
const RESTORE_CLASS: &str = "---\napiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: stork-snapshot-sc}\nprovisioner: stork-snapshot\n";

impl Fixture {
    /// Builds the clusters from the repository's seed files.
    pub fn load() -> anyhow::Result<Self> {
        let root = repo_root();
        let read = |p: &str| std::fs::read_to_string(root.join(p)).with_context(|| format!("reading {p}"));
        let objects_text = format!(
            "{}{RESTORE_CLASS}{}",
            read("examples/seed/objects.yaml")?,
            read("tests/data/snapshot/snapshots.yaml")?
        );
        let topology_text = read("examples/seed/topology.yaml")?;
        let objects = Objects::from_yaml(&objects_text).map_err(anyhow::Error::msg)?;
        let topology = Topology::from_yaml(&topology_text).map_err(anyhow::Error::msg)?;
        let synth = SynthCluster::new(4, 3);
        let clusters = vec![state(objects, topology), state(synth.objects, synth.topology)];
        let mut strings = Vec::new();
        for text in [objects_text, topology_text] {
            let seed = Seed::new(String::new(), text.into_bytes());
            let mut found = Vec::new();
            seed.docs.iter().for_each(|d| d.strings(&mut found));
            strings.extend(found.into_iter().map(str::to_owned));
        }
        Ok(Self { clusters, strings })
    }

    /// The cluster `input` meets.
    pub fn pick(&self, input: &[u8]) -> &(WebhookState, ExtenderState) {
        let spread = input.len() + input.last().map_or(0, |&b| usize::from(b));
        &self.clusters[spread % self.clusters.len()]
    }

    /// The seed scenario's states.
    pub fn seed_cluster(&self) -> &(WebhookState, ExtenderState) {
        &self.clusters[0]
    }
}

fn state(objects: Objects, topology: Topology) -> (WebhookState, ExtenderState) {
    let cluster = objects.into_view();
    let driver = Arc::new(MockDriver::from_topology(topology));
    let metrics = Metrics::new();
    let webhook = WebhookState {
        cluster: cluster.clone(),
        driver: driver.clone(),
        config: Arc::new(WebhookConfig::default()),
        metrics: metrics.clone(),
    };
    let extender = ExtenderState {
        cluster,
        driver,
        events: EventSink::log_only(),
        metrics,
        limits: ExtenderLimits::default(),
        client_auth: None,
    };
    (webhook, extender)
}

/// Every target, in `--target all` order.
pub fn all(fixture: &Arc<Fixture>) -> anyhow::Result<Vec<Arc<Target>>> {
    let target = |name, family, check: Box<dyn Check>| -> anyhow::Result<Arc<Target>> {
        Ok(Arc::new(Target { name, corpus: corpus::load(family, &fixture.strings)?, check }))
    };
    Ok(vec![
        target("review", Family::Review, Box::new(Review::new(fixture.clone())))?,
        target("extender", Family::Extender, Box::new(Extender::new(fixture.clone())))?,
        target("topology", Family::Topology, Box::new(TopologyFile::new(fixture.clone())?))?,
        target("objects", Family::Objects, Box::new(ObjectsFile::new(fixture.clone())?))?,
    ])
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn classes_drop_positions_numbers_and_input_but_keep_field_names() {
        assert_eq!(normalize("expected value at line 1 column 7"), "expected value");
        assert_eq!(
            normalize("invalid type: string \"abc\", expected u64 at line 3 column 9"),
            "invalid type: string \"…\", expected u#"
        );
        assert_eq!(normalize("missing field `uid`"), "missing field `uid`");
        assert_eq!(normalize("object 12 (Node): invalid length 3"), "object # (Node): invalid length #");
        assert_eq!(
            normalize("error: line 2 column 3: expected mapping start\n --> <input>:2:3\n  |"),
            "expected mapping start"
        );
    }
}
