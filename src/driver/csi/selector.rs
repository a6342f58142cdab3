//! Kubernetes label selectors in their string form (`app=csi-node,tier in (storage)`): parsed
//! at startup so a typo fails there, not as a watch that the apiserver rejects forever, and
//! matched locally when the driver is built from objects instead of a watch.

use std::collections::BTreeMap;

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl LabelSelector {
    /// Parses the apiserver's selector syntax: comma-separated `key`, `!key`, `key=value`,
    /// `key==value`, `key!=value`, `key in (a,b)` and `key notin (a,b)`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text)? {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!("empty requirement in {text:?}"));
            }
            requirements.push(requirement(part)?);
        }
        Ok(Self { requirements })
    }

    /// Whether an object with these labels is selected.
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k));
        self.requirements.iter().all(|r| match r {
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
            Requirement::In(k, vs) => get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|v| !vs.contains(v)),
        })
    }
}

/// Splits on commas outside parentheses (a set's commas belong to the set).
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let (mut parts, mut depth, mut start) = (Vec::new(), 0u32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' if depth == 0 => depth = 1,
            '(' => return Err(format!("nested parentheses in {text:?}")),
            ')' if depth == 1 => depth = 0,
            ')' => return Err(format!("unbalanced ')' in {text:?}")),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unclosed '(' in {text:?}"));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(key_of(key, part)?));
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Requirement::NotIn(key_of(k, part)?, vec![value_of(v, part)?]));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::In(key_of(k, part)?, vec![value_of(v, part)?]));
    }
    if let Some(open) = part.find('(') {
        let mut words = part[..open].split_whitespace();
        let (Some(key), Some(op), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("expected `key in (…)` or `key notin (…)`, got {part:?}"));
        };
        let Some(set) = part[open + 1..].strip_suffix(')') else {
            return Err(format!("text after ')' in {part:?}"));
        };
        let values = set.split(',').map(|v| value_of(v, part)).collect::<Result<Vec<_>, _>>()?;
        let key = key_of(key, part)?;
        return match op {
            "in" => Ok(Requirement::In(key, values)),
            "notin" => Ok(Requirement::NotIn(key, values)),
            _ => Err(format!("unknown operator {op:?} in {part:?} (use in, notin, =, ==, !=)")),
        };
    }
    if part.contains(['<', '>']) {
        return Err(format!("numeric comparisons are not supported in a label selector: {part:?}"));
    }
    Ok(Requirement::Exists(key_of(part, part)?))
}

fn key_of(key: &str, part: &str) -> Result<String, String> {
    let key = key.trim();
    let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let valid = match key.split_once('/') {
        Some((prefix, name)) => ok(prefix) && ok(name),
        None => ok(key),
    };
    if valid { Ok(key.to_string()) } else { Err(format!("invalid label key {key:?} in {part:?}")) }
}

fn value_of(value: &str, part: &str) -> Result<String, String> {
    let value = value.trim();
    if value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        Ok(value.to_string())
    } else {
        Err(format!("invalid label value {value:?} in {part:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn every_operator_of_the_string_syntax_selects_as_the_apiserver_does() {
        let l = labels(&[("app.kubernetes.io/name", "csi-node"), ("tier", "storage")]);
        for (selector, want) in [
            ("app.kubernetes.io/name=csi-node", true),
            ("app.kubernetes.io/name==csi-node,tier", true),
            ("app.kubernetes.io/name!=csi-node", false),
            ("tier in (storage, db)", true),
            ("tier notin (storage)", false),
            ("!zone", true),
            ("!tier", false),
            ("zone notin (a)", true),
            ("", true),
        ] {
            assert_eq!(LabelSelector::parse(selector).unwrap().matches(Some(&l)), want, "{selector}");
        }
        assert!(!LabelSelector::parse("tier").unwrap().matches(None));
    }

    #[test]
    fn malformed_selectors_are_rejected_with_the_offending_part() {
        for bad in ["a,,b", "tier in (a", "tier within (a)", "x > 1", "bad key=v", "k=v w", "a=(b)", "a)"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
        // An empty value is legal (`app=` selects app with an empty value).
        assert!(LabelSelector::parse("app=").unwrap().matches(Some(&labels(&[("app", "")]))));
    }
}
