//! `/validate`: refuse a `VolumeSnapshot` or `GroupVolumeSnapshot` that names a rule which does
//! not exist or cannot run where it is named (a background action in a post-snapshot rule, an
//! unknown action type), before the controller would find out in the middle of a snapshot.

use std::sync::Arc;

use super::{restore_claim::Verdict, rule::Rule};
use crate::rule::plan::{Phase, validate};

/// Checks the rules an object names in `namespace`. `lookup` answers from the rule cache: the
/// outer `None` means stork holds no rule cache yet, and then the object is allowed with a
/// warning (the controller checks again when it runs the rule).
pub fn validate_rule_refs(
    kind: &str,
    namespace: &str,
    pre: Option<&str>,
    post: Option<&str>,
    lookup: impl Fn(&str) -> Option<Option<Arc<Rule>>>,
) -> RefVerdict {
    let mut warnings = Vec::new();
    for (name, phase) in [(pre, Phase::Pre), (post, Phase::Post)] {
        let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else { continue };
        match lookup(name) {
            None => warnings.push(format!(
                "stork could not check {} rule {name} yet (its rule cache is not synced); the snapshot fails if it is missing",
                phase.label()
            )),
            Some(None) => {
                let msg = format!(
                    "{kind} names {} rule {name}, but no Rule {name} exists in namespace {namespace}: create it first",
                    phase.label()
                );
                return RefVerdict { verdict: Verdict::Deny(msg), missing: true };
            }
            Some(Some(rule)) => {
                if let Err(why) = validate(&rule, phase) {
                    let msg = format!("{kind} names {} rule {name}, which cannot run: {why}", phase.label());
                    return RefVerdict { verdict: Verdict::Deny(msg), missing: false };
                }
            }
        }
    }
    RefVerdict { verdict: Verdict::Allow(warnings), missing: false }
}

/// The verdict on an object's rule references.
#[derive(Debug, PartialEq, Eq)]
pub struct RefVerdict {
    /// Allowed (with warnings) or denied (with the reason).
    pub verdict: Verdict,
    /// Denied because a named rule is absent from the cache: it may be on its way (applied with
    /// the object), so a caller may decide again once the cache has caught up.
    pub missing: bool,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::rule::{RuleAction, RuleItem};

    fn rule(name: &str, background: bool) -> Arc<Rule> {
        let value = if background { "lock; ${WAIT_PLACEHOLDER}" } else { "sync" };
        let action = RuleAction { type_: "command".into(), value: value.into(), background, ..RuleAction::default() };
        let item = RuleItem {
            pod_selector: BTreeMap::from([("app".into(), "db".into())]),
            actions: vec![action],
            ..RuleItem::default()
        };
        Arc::new(Rule::with_items("db", name, vec![item]))
    }

    fn cache(name: &str) -> Option<Option<Arc<Rule>>> {
        Some(match name {
            "freeze" => Some(rule("freeze", true)),
            "thaw" => Some(rule("thaw", false)),
            _ => None,
        })
    }

    #[test]
    fn existing_rules_valid_for_their_phase_are_allowed() {
        assert_eq!(
            validate_rule_refs("VolumeSnapshot", "db", Some("freeze"), Some("thaw"), cache).verdict,
            Verdict::Allow(vec![])
        );
    }

    #[test]
    fn a_missing_rule_is_denied_naming_it_and_the_namespace() {
        let refs = validate_rule_refs("VolumeSnapshot", "db", Some("nope"), None, cache);
        assert!(refs.missing, "a rule absent from the cache may still be on its way");
        let Verdict::Deny(msg) = refs.verdict else { panic!() };
        assert!(msg.contains("no Rule nope exists in namespace db"), "{msg}");
    }

    #[test]
    fn a_background_rule_named_as_post_rule_is_denied_with_the_reason() {
        let Verdict::Deny(msg) = validate_rule_refs("GroupVolumeSnapshot", "db", None, Some("freeze"), cache).verdict
        else {
            panic!()
        };
        assert!(
            msg.contains("post-snapshot rule freeze") && msg.contains("background actions are not allowed"),
            "{msg}"
        );
    }

    #[test]
    fn without_a_rule_cache_the_object_is_allowed_with_a_warning() {
        let Verdict::Allow(w) = validate_rule_refs("VolumeSnapshot", "db", Some("freeze"), None, |_| None).verdict
        else {
            panic!()
        };
        assert_eq!(w.len(), 1);
    }
}
