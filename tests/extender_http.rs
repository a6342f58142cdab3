//! The extender endpoints through actix's test service: wire format, both node modes, and
//! every kind of bad body getting its documented status and a clear message.

use std::sync::Arc;

use actix_web::{App, body::MessageBody, http::StatusCode, test, web};
use serde_json::Value;
use stork::{
    cluster::Objects,
    driver::mock::MockDriver,
    events::EventSink,
    extender::{http::ExtenderState, limits::DEFAULT_MAX_BODY_BYTES as MAX_BODY_BYTES},
    metrics::Metrics,
    server::{Health, admin_routes},
};

const SEED_OBJECTS: &str = include_str!("../examples/seed/objects.yaml");
const FILTER_NAMES: &str = include_str!("../examples/seed/filter-args.json");
const PRIORITIZE_NAMES: &str = include_str!("../examples/seed/prioritize-args.json");
const FILTER_NODES: &str = include_str!("data/filter-seed-nodes.json");

/// The seed world with its node index built, as `serve`'s index builder keeps it.
fn seed_state() -> ExtenderState {
    let state = unindexed_seed_state();
    stork::driver::node_index::refresh(state.driver.as_ref(), &state.cluster);
    state
}

/// The seed world before the index builder has run.
fn unindexed_seed_state() -> ExtenderState {
    let topology = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/seed/topology.yaml");
    ExtenderState {
        cluster: Objects::from_yaml(SEED_OBJECTS).expect("seed objects").into_view(),
        driver: Arc::new(MockDriver::load(topology.as_ref()).expect("seed topology")),
        events: EventSink::log_only(),
        metrics: Metrics::new(),
        limits: Default::default(),
        client_auth: None,
    }
}

async fn post(path: &str, body: impl Into<web::Bytes>) -> (StatusCode, web::Bytes) {
    post_to(seed_state(), path, body).await
}

async fn post_to(state: ExtenderState, path: &str, body: impl Into<web::Bytes>) -> (StatusCode, web::Bytes) {
    let app = test::init_service(App::new().configure(stork::extender::http::configure(state))).await;
    let req = test::TestRequest::post()
        .uri(path)
        .insert_header(("content-type", "application/json"))
        .set_payload(body)
        .to_request();
    let resp = test::call_service(&app, req).await;
    let status = resp.status();
    (status, resp.into_body().try_into_bytes().unwrap_or_default())
}

#[actix_web::test]
async fn answers_are_the_same_before_the_node_index_is_built_and_after() {
    for (path, body) in [("/filter", FILTER_NAMES), ("/prioritize", PRIORITIZE_NAMES), ("/filter", FILTER_NODES)] {
        let indexed = post_to(seed_state(), path, body).await;
        let unindexed = post_to(unindexed_seed_state(), path, body).await;
        assert_eq!(indexed, unindexed, "{path} answered differently without the node index");
    }
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

#[actix_web::test]
async fn filter_in_names_mode_keeps_the_seed_driver_nodes_and_lists_the_others_with_reasons() {
    let (status, body) = post("/filter", FILTER_NAMES).await;
    assert_eq!(status, StatusCode::OK);
    let v = json(&body);
    assert_eq!(v["NodeNames"], serde_json::json!(["n1", "n2", "n3"]));
    assert_eq!(v["Nodes"], Value::Null);
    assert_eq!(v["FailedNodes"]["n4"], "storage driver is not running on this node");
    assert!(v["FailedNodes"]["n5"].is_string());
    assert_eq!(v["Error"], "");
}

#[actix_web::test]
async fn filter_in_full_node_mode_returns_the_kept_nodes_byte_for_byte() {
    let (status, body) = post("/filter", FILTER_NODES).await;
    assert_eq!(status, StatusCode::OK);
    let v = json(&body);
    let request: Value = serde_json::from_str(FILTER_NODES).unwrap();
    let items = v["Nodes"]["items"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    assert_eq!(items[0], request["Nodes"]["items"][0]);
    assert_eq!(v["NodeNames"], Value::Null);
    // The raw text of a kept node appears unchanged in the response.
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        #[serde(rename = "Nodes", borrow)]
        nodes: RawList<'a>,
    }
    #[derive(serde::Deserialize)]
    struct RawList<'a> {
        #[serde(borrow)]
        items: Vec<&'a serde_json::value::RawValue>,
    }
    let raw: Raw<'_> = serde_json::from_str(FILTER_NODES).unwrap();
    assert!(String::from_utf8_lossy(&body).contains(raw.nodes.items[0].get()));
}

