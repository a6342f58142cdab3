//! AdmissionReview bodies through `/mutate` and `/validate`, exactly as the handlers decide them
//! (`review_mutate`, `review_validate`), plus the two decoders themselves.
//!
//! Properties, besides never panicking:
//! - `parse_mutate` answers as `parse` does, errors included (its module's stated contract),
//!   and a pod it decoded in place equals the pod decoded from the raw object;
//! - a body `parse` rejects is rejected by both reviews with the same error;
//! - an answered review serialises to JSON with `response.allowed`, the request's uid and the
//!   review version the request came in;
//! - `salvage` (what the handlers read of a review they could not decide) finds the version and
//!   uid the decode finds, whenever the body is JSON it can read;
//! - a patch is a base64 JSON Patch that applies to the request's object (the API server
//!   fails the request otherwise, blocking the pod the webhook meant to route);
//! - a denial carries status 403 and a message.

use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;
use stork::{
    cluster::pod::PodFacts,
    webhook::{
        decode::{RequestIn, ReviewVersion, parse, parse_mutate},
        review::{review_mutate, review_validate},
        salvage::salvage,
    },
};

use super::{Check, Fixture, Seen, normalize};

/// The `review` target's properties.
pub struct Review {
    fixture: Arc<Fixture>,
}

impl Review {
    /// The properties, checked against `fixture`'s clusters.
    pub fn new(fixture: Arc<Fixture>) -> Self {
        Self { fixture }
    }
}

impl Check for Review {
    fn run(&self, input: &[u8], seen: &mut Seen) -> Result<(), String> {
        let slow = parse(input);
        decoders_agree(input, &slow)?;
        let salvaged = salvage(input);
        if let Ok(req) = &slow {
            salvage_agrees(input, req, salvaged, seen)?;
        }
        let (state, _) = self.fixture.pick(input);
        let slow = slow.as_ref().map_err(ToString::to_string);
        let mutated = review_mutate(state, input);
        let routed = slow.as_ref().is_ok_and(|r| r.is_core("Pod") && r.operation == "CREATE" && !r.dry_run);
        let mutate = check("mutate", &slow, mutated.map(|o| serde_json::to_vec(&o)), routed, seen)?;
        let validated = review_validate(state, input);
        let restores = slow.as_ref().is_ok_and(|r| r.is_core("PersistentVolumeClaim") && r.operation == "CREATE");
        let validate = check("validate", &slow, validated.map(|o| serde_json::to_vec(&o)), restores, seen)?;
        if let (Some(answer), Ok(req)) = (&mutate, &slow) {
            patch_applies(answer, req)?;
        }
        if mutate.is_some() && routed || validate.is_some() && restores {
            seen.decided += 1;
        }
        Ok(())
    }
}

/// `parse_mutate` against `parse`: same verdict, same fields, same pod.
fn decoders_agree(input: &[u8], slow: &Result<RequestIn<'_>, stork::webhook::Error>) -> Result<(), String> {
    let fast = parse_mutate(input);
    match (slow, &fast) {
        (Err(s), Err(f)) if s.to_string() == f.to_string() => Ok(()),
        (Ok(s), Ok((f, pod))) => {
            let show = |r: &RequestIn<'_>| {
                format!("{}|{}|{}|{}|{}|{}", r.uid, r.kind.group, r.kind.kind, r.namespace, r.operation, r.dry_run)
            };
            if show(s) != show(f) {
                return Err(format!("parse_mutate decoded {} where parse decoded {}", show(f), show(s)));
            }
            let Some(pod) = pod else { return Ok(()) };
            match s.object::<PodFacts>() {
                Ok(p) if format!("{p:?}") == format!("{pod:?}") => Ok(()),
                Ok(p) => Err(format!("the pod decoded in place differs: {pod:?} vs {p:?}")),
                Err(e) => Err(format!("parse_mutate decoded a pod the two-step decode rejects ({e})")),
            }
        }
        (s, f) => Err(format!(
            "parse_mutate and parse disagree: {:?} vs {:?}",
            f.as_ref().map(|_| "Ok").map_err(ToString::to_string),
            s.as_ref().map(|_| "Ok").map_err(ToString::to_string),
        )),
    }
}

/// `salvage` must read the version and uid `parse` reads. It decodes a `serde_json::Value`
/// first, which stops at 128 levels where `parse` (skipping what it does not read) does not:
/// such a body falls back to a text search, and is only counted.
fn salvage_agrees(
    input: &[u8],
    req: &RequestIn<'_>,
    salvaged: (String, ReviewVersion),
    seen: &mut Seen,
) -> Result<(), String> {
    if salvaged == (req.uid.to_string(), req.version) {
        return Ok(());
    }
    if serde_json::from_slice::<serde_json::Value>(input).is_err() {
        seen.class("salvage: NOTE differs on a body too deep for a JSON value");
        return Ok(());
    }
    Err(format!("salvage read {salvaged:?} where the decode read ({:?}, {:?})", req.uid, req.version))
}

