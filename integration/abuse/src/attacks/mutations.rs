//! Mutated request bodies for attack 6, deterministic from a seed: recorded AdmissionReviews and
//! ExtenderArgs with wrong types at random paths, long and huge strings, deep nesting, deleted
//! keys, strange Unicode, log-forging newlines; then, sometimes, truncated, made invalid UTF-8 or
//! replaced by non-JSON bytes; sent with the right, a wrong or no Content-Type.
//!
//! Each case carries what the answer must show: the review's uid echoed whenever the uid can be
//! read (valid JSON, or a truncated body cut after the uid), a v1beta1 review answered in
//! v1beta1, `"Nodes": {"items": null}` answered 200.

use serde_json::{Value, json};

use crate::fixtures::{self, EXTENDER_ARGS, REVIEWS};

/// What a forged log line starts with; no line of stork's log may begin with it.
pub const FORGED: &str = "FORGED-LOG-LINE";
/// The apiVersion of an old review.
pub const V1BETA1: &str = "admission.k8s.io/v1beta1";
/// Placeholder for deep nesting, swapped for [`DEPTH`] nested arrays after encoding (encoding
/// the nesting itself would recurse that deep).
const DEEP: &str = "\u{0}abuse-deep\u{0}";
/// Nesting depth of a deep value.
const DEPTH: usize = 10_000;
/// Bodies that are not a JSON object (some not JSON at all).
const NOT_JSON: [&[u8]; 7] =
    [b"", b"null", b"[]", b"{}", b"<?xml version=\"1.0\"?><review/>", b"uid=x&allowed=true", b"\x00\x01\x02\xff\xfe"];

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    /// Seeded; the same seed gives the same sequence.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// One of `items` (not empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// What the answer to a case must show.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Expect {
    /// `response.uid` of the review answer.
    pub uid: Option<String>,
    /// `apiVersion` of the review answer.
    pub api_version: Option<&'static str>,
    /// HTTP 200 (a review answer always must; an extender answer when set).
    pub ok: bool,
}

/// One mutated request.
#[derive(Debug)]
pub struct Case {
    /// The body.
    pub body: Vec<u8>,
    /// The Content-Type header, if any.
    pub content_type: Option<&'static str>,
    /// The mutations applied, for messages.
    pub what: Vec<&'static str>,
    /// What the answer must show.
    pub expect: Expect,
}

/// A step into a JSON value.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// Every path in `value`, the root included.
fn paths(value: &Value) -> Vec<Vec<Step>> {
    let mut all = vec![];
    let mut stack = vec![(value, vec![])];
    while let Some((v, path)) = stack.pop() {
        match v {
            Value::Object(map) => {
                stack.extend(map.iter().map(|(k, v)| (v, [&path[..], &[Step::Key(k.clone())]].concat())))
            }
            Value::Array(items) => {
                stack.extend(items.iter().enumerate().map(|(i, v)| (v, [&path[..], &[Step::Index(i)]].concat())))
            }
            _ => {}
        }
        all.push(path);
    }
    all
}

fn get_mut<'v>(value: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    path.iter().try_fold(value, |v, step| match step {
        Step::Key(k) => v.get_mut(k.as_str()),
        Step::Index(i) => v.get_mut(*i),
    })
}

/// Paths where log lines are likely to quote the value.
const LOGGED: [&str; 13] = [
    "/request/uid",
    "/request/namespace",
    "/request/name",
    "/request/operation",
    "/request/kind/kind",
    "/request/object/metadata/name",
    "/request/object/metadata/namespace",
    "/request/object/metadata/generateName",
    "/request/object/spec/volumes/0/persistentVolumeClaim/claimName",
    "/Pod/metadata/name",
    "/Pod/metadata/namespace",
    "/Pod/spec/volumes/0/persistentVolumeClaim/claimName",
    "/NodeNames/0",
];

/// A value of another JSON type than `old`.
fn other_type(rng: &mut Rng, old: &Value) -> Value {
    loop {
        let new = match rng.below(7) {
            0 => Value::Null,
            1 => json!(rng.below(2) == 1),
            2 => json!(-(rng.below(1 << 20) as i64)),
            3 => json!(1e308),
            4 => json!("not-what-you-expect"),
            5 => json!([1, "two", null]),
            _ => json!({"unexpected": {"object": true}}),
        };
        if std::mem::discriminant(&new) != std::mem::discriminant(old) {
            return new;
        }
    }
}