#[actix_web::test]
async fn prioritize_scores_the_seed_nodes_100_200_100() {
    let (status, body) = post("/prioritize", PRIORITIZE_NAMES).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json(&body),
        serde_json::json!([{"Host": "n1", "Score": 100}, {"Host": "n2", "Score": 200}, {"Host": "n3", "Score": 100}])
    );
}

#[actix_web::test]
async fn lower_case_keys_from_hand_written_clients_are_accepted() {
    let body = FILTER_NAMES.replace("\"Pod\"", "\"pod\"").replace("\"NodeNames\"", "\"nodenames\"");
    let (status, body) = post("/filter", body).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
}

async fn assert_bad_request(body: impl Into<web::Bytes>, expected: &str) {
    let body = body.into();
    for path in ["/filter", "/prioritize"] {
        let (status, text) = post(path, body.clone()).await;
        let text = String::from_utf8_lossy(&text);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {text}");
        assert!(text.contains(expected), "{path}: {text:?} should mention {expected:?}");
    }
}

#[actix_web::test]
async fn garbage_truncated_and_wrong_typed_bodies_get_400_with_the_decode_error() {
    assert_bad_request("not json at all", "failed to decode ExtenderArgs").await;
    assert_bad_request(&FILTER_NAMES[..FILTER_NAMES.len() / 2], "EOF").await;
    assert_bad_request(include_str!("data/wrong-typed.json"), "invalid type").await;
    assert_bad_request("", "failed to decode ExtenderArgs").await;
    assert_bad_request("[1,2,3]", "failed to decode ExtenderArgs").await;
}

