//! The "Misses" section: one heading per missed goal, with the lead's explanation. Explanations
//! written under a heading are carried over when BENCHMARKS.md is rendered again and the goal is
//! still missed.

use std::fmt::Write;

use crate::goals::Verdict;

const HEADING: &str = "## Misses";
const PLACEHOLDER: &str = "_To be explained: what the profile (flamegraph/perf or callgrind) showed, the cause, and \
                           the fix or why the figure stands._";

/// Writes the section.
pub fn section(md: &mut String, verdicts: &[Verdict], previous: Option<&str>) {
    let _ = writeln!(md, "{HEADING}\n");
    let missed: Vec<&Verdict> = verdicts.iter().filter(|v| v.met == Some(false)).collect();
    if missed.is_empty() {
        let _ = writeln!(md, "None: every measured goal was met.");
        return;
    }
    for v in missed {
        let kept = previous.and_then(|p| explanation(p, &v.id));
        let _ = writeln!(md, "### `{}`: {}\n\nMeasured: {}.\n", v.id, v.goal, v.measured);
        let _ = writeln!(md, "{}\n", kept.as_deref().unwrap_or(PLACEHOLDER));
    }
}

/// The text under `### \`id\`` in a previous render, minus its "Measured:" line.
fn explanation(previous: &str, id: &str) -> Option<String> {
    let misses = &previous[previous.find(HEADING)?..];
    let marker = format!("### `{id}`");
    let start = misses.find(&marker)?;
    let body = &misses[start..];
    let body = &body[body.find('\n')?..];
    let end = body.find("\n### ").or_else(|| body.find("\n## ")).unwrap_or(body.len());
    let text: Vec<&str> = body[..end].lines().filter(|l| !l.starts_with("Measured: ")).collect();
    let text = text.join("\n").trim().to_string();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missed(id: &str) -> Verdict {
        Verdict { id: id.into(), goal: "g".into(), measured: "2 ms".into(), met: Some(false) }
    }

    #[test]
    fn a_fresh_miss_gets_a_placeholder_and_an_explained_one_keeps_its_text() {
        let mut first = String::new();
        section(&mut first, &[missed("a"), missed("b")], None);
        assert_eq!(first.matches(PLACEHOLDER).count(), 2);
        let edited = format!("# x\n\n{}", first.replacen(PLACEHOLDER, "Decoding dominates: see the flamegraph.", 1));
        let mut second = String::new();
        section(&mut second, &[missed("a"), missed("b")], Some(&edited));
        assert!(second.contains("Decoding dominates: see the flamegraph."), "{second}");
        assert_eq!(second.matches(PLACEHOLDER).count(), 1);
        assert_eq!(second.matches("Measured: ").count(), 2);
    }

    #[test]
    fn nothing_missed_says_so() {
        let mut md = String::new();
        section(&mut md, &[Verdict { met: Some(true), ..missed("a") }], None);
        assert!(md.contains("None: every measured goal was met."));
    }
}