/// Applies one value mutation; returns its name.
fn mutate_value(rng: &mut Rng, value: &mut Value) -> &'static str {
    let all = paths(value);
    let path = all[rng.below(all.len())].clone();
    // Out of 200: forged 25%, wrong type 30%, deleted 15%, long 12.5%, Unicode 10%, deep 7%,
    // huge 0.5% (a huge string costs the client as much as a thousand other cases).
    let roll = rng.below(200);
    if roll < 50 {
        let logged: Vec<&str> = LOGGED.iter().copied().filter(|p| value.pointer(p).is_some()).collect();
        let target = match logged.is_empty() {
            false => value.pointer_mut(rng.pick(&logged)),
            true => get_mut(value, &path),
        };
        let Some(slot) = target else { return "none" };
        let eol = if rng.below(2) == 0 { "\n" } else { "\r\n" };
        *slot =
            format!("{}{eol}{FORGED} level=ERROR msg=\"forged by stork-abuse\"", slot.as_str().unwrap_or("x")).into();
        return "forged-log-line";
    }
    let Some(slot) = get_mut(value, &path) else { return "none" };
    match roll {
        50..110 => {
            *slot = other_type(rng, slot);
            "wrong-type"
        }
        110..140 => {
            let Some((Step::Key(key), parent)) = path.split_last().map(|(l, p)| (l.clone(), p.to_vec())) else {
                return "none";
            };
            get_mut(value, &parent).and_then(Value::as_object_mut).map(|o| o.remove(&key));
            "deleted-key"
        }
        140..165 => {
            *slot = "l".repeat(4096 + rng.below(4096)).into();
            "long-string"
        }
        165..185 => {
            *slot = json!(rng.pick(&[
                "\u{202e}evil\u{0}nul",
                "😀\u{fffd}\u{1}",
                "a\\\"b/../..",
                "\u{7f}\u{85}\u{2028}line"
            ]));
            "unicode"
        }
        185..199 => {
            *slot = DEEP.into();
            "deep-nesting"
        }
        _ => {
            *slot = "h".repeat((64 << 10) + rng.below(448 << 10)).into();
            "huge-string"
        }
    }
}

/// Encodes `value` with `request.uid` first in `request` (as the API server does); returns the
/// bytes and where the uid ends, if there is one.
fn encode(value: &Value) -> (Vec<u8>, Option<usize>) {
    let Value::Object(top) = value else { return (serde_json::to_vec(value).expect("encode"), None) };
    let mut out = b"{".to_vec();
    let mut uid_end = None;
    for (i, (key, v)) in top.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push(&mut out, key);
        out.push(b':');
        match v {
            Value::Object(req) if key == "request" && req.contains_key("uid") => {
                out.extend_from_slice(b"{\"uid\":");
                push(&mut out, &req["uid"]);
                uid_end = Some(out.len());
                for (k, v) in req.iter().filter(|(k, _)| *k != "uid") {
                    out.push(b',');
                    push(&mut out, k);
                    out.push(b':');
                    push(&mut out, v);
                }
                out.push(b'}');
            }
            v => push(&mut out, v),
        }
    }
    out.push(b'}');
    (out, uid_end)
}

/// Appends the JSON of a key or value.
fn push<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    serde_json::to_writer(out, v).expect("encode");
}

/// Where the first deep-nesting placeholder is in an encoded body.
fn deep_marker(body: &[u8]) -> Option<usize> {
    let marker = serde_json::to_vec(DEEP).expect("encode");
    body.windows(marker.len()).position(|w| w == marker)
}

