//! What can still be read of an AdmissionReview that did not decode, so even an error answer
//! carries the request's uid and version.

use super::decode::ReviewVersion;

/// What can still be read of a review that did not decode: the request's uid (so the API
/// server can match the answer) and the version to answer in. Tries a generic JSON decode,
/// then, for a body that is not JSON at all (truncated, say), the first `"uid"` string in it:
/// the API server writes `request.uid` before the object.
pub fn salvage(body: &[u8]) -> (String, ReviewVersion) {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let uid = v.pointer("/request/uid").and_then(serde_json::Value::as_str).unwrap_or_default();
        let version = match v.get("apiVersion").and_then(serde_json::Value::as_str) {
            Some("admission.k8s.io/v1beta1") => ReviewVersion::V1beta1,
            _ => ReviewVersion::V1,
        };
        return (uid.to_owned(), version);
    }
    let text = String::from_utf8_lossy(body);
    let string_after = |key: &str| -> Option<String> {
        let re = regex_lite::Regex::new(&format!(r#""{key}"\s*:\s*("(?:[^"\\]|\\.)*")"#)).ok()?;
        let quoted = re.captures(&text)?.get(1)?.as_str();
        serde_json::from_str::<String>(quoted).ok()
    };
    let version = match string_after("apiVersion").as_deref() {
        Some("admission.k8s.io/v1beta1") => ReviewVersion::V1beta1,
        _ => ReviewVersion::V1,
    };
    (string_after("uid").unwrap_or_default(), version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::decode::parse;

    #[test]
    fn the_uid_and_version_are_salvaged_from_reviews_that_do_not_decode() {
        let wrong_kind = br#"{"apiVersion":"admission.k8s.io/v1beta1","request":{"uid":"u-1","kind":7}}"#;
        assert!(parse(wrong_kind).is_err());
        assert_eq!(salvage(wrong_kind), ("u-1".to_string(), ReviewVersion::V1beta1));
        let truncated =
            br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u\"2","kind":{"#;
        assert_eq!(salvage(truncated), ("u\"2".to_string(), ReviewVersion::V1));
        assert_eq!(salvage(b"\xff\x00 not json"), (String::new(), ReviewVersion::V1));
        assert_eq!(salvage(br#"{"request":{"uid":5}}"#).0, "");
    }
}
