//! The admission webhooks through actix's test service, fed recorded AdmissionReview v1 bodies:
//! every answer is a valid review with HTTP 200, errors included.

use std::sync::Arc;

use actix_web::{App, body::MessageBody, http::StatusCode, test, web};
use base64::Engine;
use serde_json::{Value, json};
use stork::{
    cluster::Objects,
    driver::mock::MockDriver,
    metrics::Metrics,
    webhook::{DEFAULT_MAX_REVIEW_BYTES as MAX_REVIEW_BYTES, WebhookConfig, WebhookState, review::configure},
};

const SEED_OBJECTS: &str = include_str!("../examples/seed/objects.yaml");
const RESTORE_CLASS: &str = "---\napiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: stork-snapshot-sc}\nprovisioner: stork-snapshot\n";
/// Ready snapshot `default/snap-1`, and `default/snap-failed` that failed.
const SNAPSHOTS: &str = include_str!("data/snapshot/snapshots.yaml");

fn state() -> WebhookState {
    state_with(WebhookConfig::default())
}

fn state_with(config: WebhookConfig) -> WebhookState {
    let topology = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/seed/topology.yaml");
    WebhookState {
        cluster: Objects::from_yaml(&format!("{SEED_OBJECTS}{RESTORE_CLASS}{SNAPSHOTS}")).expect("objects").into_view(),
        driver: Arc::new(MockDriver::load(topology.as_ref()).expect("topology")),
        config: Arc::new(config),
        metrics: Metrics::new(),
    }
}

async fn post(path: &str, body: impl Into<web::Bytes>) -> Value {
    post_to(state(), path, body).await
}

async fn post_to(state: WebhookState, path: &str, body: impl Into<web::Bytes>) -> Value {
    let app = test::init_service(App::new().configure(configure(state))).await;
    let req = test::TestRequest::post().uri(path).set_payload(body).to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), StatusCode::OK, "the webhook always answers 200");
    let bytes = resp.into_body().try_into_bytes().unwrap_or_default();
    assert!(!bytes.is_empty(), "never an empty body");
    let v: Value = serde_json::from_slice(&bytes).expect("JSON review");
    assert_eq!((v["apiVersion"].as_str(), v["kind"].as_str()), (Some("admission.k8s.io/v1"), Some("AdmissionReview")));
    v["response"].clone()
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/data/admission/{name}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

fn patch_of(resp: &Value) -> Option<Value> {
    let b64 = resp["patch"].as_str()?;
    assert_eq!(resp["patchType"], "JSONPatch");
    Some(serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap())
}

#[actix_web::test]
async fn a_pod_with_a_driver_pvc_is_patched_to_the_stork_scheduler_with_its_uid_echoed() {
    let r = post("/mutate?timeout=3s", fixture("pod-with-driver-pvc.json")).await;
    assert_eq!(r["uid"], "uid-driver");
    assert_eq!(r["allowed"], true);
    assert_eq!(patch_of(&r), Some(json!([{"op": "add", "path": "/spec/schedulerName", "value": "stork"}])));
}

#[actix_web::test]
async fn pods_without_driver_pvcs_dry_runs_excluded_namespaces_opt_outs_and_other_kinds_pass_unchanged() {
    for (file, uid) in [
        ("pod-without-pvc.json", "uid-plain"),
        ("pod-dry-run.json", "uid-dry"),
        ("pod-in-kube-system.json", "uid-sys"),
        ("pod-opted-out.json", "uid-opt"),
        ("deployment.json", "uid-deploy"),
    ] {
        let r = post("/mutate", fixture(file)).await;
        assert_eq!((r["uid"].as_str(), r["allowed"].as_bool()), (Some(uid), Some(true)), "{file}");
        assert_eq!(patch_of(&r), None, "{file}");
    }
}

#[actix_web::test]
async fn a_pvc_not_in_the_cache_is_allowed_unchanged_with_a_warning() {
    let r = post("/mutate", fixture("pod-unknown-pvc.json")).await;
    assert_eq!((r["allowed"].as_bool(), patch_of(&r)), (Some(true), None));
    assert!(r["warnings"][0].as_str().unwrap().contains("not-yet-cached"), "{r}");
}