/// Swaps every deep-nesting placeholder for [`DEPTH`] nested arrays.
fn expand_deep(body: Vec<u8>) -> Vec<u8> {
    let marker = serde_json::to_vec(DEEP).expect("encode");
    let deep = [vec![b'['; DEPTH], vec![b']'; DEPTH]].concat();
    let mut out = Vec::with_capacity(body.len() + deep.len());
    let mut rest = &body[..];
    while let Some(at) = rest.windows(marker.len()).position(|w| w == marker) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(&deep);
        rest = &rest[at + marker.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// A mutated review (`webhook`) or ExtenderArgs.
pub fn case(rng: &mut Rng, webhook: bool) -> Case {
    let seeds: &[&str] = if webhook { &REVIEWS } else { &EXTENDER_ARGS };
    let mut value = fixtures::json(rng.pick(seeds));
    let mut what = vec![];
    let special = rng.below(100) < 8;
    if special && !webhook {
        let body = json!({"Pod": value["Pod"].take(), "Nodes": {"items": null}});
        let expect = Expect { ok: true, ..Expect::default() };
        return Case {
            body: serde_json::to_vec(&body).expect("encode"),
            content_type: Some("application/json"),
            what: vec!["nodes-items-null"],
            expect,
        };
    }
    if special {
        value["apiVersion"] = V1BETA1.into();
        what.push("v1beta1");
    }
    for _ in 0..rng.below(if special { 2 } else { 3 }) + usize::from(!special) {
        what.push(mutate_value(rng, &mut value));
    }
    let (encoded, uid_end) = encode(&value);
    // A reader gives up at the first deep nesting (serde_json at depth 128), as at a cut.
    let deep_at = what.contains(&"deep-nesting").then(|| deep_marker(&encoded)).flatten();
    let full = if deep_at.is_some() { expand_deep(encoded) } else { encoded };
    let (body, readable) = match rng.below(100) {
        0..15 if !full.is_empty() => {
            what.push("truncated");
            let cut = rng.below(full.len());
            (full[..cut].to_vec(), Some(deep_at.map_or(cut, |d| d.min(cut))))
        }
        15..20 => {
            what.push("invalid-utf8");
            let mut body = full;
            let at = rng.below(body.len() + 1);
            body.splice(at..at, [0xff, 0xc3, 0x28]);
            (body, Some(0))
        }
        20..25 => {
            what.push("not-json");
            value = Value::Null; // no review to read a uid from
            (rng.pick(&NOT_JSON).to_vec(), Some(0))
        }
        _ => (full, deep_at),
    };
    // The uid can be read when it ends before the first byte a reader cannot get past.
    let uid = value["request"]["uid"]
        .as_str()
        .filter(|_| webhook && uid_end.is_some_and(|end| readable.is_none_or(|r| end <= r)));
    let api_version = (webhook && readable.is_none() && value["apiVersion"] == V1BETA1).then_some(V1BETA1);
    let expect = Expect { uid: uid.map(str::to_string), api_version, ok: webhook };
    let content_type = rng.pick(&[
        Some("application/json"),
        Some("application/json"),
        Some("application/json"),
        Some("application/json"),
        Some("application/json"),
        Some("application/json"),
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=utf-16"),
    ]);
    Case { body, content_type, what, expect }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uid_comes_first_in_the_request_and_its_end_is_known() {
        let (body, end) = encode(&json!({"apiVersion": "v1", "request": {"kind": {}, "uid": "u-1"}}));
        let text = String::from_utf8(body).unwrap();
        assert_eq!(text, r#"{"apiVersion":"v1","request":{"uid":"u-1","kind":{}}}"#);
        assert_eq!(&text[..end.unwrap()], r#"{"apiVersion":"v1","request":{"uid":"u-1""#);
    }

    #[test]
    fn deep_placeholders_become_nested_arrays() {
        let (body, _) = encode(&json!({"a": DEEP}));
        let body = expand_deep(body);
        assert_eq!(body.len(), 6 + 2 * DEPTH);
        assert!(body.starts_with(b"{\"a\":[[[") && body.ends_with(b"]]]}"));
    }

    #[test]
    fn a_truncated_review_expects_the_uid_only_when_the_cut_follows_it() {
        let mut rng = Rng::new(7);
        let (mut after, mut before) = (0, 0);
        for _ in 0..2_000 {
            let c = case(&mut rng, true);
            if c.what.contains(&"truncated") && serde_json::from_slice::<Value>(&c.body).is_err() {
                let text = String::from_utf8_lossy(&c.body);
                match &c.expect.uid {
                    Some(uid) => {
                        after += 1;
                        assert!(text.contains(&serde_json::to_string(uid).unwrap()), "{text}");
                    }
                    None => before += 1,
                }
            }
        }
        assert!(after > 20 && before > 20, "{after} cut after the uid, {before} before");
    }

    #[test]
    fn the_same_seed_gives_the_same_cases() {
        let bodies = |seed| {
            let mut rng = Rng::new(seed);
            (0..200).map(|i| case(&mut rng, i % 2 == 0).body).collect::<Vec<_>>()
        };
        assert_eq!(bodies(1), bodies(1));
        assert_ne!(bodies(1), bodies(2));
    }
}