#[actix_web::test]
async fn a_body_without_pod_or_without_nodes_gets_400_saying_what_is_missing() {
    for path in ["/filter", "/prioritize"] {
        let (status, text) = post(path, include_str!("data/no-pod.json")).await;
        assert_eq!(
            (status, String::from_utf8_lossy(&text).trim()),
            (StatusCode::BAD_REQUEST, "ExtenderArgs has no Pod")
        );
        let (status, text) = post(path, include_str!("data/no-nodes.json")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(String::from_utf8_lossy(&text).contains("neither Nodes nor NodeNames"));
    }
}

#[actix_web::test]
async fn a_body_over_64_mib_is_refused_with_413_whether_declared_or_streamed() {
    let app = test::init_service(App::new().configure(stork::extender::http::configure(seed_state()))).await;
    let declared = test::TestRequest::post()
        .uri("/filter")
        .insert_header(("content-length", (MAX_BODY_BYTES + 1).to_string()))
        .to_request();
    let resp = test::call_service(&app, declared).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let text = resp.into_body().try_into_bytes().unwrap_or_default();
    assert!(String::from_utf8_lossy(&text).contains("larger than the limit"));

    let streamed =
        test::TestRequest::post().uri("/prioritize").set_payload(vec![b' '; MAX_BODY_BYTES + 1]).to_request();
    assert_eq!(test::call_service(&app, streamed).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[actix_web::test]
async fn exactly_64_mib_of_valid_json_is_accepted() {
    let mut body = FILTER_NAMES.trim_end().to_string().into_bytes();
    body.resize(MAX_BODY_BYTES, b' ');
    let (status, _) = post("/filter", body).await;
    assert_eq!(status, StatusCode::OK);
}

#[actix_web::test]
async fn readiness_is_503_until_the_cluster_caches_sync_and_metrics_name_the_stork_gauges() {
    let (view, _writers) = stork::cluster::ClusterView::new();
    let metrics = Metrics::new();
    let app = test::init_service(App::new().configure(admin_routes(Health::new(view), metrics.clone()))).await;
    let resp = test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let synced = Objects::default().into_view();
    let app = test::init_service(App::new().configure(admin_routes(Health::new(synced), metrics.clone()))).await;
    let resp = test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // Families appear once they have a series: one timed request and one classified pod.
    drop(metrics.extender.time("filter"));
    let labels = stork::metrics::PodLabels { pod: "p".into(), namespace: "ns".into() };
    metrics.placement.hyperconverged.get_or_create(&labels).set(1);
    metrics.placement.semi_hyperconverged.get_or_create(&labels).set(0);
    metrics.placement.non_hyperconverged.get_or_create(&labels).set(0);
    let resp = test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
    let text = String::from_utf8(resp.into_body().try_into_bytes().unwrap().to_vec()).unwrap();
    for name in [
        "stork_hyperconverged_pods_total",
        "stork_semi_hyperconverged_pods_total",
        "stork_non_hyperconverged_pods_total",
        "stork_extender_request_duration_seconds",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
}

/// Args for a pod naming claim `claim` (which the seed objects do not have), with `nodes` names.
fn missing_claim_args(claim: &str, nodes: usize) -> Vec<u8> {
    let names: Vec<String> = (0..nodes).map(|i| format!("node-{i}")).collect();
    serde_json::to_vec(&serde_json::json!({
        "Pod": {"metadata": {"name": "p", "namespace": "default"},
                "spec": {"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]}},
        "NodeNames": names,
    }))
    .unwrap()
}

#[actix_web::test]
async fn an_answer_is_bounded_by_its_request_however_long_the_claim_name_it_quotes() {
    // Each node's reason quotes the claim: a 100 KiB name once per node made a 105 KiB request
    // answer 100 MB before reasons were clipped.
    let body = missing_claim_args(&"c".repeat(100 * 1024), 1_000);
    for path in ["/filter", "/prioritize"] {
        let (status, answer) = post(path, body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let bound = 2 * body.len() + 256 * 1_000;
        assert!(answer.len() <= bound, "{path}: {} bytes answer a {} byte request", answer.len(), body.len());
    }
    let (_, answer) = post("/filter", body).await;
    let reason = json(&answer)["FailedAndUnresolvableNodes"]["node-7"].as_str().unwrap().to_string();
    assert!(reason.len() <= 200 && reason.starts_with("pvc default/ccc") && reason.ends_with('…'), "{reason}");
}

#[actix_web::test]
async fn null_node_items_are_an_empty_node_list() {
    let body = r#"{"Pod": {"metadata": {"name": "p"}}, "Nodes": {"items": null}}"#;
    let (status, answer) = post("/filter", body).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(json(&answer)["Nodes"]["items"], serde_json::json!([]));
}

#[actix_web::test]
async fn a_request_naming_more_nodes_than_the_limit_is_refused_while_decoding() {
    let mut state = seed_state();
    state.limits.max_nodes = 10;
    let (status, answer) = post_to(state, "/filter", missing_claim_args("x", 11)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(String::from_utf8_lossy(&answer).contains("--extender-max-nodes"));
}

#[actix_web::test]
async fn a_call_past_its_deadline_gets_the_protocols_error_from_filter_and_503_from_prioritize() {
    let mut state = seed_state();
    state.limits.timeout = std::time::Duration::ZERO;
    let (status, answer) = post_to(state.clone(), "/filter", FILTER_NAMES).await;
    assert_eq!(status, StatusCode::OK);
    let v = json(&answer);
    assert!(v["Error"].as_str().unwrap().contains("deadline"), "{v}");
    assert_eq!(v["NodeNames"], Value::Null);
    let (status, _) = post_to(state, "/prioritize", PRIORITIZE_NAMES).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}
