//! Annotation and label names users set to steer stork, and how their values are read.

use std::collections::BTreeMap;

/// The prefix every knob's name has; volume labels, class parameters and claim annotations
/// without it steer nothing, so resolved volumes keep only the keys with it.
pub const PREFIX: &str = "stork.libopenstorage.org/";

/// Pod annotation: schedule only on nodes holding a replica of every volume.
pub const PREFER_LOCAL_NODE_ONLY: &str = "stork.libopenstorage.org/preferLocalNodeOnly";
/// Volume label: with anti-hyperconvergence, never place the pod on a replica node.
pub const PREFER_REMOTE_NODE_ONLY: &str = "stork.libopenstorage.org/preferRemoteNodeOnly";
/// Volume label: with anti-hyperconvergence, prefer non-replica nodes (default true).
pub const PREFER_REMOTE_NODE: &str = "stork.libopenstorage.org/preferRemoteNode";
/// Volume label: leave this volume out of scoring.
pub const SKIP_SCHEDULER_SCORING: &str = "stork.libopenstorage.org/skipSchedulerScoring";
/// Pod annotation: no locality scoring for this pod.
pub const DISABLE_HYPERCONVERGENCE: &str = "stork.libopenstorage.org/disableHyperconvergence";
/// Node annotation: the storage operator marked this node unschedulable.
pub const NODE_UNSCHEDULABLE: &str = "operator.libopenstorage.org/unschedulable";
/// PVC annotation: an in-place restore is running; pods must wait (value exactly `"true"`).
pub const RESTORE_IN_PROGRESS: &str = "stork.libopenstorage.org/restore-in-progress";

/// PVC annotation set with [`RESTORE_IN_PROGRESS`]: which `VolumeSnapshotRestore`
/// (`namespace/name`) holds the claim, so only that restore ever removes the mark.
pub const RESTORE_OWNER_ANNOTATION: &str = "stork.libopenstorage.org/restore-in-progress-by";
/// VolumeSnapshot annotation: the driver snapshot id stork is taking for it, recorded before
/// the driver is called; only a value derived from the object's own UID counts.
pub const SNAPSHOT_ID_ANNOTATION: &str = "stork.libopenstorage.org/snapshot-id";
/// VolumeSnapshot label (as Stork): the PV that was snapshotted.
pub const SNAPSHOT_PV_NAME_LABEL: &str = "SnapshotMetadata-PVName";
/// VolumeSnapshot label (as Stork): when the snapshot was requested, Unix nanoseconds.
pub const SNAPSHOT_TIMESTAMP_LABEL: &str = "SnapshotMetadata-Timestamp";

/// StorageClass provisioner of claims restored from a stork snapshot.
pub const SNAPSHOT_PROVISIONER: &str = "stork-snapshot";
/// PVC annotation naming the snapshot to restore.
pub const SNAPSHOT_ANNOTATION: &str = "snapshot.alpha.kubernetes.io/snapshot";
/// PVC annotation naming the snapshot's namespace (default: the PVC's).
pub const SOURCE_NAMESPACE_ANNOTATION: &str = "stork.libopenstorage.org/snapshot-source-namespace";
/// Deprecated spelling of [`SOURCE_NAMESPACE_ANNOTATION`].
pub const SOURCE_NAMESPACE_ANNOTATION_OLD: &str = "stork/snapshot-source-namespace";
/// Snapshot annotation: comma-separated regexes of namespaces that may restore it.
pub const RESTORE_NAMESPACES_ANNOTATION: &str = "stork.libopenstorage.org/snapshot-restore-namespaces";
/// Deprecated spelling of [`RESTORE_NAMESPACES_ANNOTATION`].
pub const RESTORE_NAMESPACES_ANNOTATION_OLD: &str = "stork/snapshot-restore-namespaces";

/// Go's `strconv.ParseBool`, which Stork uses for every knob: anything else is `None`.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A boolean knob from a map; missing or unparsable values give `default`, as in Stork.
pub fn flag(map: &BTreeMap<String, String>, key: &str, default: bool) -> bool {
    map.get(key).and_then(|v| parse_bool(v)).unwrap_or(default)
}

/// Whether a string is a valid Kubernetes label value: at most 63 alphanumerics, `-`, `_`, `.`,
/// starting and ending alphanumeric (empty is valid). Values stork copies into labels are
/// checked first, since a claim or volume name need not be one.
pub fn is_label_value(v: &str) -> bool {
    let edge = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    v.len() <= 63
        && edge(v.chars().next())
        && edge(v.chars().last())
        && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// VolumeSnapshot annotation: the Rule to run before the snapshot is taken (same namespace).
pub const PRE_SNAPSHOT_RULE: &str = "stork.libopenstorage.org/pre-snapshot-rule";
/// VolumeSnapshot annotation: the Rule to run after the snapshot is taken (same namespace).
pub const POST_SNAPSHOT_RULE: &str = "stork.libopenstorage.org/post-snapshot-rule";
/// Deprecated form of [`PRE_SNAPSHOT_RULE`], still honoured.
pub const PRE_SNAPSHOT_RULE_OLD: &str = "stork.rule/pre-snapshot";
/// Deprecated form of [`POST_SNAPSHOT_RULE`], still honoured.
pub const POST_SNAPSHOT_RULE_OLD: &str = "stork.rule/post-snapshot";
/// Annotation on the object a rule runs for: the background commands that may still be running
/// (JSON), written before they start so a restarted leader can release them.
pub const PODS_WITH_RUNNING_CMDS: &str = "stork.libopenstorage.org/pods-with-running-cmds";
/// Label on a VolumeSnapshot made by a GroupVolumeSnapshot: the group's name.
pub const GROUP_SNAPSHOT_LABEL: &str = "stork.libopenstorage.org/group-snapshot";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_parse_bool_spellings_are_accepted_and_others_fall_back_to_the_default() {
        let mut m = BTreeMap::new();
        for (v, want) in [("T", true), ("1", true), ("False", false), ("yes", true), ("", true)] {
            m.insert("k".to_string(), v.to_string());
            assert_eq!(flag(&m, "k", true), want, "value {v:?}");
        }
        assert!(!flag(&BTreeMap::new(), "k", false));
    }

    #[test]
    fn label_values_follow_the_kubernetes_rules() {
        for (v, valid) in [
            ("", true),
            ("pvc-4b1f.x_y", true),
            ("Upper_case.ok", true),
            ("k8s-volume-snapshot-5e0c1d2a", true),
            ("-lead", false),
            ("trail.", false),
            ("a/b", false),
            ("not a label value", false),
        ] {
            assert_eq!(is_label_value(v), valid, "{v:?}");
        }
        assert!(is_label_value(&"a".repeat(63)) && !is_label_value(&"a".repeat(64)));
    }
}
