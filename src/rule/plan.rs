//! The pure half of the rule executor: which rules an object names, whether a rule may run in a
//! phase, which pods an item runs in, what a background command becomes once its placeholder is
//! replaced, and the record of running background commands kept on the owner.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use crate::{
    knobs::{POST_SNAPSHOT_RULE, POST_SNAPSHOT_RULE_OLD, PRE_SNAPSHOT_RULE, PRE_SNAPSHOT_RULE_OLD},
    model::rule::{ACTION_COMMAND, Rule, RuleItem, WAIT_PLACEHOLDER},
};

/// When a rule runs, relative to the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before: may hold background commands open until the snapshot is taken.
    Pre,
    /// After: foreground commands only.
    Post,
}

impl Phase {
    /// Event reason of a rule that ran in this phase (distinct per phase: events of one reason on
    /// one object are folded into a series, and both must show).
    pub fn succeeded_reason(self) -> &'static str {
        match self {
            Self::Pre => "PreSnapshotRuleSucceeded",
            Self::Post => "PostSnapshotRuleSucceeded",
        }
    }

    /// `pre-snapshot` or `post-snapshot`, for messages.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pre => "pre-snapshot",
            Self::Post => "post-snapshot",
        }
    }
}

/// The pre- and post-snapshot rules a snapshot's annotations name (the current keys win over the
/// deprecated `stork.rule/…` ones). Empty values count as unset.
pub fn snapshot_rules(annotations: &BTreeMap<String, String>) -> (Option<&str>, Option<&str>) {
    let pick = |new: &str, old: &str| {
        [new, old].iter().filter_map(|k| annotations.get(*k)).map(|v| v.trim()).find(|v| !v.is_empty())
    };
    (pick(PRE_SNAPSHOT_RULE, PRE_SNAPSHOT_RULE_OLD), pick(POST_SNAPSHOT_RULE, POST_SNAPSHOT_RULE_OLD))
}

/// Why a rule cannot run in a phase, naming the item and action; `Ok` when it can.
pub fn validate(rule: &Rule, phase: Phase) -> Result<(), String> {
    let name = rule.metadata.name.as_deref().unwrap_or_default();
    if rule.items().is_empty() {
        return Err(format!("rule {name} has no items (rules: is empty)"));
    }
    for (i, item) in rule.items().iter().enumerate() {
        let at = |j: usize| format!("rule {name}, item {}, action {}", i + 1, j + 1);
        if item.pod_selector.is_empty() {
            return Err(format!("rule {name}, item {}: podSelector is empty; it must name the pods' labels", i + 1));
        }
        if item.actions.is_empty() {
            return Err(format!("rule {name}, item {}: no actions", i + 1));
        }
        for (j, action) in item.actions.iter().enumerate() {
            if action.type_ != ACTION_COMMAND {
                return Err(format!("{}: unknown action type {:?}; the only type is \"command\"", at(j), action.type_));
            }
            if action.value.trim().is_empty() {
                return Err(format!("{}: the command (value) is empty", at(j)));
            }
            if action.background && phase == Phase::Post {
                return Err(format!(
                    "{}: background actions are not allowed in a post-snapshot rule (nothing would end them)",
                    at(j)
                ));
            }
            if action.background && !action.value.contains(WAIT_PLACEHOLDER) {
                return Err(format!(
                    "{}: a background action must contain {WAIT_PLACEHOLDER}: it marks where the command holds \
                     while the snapshot is taken, and is how stork ends it afterwards",
                    at(j)
                ));
            }
            if !action.background && action.value.contains(WAIT_PLACEHOLDER) {
                return Err(format!("{}: {WAIT_PLACEHOLDER} is only meaningful in a background action", at(j)));
            }
        }
    }
    Ok(())
}

