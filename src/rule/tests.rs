use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{Pod, PodStatus},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};

use super::plan::*;
use crate::model::rule::{Rule, RuleAction, RuleItem, WAIT_PLACEHOLDER};

fn action(value: &str) -> RuleAction {
    RuleAction { type_: "command".into(), value: value.into(), ..RuleAction::default() }
}

fn item(actions: Vec<RuleAction>) -> RuleItem {
    RuleItem { pod_selector: BTreeMap::from([("app".into(), "db".into())]), actions, ..RuleItem::default() }
}

fn pod(name: &str, app: &str, phase: &str) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.metadata.labels = Some(BTreeMap::from([("app".into(), app.into())]));
    p.status = Some(PodStatus { phase: Some(phase.into()), ..PodStatus::default() });
    p
}

#[test]
fn a_rule_of_foreground_and_background_commands_is_valid_before_a_snapshot() {
    let bg = RuleAction { background: true, ..action(&format!("lock; {WAIT_PLACEHOLDER}")) };
    let rule = Rule::with_items("db", "freeze", vec![item(vec![action("sync"), bg])]);
    assert_eq!(validate(&rule, Phase::Pre), Ok(()));
}

#[test]
fn a_background_action_in_a_post_rule_is_refused_naming_the_item_and_action() {
    let bg = RuleAction { background: true, ..action(&format!("sleep 1; {WAIT_PLACEHOLDER}")) };
    let rule = Rule::with_items("db", "thaw", vec![item(vec![action("sync"), bg])]);
    let err = validate(&rule, Phase::Post).unwrap_err();
    assert!(err.contains("rule thaw, item 1, action 2") && err.contains("post-snapshot"), "{err}");
}

#[test]
fn a_background_action_without_the_placeholder_is_refused_since_nothing_could_end_it() {
    let bg = RuleAction { background: true, ..action("sleep 100") };
    let err = validate(&Rule::with_items("db", "r", vec![item(vec![bg])]), Phase::Pre).unwrap_err();
    assert!(err.contains(WAIT_PLACEHOLDER) && err.contains("action 1"), "{err}");
}

#[test]
fn an_unknown_action_type_is_refused_with_the_only_known_one() {
    let rule = Rule::with_items("db", "r", vec![item(vec![RuleAction { type_: "http".into(), ..action("x") }])]);
    let err = validate(&rule, Phase::Pre).unwrap_err();
    assert!(err.contains("\"http\"") && err.contains("\"command\""), "{err}");
}

#[test]
fn empty_rules_selectors_and_commands_are_refused() {
    assert!(validate(&Rule::with_items("db", "r", vec![]), Phase::Pre).unwrap_err().contains("no items"));
    let no_selector = RuleItem { pod_selector: BTreeMap::new(), ..item(vec![action("x")]) };
    assert!(validate(&Rule::with_items("db", "r", vec![no_selector]), Phase::Pre).unwrap_err().contains("podSelector"));
    assert!(
        validate(&Rule::with_items("db", "r", vec![item(vec![action("  ")])]), Phase::Pre)
            .unwrap_err()
            .contains("empty")
    );
    let fg_placeholder = item(vec![action(&format!("a {WAIT_PLACEHOLDER}"))]);
    assert!(
        validate(&Rule::with_items("db", "r", vec![fg_placeholder]), Phase::Pre).unwrap_err().contains("background")
    );
}

#[test]
fn the_placeholder_becomes_a_plain_shell_word_even_inside_single_quotes() {
    let value = format!("mysql -Bse 'flush tables with read lock;system {WAIT_PLACEHOLDER}'");
    let out = substitute(&value, "abc-0-0-def");
    assert_eq!(out, format!("mysql -Bse 'flush tables with read lock;system sh {WAIT_SCRIPT} abc-0-0-def'"));
    let replacement = out.trim_start_matches("mysql -Bse 'flush tables with read lock;system ").trim_end_matches('\'');
    assert!(!replacement.contains(['\'', '"', ';', '$']), "{replacement}");
}

#[test]
fn the_waiting_script_says_it_was_reached_and_blocks_on_its_own_release_file() {
    let script = wait_script();
    assert!(script.contains(&format!("echo {REACHED_MARKER} \"$1\"")));
    assert!(script.contains("/tmp/stork-rule-$1.release"));
    assert_eq!(release_command("t1"), "touch /tmp/stork-rule-t1.release");
    assert!(reached("noise\nSTORK-RULE-REACHED t1\n", "t1"));
    assert!(!reached("STORK-RULE-REACHED t10", "t1"));
    assert!(install_command().starts_with(&format!("cat > {WAIT_SCRIPT} <<'STORK_EOF'\n#!/bin/sh")));
}

