//! Decoding the AdmissionReview v1 request: only the fields decisions read, borrowed from the
//! body where they hold no escapes.
//!
//! `/mutate` decodes in one pass: when `kind` and `operation` come before `object` (the
//! apiserver's field order) and say "Pod CREATE", the pod is decoded where it stands instead of
//! being scanned into a raw value and parsed again. Any error there falls back to [`parse`], the
//! plain two-step decode, so answers — errors included — are those of the two-step decode.

use std::{borrow::Cow, fmt};

use serde::{
    Deserialize, Deserializer,
    de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, Visitor},
};
use serde_json::value::RawValue;

use super::Error;
use crate::cluster::pod::PodFacts;

#[derive(Deserialize)]
struct ReviewIn<'a> {
    /// Kept raw: a malformed version must not make the whole review unreadable.
    #[serde(rename = "apiVersion", borrow, default)]
    api_version: Option<&'a RawValue>,
    #[serde(borrow)]
    request: Option<RequestIn<'a>>,
}

/// The AdmissionReview version a request came in, which its answer must carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReviewVersion {
    /// `admission.k8s.io/v1` (also assumed for a review naming no or an unknown version).
    #[default]
    V1,
    /// `admission.k8s.io/v1beta1`: the API server still sends it to a configuration that lists
    /// only `v1beta1` in `admissionReviewVersions`. Its response has the same fields.
    V1beta1,
}

impl ReviewVersion {
    /// The `apiVersion` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "admission.k8s.io/v1",
            Self::V1beta1 => "admission.k8s.io/v1beta1",
        }
    }

    fn of(raw: Option<&RawValue>) -> Self {
        match raw.map(RawValue::get) {
            Some(r#""admission.k8s.io/v1beta1""#) => Self::V1beta1,
            _ => Self::V1,
        }
    }
}

/// `AdmissionRequest`, the fields we read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestIn<'a> {
    /// Echoed in the response.
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    /// What the object is.
    #[serde(borrow)]
    pub kind: Gvk<'a>,
    /// The request's namespace (empty for cluster-scoped objects).
    #[serde(default, borrow)]
    pub namespace: Cow<'a, str>,
    /// `CREATE`, `UPDATE`, …
    #[serde(default, borrow)]
    pub operation: Cow<'a, str>,
    /// Whether the request only simulates the change.
    #[serde(default)]
    pub dry_run: bool,
    /// The object, undecoded.
    #[serde(borrow)]
    pub object: Option<&'a RawValue>,
    /// The version of the review this request came in (from the envelope).
    #[serde(skip)]
    pub version: ReviewVersion,
}

/// `GroupVersionKind` without the version.
#[derive(Deserialize)]
pub struct Gvk<'a> {
    /// API group, empty for the core group.
    #[serde(default, borrow)]
    pub group: Cow<'a, str>,
    /// Kind.
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
}

impl RequestIn<'_> {
    /// Whether the object is a core-group object of this kind.
    pub fn is_core(&self, kind: &str) -> bool {
        self.kind.group.is_empty() && self.kind.kind == kind
    }

    /// The object as `T`; an absent object decodes as `null` (and so fails for structs).
    pub fn object<T: for<'de> Deserialize<'de>>(&self) -> Result<T, Error> {
        serde_json::from_str(self.object.map_or("null", RawValue::get)).map_err(Error::Object)
    }
}

/// Decodes the review; an error carries the uid when it is known (never, here).
pub fn parse(body: &[u8]) -> Result<RequestIn<'_>, Error> {
    let review: ReviewIn<'_> = serde_json::from_slice(body).map_err(Error::Decode)?;
    let mut request = review.request.ok_or(Error::NoRequest)?;
    request.version = ReviewVersion::of(review.api_version);
    Ok(request)
}

