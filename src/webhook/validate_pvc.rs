//! `/validate`: reject snapshot-restore PVCs that cannot succeed, with a message saying what to
//! fix, before the provisioner fails on them later. Everything else is allowed. Pure.

use std::collections::BTreeMap;

/// Provisioner of restore-from-snapshot StorageClasses.
pub const SNAPSHOT_PROVISIONER: &str = "stork-snapshot";
/// PVC annotation naming the snapshot to restore.
pub const SNAPSHOT_ANNOTATION: &str = "snapshot.alpha.kubernetes.io/snapshot";
/// PVC annotation naming the snapshot's namespace (default: the PVC's).
pub const SOURCE_NAMESPACE_ANNOTATION: &str = "stork.libopenstorage.org/snapshot-source-namespace";
/// Deprecated spelling of [`SOURCE_NAMESPACE_ANNOTATION`].
pub const SOURCE_NAMESPACE_ANNOTATION_OLD: &str = "stork/snapshot-source-namespace";
/// Snapshot annotation: comma-separated regexes of namespaces that may restore it.
pub const RESTORE_NAMESPACES_ANNOTATION: &str = "stork.libopenstorage.org/snapshot-restore-namespaces";

/// What the validator knows of the snapshot a PVC names.
#[derive(Debug, Clone, Default)]
pub struct SnapshotFacts {
    /// The snapshot's annotations.
    pub annotations: BTreeMap<String, String>,
}

/// A restore PVC's request, from the review.
#[derive(Debug)]
pub struct RestoreClaim<'a> {
    /// PVC namespace.
    pub namespace: &'a str,
    /// PVC name (may be empty with generateName).
    pub name: &'a str,
    /// PVC annotations.
    pub annotations: &'a BTreeMap<String, String>,
}

/// Outcome of validation.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed, possibly with warnings.
    Allow(Vec<String>),
    /// Denied with a message saying what to fix.
    Deny(String),
}

/// Validates a PVC of a `stork-snapshot` class. `snapshot` is `None` when stork holds no
/// snapshot cache yet (the snapshot API arrives with the snapshot controllers): then only the
/// annotation is checked, and a cross-namespace restore is allowed with a warning.
pub fn validate_restore_claim(claim: &RestoreClaim<'_>, snapshot: Option<Option<&SnapshotFacts>>) -> Verdict {
    let Some(snap_name) = claim.annotations.get(SNAPSHOT_ANNOTATION).filter(|s| !s.trim().is_empty()) else {
        return Verdict::Deny(format!(
            "pvc {}/{} uses a StorageClass with provisioner {SNAPSHOT_PROVISIONER}: annotate it with \
             {SNAPSHOT_ANNOTATION}: <snapshot name> to say which snapshot to restore",
            claim.namespace, claim.name
        ));
    };
    let source_ns = [SOURCE_NAMESPACE_ANNOTATION, SOURCE_NAMESPACE_ANNOTATION_OLD]
        .iter()
        .find_map(|k| claim.annotations.get(*k))
        .filter(|s| !s.is_empty())
        .map_or(claim.namespace, String::as_str);
    let snapshot = match snapshot {
        None if source_ns == claim.namespace => return Verdict::Allow(vec![]),
        None => {
            return Verdict::Allow(vec![format!(
                "stork cannot check yet whether snapshot {source_ns}/{snap_name} may be restored into namespace {}",
                claim.namespace
            )]);
        }
        Some(None) => {
            return Verdict::Deny(format!(
                "snapshot {source_ns}/{snap_name} named by annotation {SNAPSHOT_ANNOTATION} does not exist"
            ));
        }
        Some(Some(s)) => s,
    };
    if source_ns != claim.namespace {
        let patterns = snapshot.annotations.get(RESTORE_NAMESPACES_ANNOTATION).map_or("", String::as_str);
        if !namespace_allowed(patterns, claim.namespace) {
            return Verdict::Deny(format!(
                "snapshot {source_ns}/{snap_name} cannot be restored into namespace {}: add a matching pattern to its \
                 annotation {RESTORE_NAMESPACES_ANNOTATION} (now {patterns:?})",
                claim.namespace
            ));
        }
    }
    Verdict::Allow(vec![])
}

/// Whether `namespace` matches one of the comma-separated patterns, each anchored `^…$`.
/// An invalid pattern matches nothing (as in Stork).
pub fn namespace_allowed(patterns: &str, namespace: &str) -> bool {
    patterns
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .any(|p| regex_lite::Regex::new(&format!("^(?:{p})$")).is_ok_and(|re| re.is_match(namespace)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn check(annotations: &[(&str, &str)], snapshot: Option<Option<&SnapshotFacts>>) -> Verdict {
        let a = ann(annotations);
        validate_restore_claim(&RestoreClaim { namespace: "app", name: "restored", annotations: &a }, snapshot)
    }

    #[test]
    fn a_restore_claim_without_the_snapshot_annotation_is_denied_with_what_to_add() {
        let Verdict::Deny(msg) = check(&[], None) else { panic!("allowed") };
        assert!(msg.contains(SNAPSHOT_ANNOTATION) && msg.contains("app/restored"), "{msg}");
    }

    #[test]
    fn a_same_namespace_restore_is_allowed_and_a_missing_snapshot_is_denied() {
        assert_eq!(check(&[(SNAPSHOT_ANNOTATION, "snap")], None), Verdict::Allow(vec![]));
        let Verdict::Deny(msg) = check(&[(SNAPSHOT_ANNOTATION, "snap")], Some(None)) else { panic!() };
        assert!(msg.contains("app/snap") && msg.contains("does not exist"), "{msg}");
    }

    #[test]
    fn a_cross_namespace_restore_needs_a_matching_pattern_on_the_snapshot() {
        let src = [(SNAPSHOT_ANNOTATION, "snap"), (SOURCE_NAMESPACE_ANNOTATION, "prod")];
        let allows = |p: &str| SnapshotFacts { annotations: ann(&[(RESTORE_NAMESPACES_ANNOTATION, p)]) };
        assert_eq!(check(&src, Some(Some(&allows("dev, ap+")))), Verdict::Allow(vec![]));
        assert!(matches!(check(&src, Some(Some(&allows("application")))), Verdict::Deny(_)), "anchored");
        assert!(matches!(check(&src, Some(Some(&SnapshotFacts::default()))), Verdict::Deny(_)));
        let old = [(SNAPSHOT_ANNOTATION, "snap"), (SOURCE_NAMESPACE_ANNOTATION_OLD, "prod")];
        assert!(matches!(check(&old, Some(Some(&allows("[")))), Verdict::Deny(_)), "invalid regex matches nothing");
    }

    #[test]
    fn without_a_snapshot_cache_a_cross_namespace_restore_is_allowed_with_a_warning() {
        let v = check(&[(SNAPSHOT_ANNOTATION, "snap"), (SOURCE_NAMESPACE_ANNOTATION, "prod")], None);
        let Verdict::Allow(w) = v else { panic!("denied") };
        assert!(w[0].contains("prod/snap"));
    }
}
