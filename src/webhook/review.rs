//! The AdmissionReview v1 envelope (`admission.k8s.io/v1`): decode only what decisions need,
//! answer every request — errors included — with a valid review, HTTP 200.

use actix_web::{HttpRequest, HttpResponse, http::header::CONTENT_TYPE, web};
use base64::Engine;
use json_patch::Patch;
use serde::Serialize;
use std::collections::BTreeMap;
use tracing::{Span, instrument};

use super::{
    Error, WebhookState,
    decode::{RequestIn, ReviewVersion, parse, parse_mutate},
    mutate_pod::mutate_pod,
    salvage::salvage,
};
use crate::model::restore_claim::{
    RestoreClaim, SNAPSHOT_ANNOTATION, SNAPSHOT_PROVISIONER, SnapshotFacts, Verdict, source_namespace,
    validate_restore_claim,
};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use super::validate_refs::{review_policy, review_rule_refs, review_schedule, rule_owner_kind};
use crate::model::crd::STORK_GROUP;

use crate::{
    body::read_body,
    cluster::pod::PodFacts,
    telemetry::LogLimiter,
    text::{Untrusted, clip_reason},
};

/// `AdmissionReview` response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewOut {
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut,
    /// The pod names a claim stork has not cached yet (deciding again later may route it).
    #[serde(skip)]
    claim_not_cached: bool,
    /// A denial because a Rule or SchedulePolicy the object names is not in the cache: it may be
    /// applied together with the object, so the review is decided again until the wait ends.
    #[serde(skip)]
    pub(super) named_not_cached: bool,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut {
    uid: String,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
struct StatusOut {
    code: u16,
    message: String,
}

impl ReviewOut {
    fn new(response: ResponseOut) -> Self {
        Self {
            api_version: ReviewVersion::V1.as_str(),
            kind: "AdmissionReview",
            response,
            claim_not_cached: false,
            named_not_cached: false,
        }
    }

    /// The answer in the review version the request came in.
    pub(super) fn in_version(mut self, version: ReviewVersion) -> Self {
        self.api_version = version.as_str();
        self
    }

    pub(super) fn allow(uid: &str, patch: Option<&Patch>, warnings: Vec<String>) -> Self {
        let patch = patch.and_then(|p| serde_json::to_vec(p).ok());
        Self::new(ResponseOut {
            uid: uid.into(),
            allowed: true,
            patch_type: patch.is_some().then_some("JSONPatch"),
            patch: patch.map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
            // Clipped: they quote names from the request.
            warnings: warnings.into_iter().map(clip_reason).collect(),
            status: None,
        })
    }

    pub(super) fn deny(uid: &str, message: String) -> Self {
        Self::new(ResponseOut {
            uid: uid.into(),
            allowed: false,
            status: Some(StatusOut { code: 403, message: clip_reason(message) }),
            ..ResponseOut::default()
        })
    }

    /// The one place errors become answers: allowed, unchanged, with the error as a warning.
    fn from_error(uid: &str, e: &Error) -> Self {
        Self::allow(uid, None, vec![format!("stork webhook could not process this request ({e}); allowed unchanged")])
    }
}

/// Registers `/mutate` and `/validate` (POST; the apiserver's `?timeout=` is ignored).
pub fn configure(state: WebhookState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(state))
            .route("/mutate", web::post().to(mutate_handler))
            .route("/validate", web::post().to(validate_handler));
    }
}

// The spans are at debug: at the default level (info) they cost nothing per request, where an
// info span cost a fifth of the handler (formatted at creation and again at each `record`). The
// info and warn lines below carry the uid themselves.
#[instrument(level = "debug", skip_all, fields(hook = "mutate", uid, ns, decision))]
async fn mutate_handler(state: web::Data<WebhookState>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let _timer = state.metrics.webhook.time("mutate");
    let result = match read_review(&state, &req, payload).await {
        Ok((body, _slot)) => review_mutate_waiting_for_claims(&state, &body).await.map_err(|e| salvaged(&body, e)),
        Err(e) => Err(e),
    };
    respond(&state, "mutate", result)
}