/// The pods an item runs in: Running, not being deleted, carrying every selector label; by name,
/// so `runInSinglePod` picks the same pod every time.
pub fn select_pods<'a>(pods: impl IntoIterator<Item = &'a Pod>, item: &RuleItem) -> Vec<&'a Pod> {
    let mut out: Vec<&Pod> = pods
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter(|p| {
            let labels = p.metadata.labels.as_ref();
            item.pod_selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
        .collect();
    out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    out
}

/// The `key=value,…` label selector listing an item's pods from the API.
pub fn label_selector(item: &RuleItem) -> String {
    item.pod_selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Where the waiting script lives in the pod. A fixed path: one copy serves every task.
pub const WAIT_SCRIPT: &str = "/tmp/stork-rule-wait.sh";
/// Printed by the waiting script once reached: the background command holds what it should.
pub const REACHED_MARKER: &str = "STORK-RULE-REACHED";

/// The waiting script: say it was reached, then block until the release file of its task exists,
/// then remove it. Written by a foreground exec before a background action starts.
pub fn wait_script() -> String {
    format!(
        "#!/bin/sh\n\
         # Written by stork: a rule's background command waits here while the snapshot is taken.\n\
         release=\"/tmp/stork-rule-$1.release\"\n\
         echo {REACHED_MARKER} \"$1\"\n\
         while [ ! -e \"$release\" ]; do sleep 0.2; done\n\
         rm -f \"$release\"\n"
    )
}

/// The command that installs [`wait_script`] in a pod (run with `sh -c`).
pub fn install_command() -> String {
    format!("cat > {WAIT_SCRIPT} <<'STORK_EOF'\n{}STORK_EOF\nchmod 0755 {WAIT_SCRIPT}", wait_script())
}

/// The command that releases a background task's waiting script in a pod.
pub fn release_command(task: &str) -> String {
    format!("touch /tmp/stork-rule-{task}.release")
}

/// A background action's command with `${WAIT_PLACEHOLDER}` replaced by the waiting script for
/// `task`. The replacement has no quotes, semicolons or `$`, so it works wherever the placeholder
/// sits (inside `mysql -e '… system ${WAIT_PLACEHOLDER}'` too). [`validate`] requires the
/// placeholder in every background action.
pub fn substitute(value: &str, task: &str) -> String {
    value.replace(WAIT_PLACEHOLDER, &format!("sh {WAIT_SCRIPT} {task}"))
}

/// Whether a background command's output shows it reached its placeholder.
pub fn reached(output: &str, task: &str) -> bool {
    output.lines().any(|l| l.trim() == format!("{REACHED_MARKER} {task}"))
}

/// A task id safe in a file name and a shell word: the owner's UID prefix, the action's
/// position and the pod's UID prefix.
pub fn task_id(owner_uid: &str, item: usize, action: usize, pod_uid: &str) -> String {
    let clean = |s: &str| s.chars().filter(char::is_ascii_alphanumeric).take(12).collect::<String>();
    format!("{}-{item}-{action}-{}", clean(owner_uid), clean(pod_uid))
}

/// One background command that may still be running, as recorded on the owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningTask {
    /// Task id (names the release file).
    #[serde(rename = "taskID")]
    pub task_id: String,
    /// The pod it runs in.
    pub pods: Vec<TaskPod>,
    /// The container it runs in (empty: the pod's first).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container: String,
}

/// A pod a task runs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPod {
    /// Pod UID: a pod recreated under the same name is not the one to release.
    pub uid: String,
    /// Namespace.
    pub namespace: String,
    /// Name (exec addresses pods by name).
    #[serde(default)]
    pub name: String,
}

/// The recorded tasks in an owner's annotation value; an unreadable value records nothing
/// (the error says why, for the log).
pub fn parse_running(value: Option<&str>) -> Result<Vec<RunningTask>, String> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(Vec::new()),
        Some(v) => serde_json::from_str(v).map_err(|e| format!("unreadable running-commands annotation: {e}")),
    }
}

/// The annotation value recording `tasks`.
pub fn render_running(tasks: &[RunningTask]) -> String {
    serde_json::to_string(tasks).unwrap_or_else(|_| "[]".into())
}

/// Shortens command output for events and conditions, keeping its end (where errors are).
pub fn truncate(text: &str, max: usize) -> String {
    let t = text.trim();
    if t.len() <= max {
        return t.to_string();
    }
    let mut start = t.len() - max;
    while !t.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &t[start..])
}
