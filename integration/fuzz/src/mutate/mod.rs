//! Input generation: a seed, changed structurally (tree edits written back out as JSON or YAML)
//! and/or blindly (byte havoc), and sometimes spliced with another seed.

mod bytes;
mod emit;
pub mod tree;
mod values;

pub use emit::Style;
use emit::{Edit, Value, emit};
pub use values::{MAX_HUGE_STRING, MAX_NESTING};

use crate::{corpus::Corpus, rng::Rng};
use tree::Kind;

/// Inputs are cut to this size (a huge string or deep nesting plus the seed fits).
pub const MAX_INPUT: usize = 2 << 20;

/// Generates inputs from one corpus; reuses its buffers between inputs.
pub struct Mutator<'c> {
    corpus: &'c Corpus,
    edits: Vec<(usize, Edit)>,
    /// (seed, node) of each nesting probe.
    probes: Vec<(usize, usize)>,
}

impl<'c> Mutator<'c> {
    /// A mutator over `corpus`, with up to `probes` nesting probes (see [`Self::probe`]) spread
    /// over its seeds and, in each, evenly over its nodes.
    pub fn new(corpus: &'c Corpus, probes: usize) -> Self {
        let mut sites_of = Vec::new();
        for (s, seed) in corpus.seeds.iter().enumerate().filter(|_| probes > 0) {
            let sites = seed.kinds.len().min((probes / corpus.seeds.len()).max(1));
            sites_of.extend((0..sites).map(|j| (s, j * seed.kinds.len() / sites)));
        }
        sites_of.truncate(probes);
        Self { corpus, edits: Vec::new(), probes: sites_of }
    }

    /// Writes nesting probe `index` into `out`: a seed with [`MAX_NESTING`] levels of `[` or
    /// `{"a":` around one of its nodes, so that every kind of position — fields decoded into
    /// types, skipped fields, raw values kept for later — meets deep nesting at least once.
    /// False when there is no such probe.
    pub fn probe(&self, index: usize, out: &mut Vec<u8>) -> bool {
        let Some(&(s, site)) = self.probes.get(index) else { return false };
        out.clear();
        let edit = Edit::Nest { depth: MAX_NESTING, map: index % 2 == 1 };
        let style = self.corpus.styles[index / 2 % self.corpus.styles.len()];
        emit(&self.corpus.seeds[s].docs, &[(site, edit)], style, out);
        true
    }

    /// Writes the next input into `out`.
    pub fn generate(&mut self, rng: &mut Rng, out: &mut Vec<u8>) {
        out.clear();
        let corpus = self.corpus;
        let seeds = &corpus.seeds;
        // Half the time the smaller of two seeds: large manifests (CRDs) are mostly kinds stork
        // ignores, and would otherwise take most of a YAML target's time.
        let seed = match (rng.pick(seeds), rng.pick(seeds)) {
            (a, b) if rng.one_in(2) && b.bytes.len() < a.bytes.len() => b,
            (a, _) => a,
        };
        let structural = !seed.docs.is_empty() && rng.below(10) < 7;
        if structural {
            self.edits.clear();
            for _ in 0..rng.log_size(4) {
                let at = self.site(rng, &seed.kinds);
                let edit = self.edit(rng, seed.kinds[at]);
                if !self.edits.iter().any(|(i, _)| *i == at) {
                    self.edits.push((at, edit));
                }
            }
            emit(&seed.docs, &self.edits, *rng.pick(self.corpus.styles), out);
        } else {
            out.extend_from_slice(&seed.bytes);
        }
        // Seeds pass through unchanged now and then, so their own outcomes are covered too.
        let rounds = match (structural, rng.below(8)) {
            (false, 0) => 0,
            (false, _) => rng.log_size(8),
            (true, 0..=1) => rng.log_size(4),
            (true, _) => 0,
        };
        let other = &seeds[rng.below(seeds.len())].bytes;
        bytes::havoc(rng, out, other, rounds);
        out.truncate(MAX_INPUT);
    }

    /// An edit site: any node, or (as often) a node of one kind, so that the few containers
    /// of a document full of strings are edited as often as its strings.
    fn site(&self, rng: &mut Rng, kinds: &[Kind]) -> usize {
        let want = *rng.pick(&[Kind::Str, Kind::Obj, Kind::Arr, Kind::Scalar]);
        if rng.one_in(2) {
            let start = rng.below(kinds.len());
            if let Some(i) = (start..kinds.len()).chain(0..start).find(|&i| kinds[i] == want) {
                return i;
            }
        }
        rng.below(kinds.len())
    }

    /// An edit suited to a node of `kind`.
    fn edit(&self, rng: &mut Rng, kind: Kind) -> Edit {
        let dict = &self.corpus.dictionary;
        let container = matches!(kind, Kind::Obj | Kind::Arr);
        match rng.below(20) {
            0..=5 if kind == Kind::Str => Edit::Replace(Value::Tree(tree::Node::Str(values::word(rng, dict)))),
            0..=4 => Edit::Replace(values::random(rng, dict)),
            6 | 7 => Edit::Delete,
            8 => Edit::Duplicate,
            9 => Edit::Rename(values::word(rng, dict)),
            10 if container => Edit::Reverse,
            11 | 12 if container => {
                Edit::Add { key: values::word(rng, dict), value: values::random(rng, dict), front: rng.one_in(2) }
            }
            13..=15 => self.graft(rng),
            16 if rng.one_in(32) => Edit::Nest { depth: rng.log_size(MAX_NESTING), map: rng.one_in(2) },
            16 => Edit::Nest { depth: rng.log_size(200), map: rng.one_in(2) },
            _ => Edit::Replace(values::random(rng, dict)),
        }
    }

    /// A subtree of any seed (another request's pod, a node list, a volume) put in place.
    fn graft(&self, rng: &mut Rng) -> Edit {
        let donor = rng.pick(&self.corpus.seeds);
        match donor.nth(rng.below(donor.kinds.len().max(1))) {
            Some(node) => Edit::Replace(Value::Tree(node.clone())),
            None => Edit::Delete,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::{Family, load};

    #[test]
    fn the_same_seed_generates_the_same_inputs() {
        let corpus = load(Family::Review, &[]).unwrap();
        let run = |seed| {
            let (mut m, mut rng, mut out) = (Mutator::new(&corpus, 0), Rng::new(seed), Vec::new());
            (0..200)
                .map(|_| {
                    m.generate(&mut rng, &mut out);
                    crate::rng::fnv1a(&out)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn most_inputs_differ_from_every_seed() {
        let corpus = load(Family::Objects, &[]).unwrap();
        let (mut m, mut rng, mut out) = (Mutator::new(&corpus, 0), Rng::new(9), Vec::new());
        let changed = (0..500)
            .filter(|_| {
                m.generate(&mut rng, &mut out);
                corpus.seeds.iter().all(|s| s.bytes != out)
            })
            .count();
        assert!(changed > 400, "{changed}");
    }
}
