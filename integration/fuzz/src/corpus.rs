//! Seed inputs: the repository's own fixtures (recorded AdmissionReviews and ExtenderArgs, the
//! example and manifest YAML, mock topologies) plus a few bodies `stork_synth` generates.
//! Each seed is parsed once, here, into a [`Node`] tree for the structure-aware mutations.

use std::path::{Path, PathBuf};

use anyhow::Context;
use stork_synth::{self as synth, SynthCluster};

use crate::mutate::{
    Style,
    tree::{Kind, Node},
};

/// One seed input.
#[derive(Debug)]
pub struct Seed {
    /// Where it came from (repository path, or `synth:..`).
    pub name: String,
    /// Its bytes, as read.
    pub bytes: Vec<u8>,
    /// Its documents as trees; empty when it does not parse as JSON or YAML.
    pub docs: Vec<Node>,
    /// The kind of each node of `docs`, in pre-order.
    pub kinds: Vec<Kind>,
}

/// The seeds of one target and what mutations draw from.
#[derive(Debug)]
pub struct Corpus {
    /// Seed inputs.
    pub seeds: Vec<Seed>,
    /// Strings of every seed and of the fuzzed cluster (names, kinds, keys), deduplicated.
    pub dictionary: Vec<String>,
    /// How tree mutations may be written out.
    pub styles: &'static [Style],
}

/// Which fixtures a target starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `tests/data/admission/*.json`.
    Review,
    /// `tests/data/*.json` and `examples/seed/*-args.json`, and synthetic ExtenderArgs.
    Extender,
    /// Every `*topology*.yaml`, and a synthetic topology.
    Topology,
    /// Every other YAML or JSON fixture, example and manifest, and synthetic objects.
    Objects,
}

impl Family {
    fn of(repo_path: &str) -> Self {
        let file = repo_path.rsplit('/').next().unwrap_or(repo_path);
        if repo_path.starts_with("tests/data/admission/") {
            Self::Review
        } else if file.contains("topology") {
            Self::Topology
        } else if file.ends_with("-args.json")
            || repo_path.matches('/').count() == 2 && repo_path.starts_with("tests/data/")
        {
            Self::Extender
        } else {
            Self::Objects
        }
    }
}

/// The repository root (this crate lives in `integration/fuzz`).
pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::canonicalize(&root).unwrap_or(root)
}

/// Loads the seeds of `family`, sorted by name so that a seed means the same input every run.
pub fn load(family: Family, extra_strings: &[String]) -> anyhow::Result<Corpus> {
    let root = repo_root();
    let mut files = Vec::new();
    for dir in ["tests/data", "examples", "manifests"] {
        walk(&root, dir, &mut files).with_context(|| format!("listing {dir}"))?;
    }
    files.sort();
    let mut seeds = Vec::new();
    for path in files.into_iter().filter(|p| Family::of(p) == family) {
        let bytes = std::fs::read(root.join(&path)).with_context(|| format!("reading {path}"))?;
        seeds.push(Seed::new(path, bytes));
    }
    seeds.extend(synthetic(family)?);
    anyhow::ensure!(!seeds.is_empty(), "no seeds for {family:?} under {}", root.display());
    let mut dictionary: Vec<String> = extra_strings.to_vec();
    for seed in &seeds {
        let mut strings = Vec::new();
        seed.docs.iter().for_each(|d| d.strings(&mut strings));
        dictionary.extend(strings.into_iter().filter(|s| s.len() <= 256).map(str::to_owned));
    }
    dictionary.sort();
    dictionary.dedup();
    let styles: &'static [Style] = match family {
        Family::Review | Family::Extender => &[Style::Json],
        Family::Topology | Family::Objects => &[Style::Json, Style::Yaml],
    };
    Ok(Corpus { seeds, dictionary, styles })
}

impl Seed {
    /// A seed and its trees (JSON first, then multi-document YAML).
    pub fn new(name: String, bytes: Vec<u8>) -> Self {
        let text = std::str::from_utf8(&bytes).unwrap_or_default();
        let json: Result<Vec<Node>, _> = serde_json::Deserializer::from_str(text).into_iter().collect();
        let docs = match json {
            Ok(docs) if !docs.is_empty() => docs,
            _ => serde_saphyr::from_multiple::<Node>(text).unwrap_or_default(),
        };
        let mut kinds = Vec::new();
        docs.iter().for_each(|d| d.kinds(&mut kinds));
        Self { name, bytes, docs, kinds }
    }

    /// The node at a pre-order index counted across all documents.
    pub fn nth(&self, mut index: usize) -> Option<&Node> {
        for doc in &self.docs {
            let size = doc.size();
            if index < size {
                return doc.nth(index);
            }
            index -= size;
        }
        None
    }
}

/// Generated seeds: a zoned cluster's ExtenderArgs in both node modes, its topology and objects.
fn synthetic(family: Family) -> anyhow::Result<Vec<Seed>> {
    let (nodes, volumes) = (4, 3);
    let mut bytes = Vec::new();
    Ok(match family {
        Family::Review => Vec::new(),
        Family::Extender => {
            let cluster = SynthCluster::new(nodes, volumes);
            vec![
                Seed::new("synth:names-args".into(), cluster.names_args(2)),
                Seed::new("synth:nodes-args".into(), cluster.nodes_args(2)),
            ]
        }
        Family::Topology => {
            synth::write_topology(&mut bytes, nodes, volumes)?;
            vec![Seed::new("synth:topology".into(), bytes)]
        }
        Family::Objects => {
            synth::write_objects(&mut bytes, nodes, volumes)?;
            vec![Seed::new("synth:objects".into(), bytes)]
        }
    })
}

/// Repository-relative paths of the `.json` and `.yaml` files under `dir`.
fn walk(root: &Path, dir: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root.join(dir))? {
        let entry = entry?;
        let name = format!("{dir}/{}", entry.file_name().to_string_lossy());
        if entry.file_type()?.is_dir() {
            walk(root, &name, out)?;
        } else if name.ends_with(".json") || name.ends_with(".yaml") {
            out.push(name);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_are_sorted_into_their_families() {
        assert_eq!(Family::of("tests/data/admission/deployment.json"), Family::Review);
        assert_eq!(Family::of("tests/data/no-pod.json"), Family::Extender);
        assert_eq!(Family::of("examples/seed/filter-args.json"), Family::Extender);
        assert_eq!(Family::of("manifests/topology.yaml"), Family::Topology);
        assert_eq!(Family::of("examples/seed/topology-n2-offline.yaml"), Family::Topology);
        assert_eq!(Family::of("tests/data/cluster/pv-full.json"), Family::Objects);
        assert_eq!(Family::of("examples/seed/objects.yaml"), Family::Objects);
    }

    #[test]
    fn every_family_has_seeds_that_parse_into_trees() {
        for family in [Family::Review, Family::Extender, Family::Topology, Family::Objects] {
            let corpus = load(family, &[]).unwrap();
            assert!(corpus.seeds.iter().filter(|s| !s.docs.is_empty()).count() >= 2, "{family:?}");
            assert!(corpus.seeds.iter().all(|s| s.kinds.len() == s.docs.iter().map(Node::size).sum::<usize>()));
        }
    }
}