/// The parts of an AdmissionReview answer the properties read.
#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "apiVersion")]
    api_version: String,
    response: AnswerResponse,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnswerResponse {
    uid: String,
    allowed: Option<bool>,
    status: Option<AnswerStatus>,
    patch: Option<String>,
    patch_type: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct AnswerStatus {
    code: u16,
    message: String,
}

type Reviewed = Result<serde_json::Result<Vec<u8>>, (String, stork::webhook::Error)>;

/// Checks one review's answer against the decode and notes its class; returns the answer.
fn check(
    hook: &str,
    slow: &Result<&RequestIn<'_>, String>,
    reviewed: Reviewed,
    decides: bool,
    seen: &mut Seen,
) -> Result<Option<AnswerResponse>, String> {
    let bytes = match (reviewed, slow) {
        (Err((_, e)), Err(decode)) if e.to_string() == *decode => {
            seen.class(&format!("{hook}: err {}: {}", e.metric_label(), normalize(&e.to_string())));
            return Ok(None);
        }
        (Err((_, e)), Err(decode)) => return Err(format!("{hook} failed with {e:?}, the decode with {decode:?}")),
        (Ok(_), Err(decode)) => return Err(format!("{hook} answered a body the decode rejects ({decode})")),
        (Err((uid, e)), Ok(req)) => {
            if uid != *req.uid {
                return Err(format!("{hook} error carries uid {uid:?}, the request's is {:?}", req.uid));
            }
            seen.class(&format!("{hook}: err {}: {}", e.metric_label(), normalize(&e.to_string())));
            return Ok(None);
        }
        (Ok(Err(e)), Ok(_)) => return Err(format!("{hook} answer does not serialise: {e}")),
        (Ok(Ok(bytes)), Ok(req)) => (bytes, req),
    };
    let (bytes, req) = bytes;
    let answer: Answer = serde_json::from_slice(&bytes).map_err(|e| format!("{hook} answer is not a review: {e}"))?;
    if answer.api_version != req.version.as_str() {
        return Err(format!("{hook} answered in {:?} a review of {:?}", answer.api_version, req.version.as_str()));
    }
    let r = answer.response;
    let Some(allowed) = r.allowed else { return Err(format!("{hook} answer has no response.allowed")) };
    if r.uid != *req.uid {
        return Err(format!("{hook} answer uid {:?} is not the request's {:?}", r.uid, req.uid));
    }
    if !allowed && r.status.as_ref().is_none_or(|s| s.code != 403 || s.message.is_empty()) {
        return Err(format!("{hook} denial without a 403 status and message"));
    }
    let class = match (decides, allowed, &r.patch, r.warnings.is_empty()) {
        (false, true, None, true) => "ok, passed through (not its kind or operation)",
        (_, false, ..) => "ok, denied",
        (_, true, Some(_), _) => "ok, patched",
        (true, true, None, true) => "ok, allowed unchanged",
        (_, true, None, false) => "ok, allowed with a warning",
    };
    seen.class(&format!("{hook}: {class}"));
    if r.warnings.iter().any(|w| w.chars().any(char::is_control)) {
        seen.class(&format!("{hook}: NOTE warning text holds control characters"));
    }
    Ok(Some(r))
}

/// A patch must be base64 JSON Patch that applies to the object it was computed for.
fn patch_applies(answer: &AnswerResponse, req: &RequestIn<'_>) -> Result<(), String> {
    let Some(b64) = &answer.patch else { return Ok(()) };
    if answer.patch_type.as_deref() != Some("JSONPatch") {
        return Err(format!("patch with patchType {:?}", answer.patch_type));
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| format!("patch is not base64: {e}"))?;
    let patch: json_patch::Patch =
        serde_json::from_slice(&raw).map_err(|e| format!("patch is not a JSON Patch: {e}"))?;
    // An object past serde_json's depth limit for `Value` (stork skips such fields without
    // that limit) cannot be checked here: nothing to report then.
    let Ok(mut object) = req.object.map_or(Ok(serde_json::Value::Null), |o| serde_json::from_str(o.get())) else {
        return Ok(());
    };
    json_patch::patch(&mut object, &patch)
        .map_err(|e| format!("patch {} does not apply to the request's object: {e}", String::from_utf8_lossy(&raw)))
}