/// The review's body, read within the webhook's limits, and the request's place on its
/// connection. Any failure is answered with an allowed review (uid unknown then).
async fn read_review(
    state: &WebhookState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<(crate::body::Body, crate::server::ConnSlot), Failed> {
    let fail = |e: Error| (String::new(), ReviewVersion::V1, e);
    let slot = crate::server::conn_slot(req).ok_or_else(|| fail(Error::ConnectionBusy))?;
    let body = read_body(req, payload, &state.config.body).await.map_err(|e| fail(e.into()))?;
    Ok((body, slot))
}

/// A review that could not be decided: what is known of its uid and version, and why.
type Failed = (String, ReviewVersion, Error);

/// An error of a review whose body was read, with the version to answer in and the uid, salvaged
/// from the body when the decode did not get as far as the uid (errors only: the body is read
/// once more here, never on a decided review).
fn salvaged(body: &[u8], (uid, e): (String, Error)) -> Failed {
    let (found, version) = salvage(body);
    (if uid.is_empty() { found } else { uid }, version, e)
}

/// [`review_mutate`], decided again while a claim of the pod is missing from the cache, up to
/// `claim_wait`. A StatefulSet (or a user's `kubectl apply` of claim and pod together) creates the
/// claim moments before the pod, so the pod's review can outrun the watch that brings the claim
/// to stork; without waiting, such a pod would be admitted unrouted. Nothing is asked of the API
/// server: the watch fills the cache, the decision only reads it.
async fn review_mutate_waiting_for_claims(state: &WebhookState, body: &[u8]) -> Result<ReviewOut, (String, Error)> {
    let deadline = tokio::time::Instant::now() + state.config.claim_wait;
    loop {
        let out = review_mutate(state, body)?;
        if !out.claim_not_cached || tokio::time::Instant::now() >= deadline {
            return Ok(out);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await; // poll the cache until the deadline
    }
}

/// [`review_validate`], decided again while a denial rests on a Rule or SchedulePolicy missing
/// from the cache, up to `claim_wait`: `kubectl apply` of a Rule and the snapshot naming it
/// together must not be refused because the review outran the watch.
async fn review_validate_waiting_for_names(state: &WebhookState, body: &[u8]) -> Result<ReviewOut, (String, Error)> {
    let deadline = tokio::time::Instant::now() + state.config.claim_wait;
    loop {
        let out = review_validate(state, body)?;
        if !out.named_not_cached || tokio::time::Instant::now() >= deadline {
            return Ok(out);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await; // poll the cache until the deadline
    }
}

#[instrument(level = "debug", skip_all, fields(hook = "validate", uid, ns, decision))]
async fn validate_handler(state: web::Data<WebhookState>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let _timer = state.metrics.webhook.time("validate");
    let result = match read_review(&state, &req, payload).await {
        Ok((body, _slot)) => review_validate_waiting_for_names(&state, &body).await.map_err(|e| salvaged(&body, e)),
        Err(e) => Err(e),
    };
    respond(&state, "validate", result)
}

/// Encodes the answer; an error is answered with an allowed review.
fn respond(state: &WebhookState, hook: &'static str, result: Result<ReviewOut, Failed>) -> HttpResponse {
    // One bad client can send thousands of these a second: a few lines per interval, then a count.
    static NOT_PROCESSED: LogLimiter = LogLimiter::new();
    let out = result.unwrap_or_else(|(uid, version, e)| {
        if let Some(suppressed) = NOT_PROCESSED.admit() {
            let error = e.to_string();
            tracing::warn!(
                hook,
                uid = %Untrusted(&uid),
                error = %Untrusted(&error),
                suppressed,
                "admission request not processed; allowing"
            );
        }
        state.metrics.webhook.failed(hook, e.metric_label());
        ReviewOut::from_error(&uid, &e).in_version(version)
    });
    let body = serde_json::to_vec(&out).unwrap_or_else(|_| {
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":true}}"#
            .to_vec()
    });
    HttpResponse::Ok().insert_header((CONTENT_TYPE, "application/json")).body(body)
}

/// Fills the handler span's fields, when debug spans are on at all.
pub(super) fn record_span(req: &RequestIn<'_>, decision: Option<&'static str>) {
    if tracing::level_enabled!(tracing::Level::DEBUG) {
        let span = Span::current();
        span.record("uid", &*req.uid).record("ns", &*req.namespace);
        if let Some(d) = decision {
            span.record("decision", d);
        }
    }
}

/// Decodes and decides one `/mutate` review.
pub fn review_mutate(state: &WebhookState, body: &[u8]) -> Result<ReviewOut, (String, Error)> {
    let (req, pod) = parse_mutate(body).map_err(|e| (String::new(), e))?;
    let decision = if !req.is_core("Pod") {
        "not_a_pod"
    } else if req.operation != "CREATE" {
        "not_create"
    } else if req.dry_run {
        "dry_run"
    } else {
        ""
    };
    if !decision.is_empty() {
        record_span(&req, Some(decision));
        return Ok(ReviewOut::allow(&req.uid, None, vec![]).in_version(req.version));
    }
    let pod = match pod {
        Some(pod) => pod,
        None => req.object::<PodFacts>().map_err(|e| (req.uid.to_string(), e))?,
    };
    let ns = if req.namespace.is_empty() { pod.metadata.namespace.as_str() } else { &req.namespace };
    let d = mutate_pod(&pod, ns, &state.config, &state.cluster, state.driver.as_ref());
    record_span(&req, Some(d.reason));
    if d.patch.is_some() {
        // Few fields, as Display: each one costs about a tenth of the request when formatted.
        let pod = pod.display_name();
        tracing::info!(uid = %Untrusted(&req.uid), pod = %Untrusted(&pod), "routing pod to the stork scheduler");
    }
    let mut out = ReviewOut::allow(&req.uid, d.patch.as_ref(), d.warnings).in_version(req.version);
    out.claim_not_cached = d.reason == "pvc_not_cached";
    Ok(out)
}

/// Decodes and decides one `/validate` review.
pub fn review_validate(state: &WebhookState, body: &[u8]) -> Result<ReviewOut, (String, Error)> {
    let req = parse(body).map_err(|e| (String::new(), e))?;
    record_span(&req, None);
    let version = req.version;
    if let Some(kind) = rule_owner_kind(&req) {
        return review_rule_refs(state, &req, kind);
    }
    if &*req.kind.group == STORK_GROUP && matches!(&*req.operation, "CREATE" | "UPDATE") {
        match &*req.kind.kind {
            "SchedulePolicy" => return review_policy(&req),
            "VolumeSnapshotSchedule" => return review_schedule(state, &req),
            _ => {}
        }
    }
    if !req.is_core("PersistentVolumeClaim") || req.operation != "CREATE" {
        return Ok(ReviewOut::allow(&req.uid, None, vec![]).in_version(version));
    }
    let pvc: PersistentVolumeClaim = req.object().map_err(|e| (req.uid.to_string(), e))?;
    let is_restore = state.cluster.class_of(&pvc).is_some_and(|sc| sc.provisioner == SNAPSHOT_PROVISIONER);
    if !is_restore {
        return Ok(ReviewOut::allow(&req.uid, None, vec![]).in_version(version));
    }
    let meta = &pvc.metadata;
    let ns = if req.namespace.is_empty() { meta.namespace.as_deref().unwrap_or_default() } else { &req.namespace };
    let name = meta.name.as_deref().or(meta.generate_name.as_deref()).unwrap_or_default();
    let no_annotations = BTreeMap::new();
    let annotations = meta.annotations.as_ref().unwrap_or(&no_annotations);
    let claim = RestoreClaim { namespace: ns, name, annotations };
    let snapshot_name = annotations.get(SNAPSHOT_ANNOTATION).map_or("", |s| s.trim());
    let facts = state
        .cluster
        .snapshot(source_namespace(ns, annotations), snapshot_name)
        .map(|cached| cached.map(|s| SnapshotFacts::of(&s)));
    match validate_restore_claim(&claim, facts.as_ref().map(Option::as_ref)) {
        Verdict::Allow(w) => Ok(ReviewOut::allow(&req.uid, None, w).in_version(version)),
        Verdict::Deny(msg) => {
            record_span(&req, Some("denied"));
            let pvc = format!("{ns}/{name}");
            tracing::info!(uid = %Untrusted(&req.uid), pvc = %Untrusted(&pvc), reason = %Untrusted(&msg), "denying restore pvc");
            Ok(ReviewOut::deny(&req.uid, msg).in_version(version))
        }
    }
}
