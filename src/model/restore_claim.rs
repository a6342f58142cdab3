//! `/validate`: reject snapshot-restore PVCs that cannot succeed, with a message saying what to
//! fix, before the provisioner fails on them later. Everything else is allowed. Pure.

use std::collections::BTreeMap;

pub use crate::knobs::{
    RESTORE_NAMESPACES_ANNOTATION, RESTORE_NAMESPACES_ANNOTATION_OLD, SNAPSHOT_ANNOTATION, SNAPSHOT_PROVISIONER,
    SOURCE_NAMESPACE_ANNOTATION, SOURCE_NAMESPACE_ANNOTATION_OLD,
};

/// What the validator knows of the snapshot a PVC names.
#[derive(Debug, Clone, Default)]
pub struct SnapshotFacts {
    /// The snapshot's annotations.
    pub annotations: BTreeMap<String, String>,
    /// Whether it can be restored yet.
    pub readiness: Readiness,
}

/// How far a snapshot has come.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Readiness {
    /// Being taken: a claim from it waits until it is Ready.
    #[default]
    Pending,
    /// Restorable.
    Ready,
    /// Failed: it will never be restorable. The message says why.
    Error(String),
}

impl SnapshotFacts {
    /// The facts of a `VolumeSnapshot` object.
    pub fn of(snapshot: &crate::model::crd::VolumeSnapshot) -> Self {
        let status = snapshot.status.as_ref();
        let readiness = match (status.and_then(|s| s.error()), status.is_some_and(|s| s.is_ready())) {
            (Some(e), _) => Readiness::Error(e.to_string()),
            (None, true) => Readiness::Ready,
            (None, false) => Readiness::Pending,
        };
        Self { annotations: snapshot.metadata.annotations.clone().unwrap_or_default(), readiness }
    }
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
/// snapshot cache (the snapshot CRDs are not installed, or the cache has not synced): then only
/// the annotation is checked, and a cross-namespace restore is allowed with a warning.
///
/// A snapshot still being taken is allowed with a warning (a snapshot and its restore claim are
/// often applied together); one that failed is denied, as it never becomes restorable.
pub fn validate_restore_claim(claim: &RestoreClaim<'_>, snapshot: Option<Option<&SnapshotFacts>>) -> Verdict {
    let Some(snap_name) = claim.annotations.get(SNAPSHOT_ANNOTATION).filter(|s| !s.trim().is_empty()) else {
        return Verdict::Deny(format!(
            "pvc {}/{} uses a StorageClass with provisioner {SNAPSHOT_PROVISIONER}: annotate it with \
             {SNAPSHOT_ANNOTATION}: <snapshot name> to say which snapshot to restore",
            claim.namespace, claim.name
        ));
    };
    let source_ns = source_namespace(claim.namespace, claim.annotations);
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
    if let Err(msg) = cross_namespace_allowed(source_ns, snap_name, &snapshot.annotations, claim.namespace) {
        return Verdict::Deny(msg);
    }
    match &snapshot.readiness {
        Readiness::Ready => Verdict::Allow(vec![]),
        Readiness::Pending => Verdict::Allow(vec![format!(
            "snapshot {source_ns}/{snap_name} is not ready yet; the claim is provisioned once it is"
        )]),
        Readiness::Error(e) => Verdict::Deny(format!(
            "snapshot {source_ns}/{snap_name} failed and cannot be restored: {e}; take a new snapshot"
        )),
    }
}

/// The namespace of the snapshot a restore claim names: its source-namespace annotation
/// (either spelling), else the claim's own namespace.
pub fn source_namespace<'a>(claim_namespace: &'a str, annotations: &'a BTreeMap<String, String>) -> &'a str {
    [SOURCE_NAMESPACE_ANNOTATION, SOURCE_NAMESPACE_ANNOTATION_OLD]
        .iter()
        .find_map(|k| annotations.get(*k))
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .unwrap_or(claim_namespace)
}

/// Stork's cross-namespace rule: a snapshot restores into another namespace only when its
/// restore-namespaces annotation (either spelling) has a pattern matching that namespace.
/// `Err` carries the message saying what to fix.
pub fn cross_namespace_allowed(
    source_ns: &str,
    snapshot: &str,
    snapshot_annotations: &BTreeMap<String, String>,
    target_ns: &str,
) -> Result<(), String> {
    if source_ns == target_ns {
        return Ok(());
    }
    let patterns = [RESTORE_NAMESPACES_ANNOTATION, RESTORE_NAMESPACES_ANNOTATION_OLD]
        .iter()
        .find_map(|k| snapshot_annotations.get(*k))
        .map_or("", String::as_str);
    if namespace_allowed(patterns, target_ns) {
        return Ok(());
    }
    Err(format!(
        "snapshot {source_ns}/{snapshot} cannot be restored into namespace {target_ns}: add a matching pattern to its \
         annotation {RESTORE_NAMESPACES_ANNOTATION} (now {patterns:?})"
    ))
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
        let allows = |p: &str| SnapshotFacts {
            annotations: ann(&[(RESTORE_NAMESPACES_ANNOTATION, p)]),
            readiness: Readiness::Ready,
        };
        assert_eq!(check(&src, Some(Some(&allows("dev, ap+")))), Verdict::Allow(vec![]));
        assert!(matches!(check(&src, Some(Some(&allows("application")))), Verdict::Deny(_)), "anchored");
        assert!(matches!(check(&src, Some(Some(&SnapshotFacts::default()))), Verdict::Deny(_)));
        let old_ann = SnapshotFacts {
            annotations: ann(&[(RESTORE_NAMESPACES_ANNOTATION_OLD, "app")]),
            readiness: Readiness::Ready,
        };
        assert_eq!(check(&src, Some(Some(&old_ann))), Verdict::Allow(vec![]), "deprecated spelling");
        let old = [(SNAPSHOT_ANNOTATION, "snap"), (SOURCE_NAMESPACE_ANNOTATION_OLD, "prod")];
        assert!(matches!(check(&old, Some(Some(&allows("[")))), Verdict::Deny(_)), "invalid regex matches nothing");
    }

    #[test]
    fn a_snapshot_still_being_taken_is_allowed_with_a_warning_and_a_failed_one_is_denied() {
        let pending = SnapshotFacts::default();
        let Verdict::Allow(w) = check(&[(SNAPSHOT_ANNOTATION, "snap")], Some(Some(&pending))) else { panic!() };
        assert!(w[0].contains("not ready"), "{w:?}");
        let failed = SnapshotFacts { readiness: Readiness::Error("disk full".into()), ..SnapshotFacts::default() };
        let Verdict::Deny(msg) = check(&[(SNAPSHOT_ANNOTATION, "snap")], Some(Some(&failed))) else { panic!() };
        assert!(msg.contains("disk full") && msg.contains("new snapshot"), "{msg}");
    }

    #[test]
    fn without_a_snapshot_cache_a_cross_namespace_restore_is_allowed_with_a_warning() {
        let v = check(&[(SNAPSHOT_ANNOTATION, "snap"), (SOURCE_NAMESPACE_ANNOTATION, "prod")], None);
        let Verdict::Allow(w) = v else { panic!("denied") };
        assert!(w[0].contains("prod/snap"));
    }
}