#[actix_web::test]
async fn a_pvc_that_never_reaches_the_cache_within_the_claim_wait_is_still_allowed_unchanged_with_a_warning() {
    let config = WebhookConfig { claim_wait: std::time::Duration::from_millis(100), ..WebhookConfig::default() };
    let r = post_to(state_with(config), "/mutate", fixture("pod-unknown-pvc.json")).await;
    assert_eq!((r["allowed"].as_bool(), patch_of(&r)), (Some(true), None));
    assert!(r["warnings"][0].as_str().unwrap().contains("not-yet-cached"), "{r}");
}

#[actix_web::test]
async fn garbage_truncated_wrong_typed_and_oversized_reviews_are_allowed_with_a_warning() {
    let full = fixture("pod-with-driver-pvc.json");
    let wrong = fixture("pod-wrong-object.json");
    let huge = vec![b' '; MAX_REVIEW_BYTES + 1];
    for (what, body) in [
        ("garbage", web::Bytes::from_static(b"\x00\xffnot json")),
        ("truncated", web::Bytes::from(full[..full.len() / 2].to_string())),
        ("no request", web::Bytes::from_static(br#"{"kind":"AdmissionReview"}"#)),
        ("wrong-typed object", web::Bytes::from(wrong)),
        ("oversized", web::Bytes::from(huge)),
    ] {
        // A Pod review is no business of /validate, so its wrongly typed object is never read there.
        let paths: &[&str] = if what == "wrong-typed object" { &["/mutate"] } else { &["/mutate", "/validate"] };
        for path in paths {
            let r = post(path, body.clone()).await;
            assert_eq!(r["allowed"], true, "{what} on {path}");
            assert!(
                r["warnings"][0].as_str().is_some_and(|w| w.contains("allowed unchanged")),
                "{what} on {path}: {r}"
            );
        }
    }
}

#[actix_web::test]
async fn a_restore_pvc_without_a_snapshot_annotation_is_denied_with_what_to_fix() {
    let r = post("/validate", fixture("pvc-restore-without-snapshot.json")).await;
    assert_eq!((r["uid"].as_str(), r["allowed"].as_bool()), (Some("uid-restore-bad"), Some(false)));
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(msg.contains("snapshot.alpha.kubernetes.io/snapshot"), "{msg}");
    let ok = post("/validate", fixture("pvc-restore-with-snapshot.json")).await;
    assert_eq!(ok["allowed"], true);
}

#[actix_web::test]
async fn a_restore_pvc_naming_a_missing_or_failed_snapshot_is_denied_with_the_reason() {
    let missing = fixture("pvc-restore-with-snapshot.json").replace("snap-1", "snap-missing");
    let r = post("/validate", missing).await;
    assert_eq!(r["allowed"], false);
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(msg.contains("default/snap-missing") && msg.contains("does not exist"), "{msg}");
    let failed = fixture("pvc-restore-with-snapshot.json").replace("snap-1", "snap-failed");
    let r = post("/validate", failed).await;
    assert_eq!(r["allowed"], false);
    assert!(r["status"]["message"].as_str().unwrap().contains("pool is full"), "{r}");
}

#[actix_web::test]
async fn validate_allows_pods_and_ordinary_pvcs() {
    let r = post("/validate", fixture("pod-with-driver-pvc.json")).await;
    assert_eq!(r["allowed"], true);
}

/// The whole answer (envelope included) to `body` on `/mutate`.
async fn mutate_envelope(body: &str) -> Value {
    let app = test::init_service(App::new().configure(configure(state()))).await;
    let req = test::TestRequest::post().uri("/mutate").set_payload(body.to_string()).to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    serde_json::from_slice(&resp.into_body().try_into_bytes().unwrap()).expect("JSON review")
}

#[actix_web::test]
async fn a_v1beta1_review_is_answered_in_v1beta1() {
    let body = fixture("pod-with-driver-pvc.json").replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1");
    let v = mutate_envelope(&body).await;
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1beta1");
    assert_eq!(v["response"]["uid"], "uid-driver");
    assert!(patch_of(&v["response"]).is_some(), "decided as in v1: {v}");
}

#[actix_web::test]
async fn a_review_that_does_not_decode_still_echoes_its_uid_when_it_can_be_read() {
    let malformed = r#"{"apiVersion":"admission.k8s.io/v1","request":{"uid":"u-7","kind":"Pod","object":3}}"#;
    let v = mutate_envelope(malformed).await;
    assert_eq!((v["response"]["uid"].as_str(), v["response"]["allowed"].as_bool()), (Some("u-7"), Some(true)));
    let truncated = &fixture("pod-with-driver-pvc.json")[..120];
    assert!(truncated.contains("uid-driver"), "the fixture's uid comes first: {truncated}");
    let v = mutate_envelope(truncated).await;
    assert_eq!(v["response"]["uid"], "uid-driver");
}

#[actix_web::test]
async fn a_snapshot_or_group_naming_existing_rules_valid_for_their_phase_is_allowed() {
    let r = post("/validate", fixture("volumesnapshot-with-rules.json")).await;
    assert_eq!((r["uid"].as_str(), r["allowed"].as_bool()), (Some("uid-snapshot-rules"), Some(true)), "{r}");
    let r = post("/validate", fixture("groupvolumesnapshot-with-rules.json")).await;
    assert_eq!((r["uid"].as_str(), r["allowed"].as_bool()), (Some("uid-group-rules"), Some(true)), "{r}");
}

#[actix_web::test]
async fn a_snapshot_naming_a_missing_rule_is_denied_naming_the_rule_and_namespace() {
    let body = fixture("volumesnapshot-with-rules.json").replace("\"freeze\"", "\"no-such-rule\"");
    let r = post("/validate", body).await;
    assert_eq!(r["allowed"], false, "{r}");
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(msg.contains("no Rule no-such-rule exists in namespace default"), "{msg}");
}

#[actix_web::test]
async fn a_group_whose_post_rule_holds_a_background_command_is_denied_with_the_reason() {
    let body = fixture("groupvolumesnapshot-with-rules.json")
        .replace("\"postExecRule\": \"flush\"", "\"postExecRule\": \"freeze\"");
    let r = post("/validate", body).await;
    assert_eq!(r["allowed"], false, "{r}");
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(msg.contains("post-snapshot rule freeze") && msg.contains("background actions are not allowed"), "{msg}");
}

#[actix_web::test]
async fn a_snapshot_without_rules_and_a_wrongly_typed_one_are_allowed() {
    let plain = fixture("volumesnapshot-with-rules.json")
        .replace("stork.libopenstorage.org/pre-snapshot-rule", "x/a")
        .replace("stork.libopenstorage.org/post-snapshot-rule", "x/b");
    assert_eq!(post("/validate", plain).await["allowed"], true);
    let wrong =
        fixture("groupvolumesnapshot-with-rules.json").replace("\"preExecRule\": \"freeze\"", "\"preExecRule\": 7");
    let r = post("/validate", wrong).await;
    assert_eq!(r["allowed"], true, "an undecodable object is allowed with a warning: {r}");
}

#[actix_web::test]
async fn a_valid_schedule_policy_and_a_schedule_naming_an_existing_policy_are_allowed() {
    let r = post("/validate", fixture("schedulepolicy.json")).await;
    assert_eq!((r["uid"].as_str(), r["allowed"].as_bool()), (Some("uid-policy"), Some(true)), "{r}");
    let r = post("/validate", fixture("volumesnapshotschedule.json")).await;
    assert_eq!((r["uid"].as_str(), r["allowed"].as_bool()), (Some("uid-schedule"), Some(true)), "{r}");
}

#[actix_web::test]
async fn invalid_schedule_policies_are_denied_naming_the_field() {
    let cases = [
        ("\"intervalMinutes\": 60", "\"intervalMinutes\": 0", "intervalMinutes is 0"),
        ("\"time\": \"10:14PM\"", "\"time\": \"22:14\"", "daily.time \"22:14\""),
        ("\"day\": \"Thursday\"", "\"day\": \"Thursdays\"", "unknown day \"Thursdays\""),
        ("\"date\": 14", "\"date\": 32", "monthly.date is 32"),
    ];
    for (from, to, want) in cases {
        let r = post("/validate", fixture("schedulepolicy.json").replace(from, to)).await;
        assert_eq!(r["allowed"], false, "{to}: {r}");
        let msg = r["status"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{want:?} not in {msg}");
    }
}

#[actix_web::test]
async fn a_schedule_naming_a_missing_policy_is_denied_with_the_reason() {
    let r = post("/validate", fixture("volumesnapshotschedule.json").replace("\"hourly\"", "\"weekly-ish\"")).await;
    assert_eq!(r["allowed"], false, "{r}");
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(msg.contains("SchedulePolicy weekly-ish does not exist"), "{msg}");
}