#[test]
fn the_waiting_script_really_waits_until_released() {
    let dir = std::env::temp_dir().join(format!("stork-rule-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("wait.sh");
    std::fs::write(&script, wait_script()).unwrap();
    let task = format!("unit{}", std::process::id());
    let mut child = std::process::Command::new("sh")
        .arg(&script)
        .arg(&task)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sh runs");
    let mut out = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut out).unwrap();
    assert!(reached(&out, &task), "{out}");
    assert!(child.try_wait().unwrap().is_none(), "still waiting before the release");
    std::process::Command::new("sh").args(["-c", &release_command(&task)]).status().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "the script did not end within 10 s of its release");
        std::thread::sleep(std::time::Duration::from_millis(50)); // poll until the deadline
    };
    assert!(status.success());
    assert!(!std::path::Path::new(&format!("/tmp/stork-rule-{task}.release")).exists(), "release file removed");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn only_running_matching_pods_that_are_not_being_deleted_are_selected_by_name() {
    let mut deleting = pod("d", "db", "Running");
    deleting.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
    let pods = [
        pod("c", "db", "Running"),
        pod("a", "db", "Running"),
        pod("b", "db", "Pending"),
        pod("e", "web", "Running"),
        deleting,
    ];
    let names: Vec<_> = select_pods(&pods, &item(vec![])).iter().map(|p| p.metadata.name.clone().unwrap()).collect();
    assert_eq!(names, ["a", "c"]);
}

#[test]
fn snapshot_annotations_name_rules_with_the_current_keys_winning() {
    let a = BTreeMap::from([
        ("stork.rule/pre-snapshot".to_string(), "old-pre".to_string()),
        ("stork.libopenstorage.org/pre-snapshot-rule".to_string(), "new-pre".to_string()),
        ("stork.rule/post-snapshot".to_string(), "old-post".to_string()),
    ]);
    assert_eq!(snapshot_rules(&a), (Some("new-pre"), Some("old-post")));
    assert_eq!(snapshot_rules(&BTreeMap::new()), (None, None));
}

#[test]
fn the_running_commands_record_round_trips_in_storks_shape() {
    let tasks = vec![RunningTask {
        task_id: "t1".into(),
        pods: vec![TaskPod { uid: "u1".into(), namespace: "db".into(), name: "mysql-0".into() }],
        container: "mysql".into(),
    }];
    let text = render_running(&tasks);
    assert!(text.contains("\"taskID\":\"t1\""), "{text}");
    assert_eq!(parse_running(Some(&text)).unwrap(), tasks);
    assert_eq!(parse_running(None).unwrap(), vec![]);
    assert!(parse_running(Some("{not json")).is_err());
}

#[test]
fn task_ids_are_safe_file_name_words() {
    let id = task_id("2f3c5e1a-77aa-4bbb-9ccc-0123456789ab", 1, 2, "../etc;rm -rf /");
    assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "{id}");
}

#[test]
fn long_output_keeps_its_end() {
    assert_eq!(truncate("short", 10), "short");
    assert_eq!(truncate("0123456789abcdef", 4), "…cdef");
    assert_eq!(truncate("ééééé", 3), "…é");
}

#[test]
fn an_exec_status_reads_as_success_an_exit_code_or_the_message() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

    use super::{Ended, exec::ended};
    let ok = Status { status: Some("Success".into()), ..Status::default() };
    assert_eq!(ended(Some(ok)), Ended::Success);
    let kubelet = Status {
        status: Some("Failure".into()),
        reason: Some("NonZeroExitCode".into()),
        details: Some(StatusDetails {
            causes: Some(vec![StatusCause {
                reason: Some("ExitCode".into()),
                message: Some("3".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Status::default()
    };
    assert_eq!(ended(Some(kubelet)), Ended::Exit(3));
    let kwok = Status {
        status: Some("Failure".into()),
        message: Some("command failed: exit status 7".into()),
        ..Status::default()
    };
    assert_eq!(ended(Some(kwok)), Ended::Exit(7));
    let other =
        Status { status: Some("Failure".into()), message: Some("container not found".into()), ..Status::default() };
    assert_eq!(ended(Some(other)), Ended::Error("container not found".into()));
    assert!(matches!(ended(None), Ended::Error(_)));
}