/// Decodes a `/mutate` review, with the pod when the request is a Pod CREATE. The pod is `None`
/// when it was not decoded: decode it from [`RequestIn::object`] if the decision needs it.
pub fn parse_mutate(body: &[u8]) -> Result<(RequestIn<'_>, Option<PodFacts>), Error> {
    // Validating the body once up front lets the decoder skip validating each string it reads
    // (a tenth of the decode); invalid UTF-8 is left to the two-step decode to report.
    let Ok(text) = std::str::from_utf8(body) else {
        return parse(body).map(|req| (req, None));
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let fast = MutateReview.deserialize(&mut de).and_then(|r| de.end().map(|()| r));
    match fast {
        Ok(Some((req, pod))) => Ok((req, pod)),
        // Whatever went wrong, the two-step decode says what (or succeeds where the single pass
        // gave up, e.g. on a pod the decision never looks at).
        Ok(None) | Err(_) => parse(body).map(|req| (req, None)),
    }
}

/// The envelope, for the single pass: `request` through [`MutateRequest`], the rest skipped.
struct MutateReview;

impl<'de> DeserializeSeed<'de> for MutateReview {
    type Value = Option<(RequestIn<'de>, Option<PodFacts>)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MutateReview {
    type Value = Option<(RequestIn<'de>, Option<PodFacts>)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AdmissionReview")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut request, mut version) = (None, None);
        while let Some(key) = map.next_key::<ReviewField>()? {
            match key {
                ReviewField::Request if request.is_some() => return Err(A::Error::duplicate_field("request")),
                ReviewField::Request => request = Some(map.next_value_seed(OptionalRequest)?),
                ReviewField::ApiVersion if version.is_some() => {
                    return Err(A::Error::duplicate_field("apiVersion"));
                }
                ReviewField::ApiVersion => version = Some(map.next_value::<&'de RawValue>()?),
                ReviewField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let mut request = request.flatten();
        if let Some((req, _)) = &mut request {
            req.version = ReviewVersion::of(version);
        }
        Ok(request)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum ReviewField {
    ApiVersion,
    Request,
    #[serde(other)]
    Other,
}

/// `request`, which may be `null`.
struct OptionalRequest;

impl<'de> DeserializeSeed<'de> for OptionalRequest {
    type Value = Option<(RequestIn<'de>, Option<PodFacts>)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for OptionalRequest {
    type Value = Option<(RequestIn<'de>, Option<PodFacts>)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AdmissionRequest or null")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(MutateRequest).map(Some)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum RequestField {
    Uid,
    Kind,
    Namespace,
    Operation,
    DryRun,
    Object,
    #[serde(other)]
    Other,
}

/// The request's fields as the derived decoder reads them (same types, same errors on
/// duplicates and missing fields), except `object` when it can already be decoded as a pod.
struct MutateRequest;

/// Wraps a `Cow<str>` so it borrows from the body (the plain `Cow` impl always copies).
struct Borrowed<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Borrowed<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(BorrowedVisitor)
    }
}

struct BorrowedVisitor;

impl<'de> Visitor<'de> for BorrowedVisitor {
    type Value = Borrowed<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Borrowed(Cow::Borrowed(v)))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Borrowed(Cow::Owned(v.to_owned())))
    }
}

impl<'de> Visitor<'de> for MutateRequest {
    type Value = (RequestIn<'de>, Option<PodFacts>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AdmissionRequest")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        fn once<T, E: serde::de::Error>(slot: &Option<T>, name: &'static str) -> Result<(), E> {
            if slot.is_some() { Err(E::duplicate_field(name)) } else { Ok(()) }
        }
        let (mut uid, mut kind, mut namespace, mut operation, mut dry_run) = (None, None, None, None, None);
        let mut object: Option<Option<&'de RawValue>> = None;
        let mut pod = None;
        while let Some(key) = map.next_key::<RequestField>()? {
            match key {
                RequestField::Uid => {
                    once(&uid, "uid")?;
                    uid = Some(map.next_value::<Borrowed<'de>>()?.0);
                }
                RequestField::Kind => {
                    once(&kind, "kind")?;
                    kind = Some(map.next_value::<Gvk<'de>>()?);
                }
                RequestField::Namespace => {
                    once(&namespace, "namespace")?;
                    namespace = Some(map.next_value::<Borrowed<'de>>()?.0);
                }
                RequestField::Operation => {
                    once(&operation, "operation")?;
                    operation = Some(map.next_value::<Borrowed<'de>>()?.0);
                }
                RequestField::DryRun => {
                    once(&dry_run, "dryRun")?;
                    dry_run = Some(map.next_value::<bool>()?);
                }
                RequestField::Object => {
                    once(&object, "object")?;
                    let is_pod_create = kind.as_ref().is_some_and(|k: &Gvk<'_>| k.group.is_empty() && k.kind == "Pod")
                        && operation.as_deref() == Some("CREATE");
                    if is_pod_create {
                        // `null` or a non-pod fails here, and the two-step decode answers.
                        pod = Some(map.next_value::<PodFacts>()?);
                        object = Some(None);
                    } else {
                        object = Some(map.next_value::<Option<&'de RawValue>>()?);
                    }
                }
                RequestField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let req = RequestIn {
            uid: uid.ok_or_else(|| A::Error::missing_field("uid"))?,
            kind: kind.ok_or_else(|| A::Error::missing_field("kind"))?,
            namespace: namespace.unwrap_or_default(),
            operation: operation.unwrap_or_default(),
            dry_run: dry_run.unwrap_or_default(),
            object: object.flatten(),
            version: ReviewVersion::V1,
        };
        Ok((req, pod))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRIVER_POD: &str = include_str!("../../tests/data/admission/pod-with-driver-pvc.json");

    fn both(body: &str) -> (Result<String, String>, Result<String, String>) {
        let show = |r: &RequestIn<'_>, pod: Option<String>| {
            format!(
                "{} {}/{} ns={} op={} dry={} v={:?} pod={pod:?}",
                r.uid, r.kind.group, r.kind.kind, r.namespace, r.operation, r.dry_run, r.version,
            )
        };
        let slow = parse(body.as_bytes()).map(|r| {
            let pod = (r.is_core("Pod") && r.operation == "CREATE")
                .then(|| r.object::<PodFacts>().ok().map(|p| format!("{:?}", p)))
                .flatten();
            show(&r, pod)
        });
        let fast = parse_mutate(body.as_bytes()).map(|(r, p)| {
            let pod = p.map(|p| format!("{p:?}")).or_else(|| {
                (r.is_core("Pod") && r.operation == "CREATE")
                    .then(|| r.object::<PodFacts>().ok().map(|p| format!("{p:?}")))
                    .flatten()
            });
            show(&r, pod)
        });
        (slow.map_err(|e| e.to_string()), fast.map_err(|e| e.to_string()))
    }

    #[test]
    fn the_single_pass_decodes_a_pod_create_in_place() {
        let (req, pod) = parse_mutate(DRIVER_POD.as_bytes()).expect("decodes");
        assert!(req.object.is_none(), "the object was decoded in place, not kept raw");
        assert_eq!(pod.expect("pod").spec.volumes[0].persistent_volume_claim.as_ref().unwrap().claim_name, "data-1");
        assert!(matches!(req.uid, Cow::Borrowed("uid-driver")), "the uid is borrowed from the body");
    }

    #[test]
    fn the_single_pass_agrees_with_the_two_step_decode_on_odd_bodies() {
        let cases = [
            DRIVER_POD.to_string(),
            r#"{"request":{"object":{"spec":{}},"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE"}}"#.into(),
            r#"{"request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","object":null}}"#.into(),
            r#"{"request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","object":[1]}}"#.into(),
            r#"{"request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE"}}"#.into(),
            r#"{"request":{"uid":"u","uid":"v","kind":{"kind":"Pod"}}}"#.into(),
            r#"{"request":{"uid":"u","kind":{"kind":"Pod"},"kind":{"kind":"Pod"}}}"#.into(),
            r#"{"request":{"kind":{"kind":"Pod"}}}"#.into(),
            r#"{"request":{"uid":"u"}}"#.into(),
            r#"{"request":{"uid":"u\"x","namespace":"n\u0073","kind":{"kind":"P\u006fd"},"operation":"CREATE","object":{}}}"#.into(),
            r#"{"request":{"uid":"u","kind":{"kind":"Pod"},"dryRun":null}}"#.into(),
            r#"{"request":{"uid":"u","kind":{"kind":"Pod"},"namespace":null}}"#.into(),
            r#"{"request":null}"#.into(),
            r#"{"request":{"uid":"u","kind":{"kind":"Pod"}},"request":null}"#.into(),
            r#"{}"#.into(),
            r#"[]"#.into(),
            r#"{"request":{"uid":"u","kind":{"kind":"Pod"}}} x"#.into(),
            r#"{"request":["u",{"kind":"Pod"}]}"#.into(),
            String::new(),
            r#"{"apiVersion":5,"request":{"uid":"u","kind":{"kind":"Pod"}}}"#.into(),
            r#"{"apiVersion":"admission.k8s.io/v1beta1","request":{"uid":"u","kind":{"kind":"Pod"}}}"#.into(),
        ];
        for body in cases {
            let (slow, fast) = both(&body);
            assert_eq!(fast, slow, "{body}");
        }
        let v1beta1 = r#"{"apiVersion":"admission.k8s.io/v1beta1","request":{"uid":"u","kind":{"kind":"Pod"}}}"#;
        assert_eq!(parse(v1beta1.as_bytes()).unwrap().version, ReviewVersion::V1beta1);
        assert_eq!(parse_mutate(v1beta1.as_bytes()).unwrap().0.version, ReviewVersion::V1beta1);
        let not_utf8 = b"{\"request\":{\"uid\":\"\xff\",\"kind\":{\"kind\":\"Pod\"}}}";
        let errors =
            (parse(not_utf8).err().map(|e| e.to_string()), parse_mutate(not_utf8).err().map(|e| e.to_string()));
        assert!(errors.0.is_some() && errors.0 == errors.1, "{errors:?}");
    }
}
