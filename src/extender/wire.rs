//! Wire types of the scheduler extender protocol, mirroring `k8s.io/kube-scheduler/extender/v1`
//! (`ExtenderArgs`, `ExtenderFilterResult`, `HostPriority`). Those Go structs have no json tags,
//! so keys are PascalCase; lower-case aliases accept hand-written clients too.
//!
//! Decoding reads only what decisions need: a request's Node objects stay raw JSON and are
//! passed back untouched in the filter result, so a node list of tens of MB is never rebuilt.

use std::{borrow::Cow, collections::BTreeMap};

use serde::{Deserialize, Deserializer, Serialize, de, de::DeserializeSeed};
use serde_json::value::RawValue;

use crate::{cluster::pod::PodFacts, knobs};

/// `ExtenderArgs`: the body of both `/filter` and `/prioritize`.
#[derive(Debug, Deserialize)]
pub struct ExtenderArgs<'a> {
    /// The pod being scheduled.
    #[serde(rename = "Pod", alias = "pod")]
    pub pod: Option<PodFacts>,
    /// Full nodes (`nodeCacheCapable: false`).
    #[serde(rename = "Nodes", alias = "nodes", borrow, default)]
    pub nodes: Option<RequestNodeList<'a>>,
    /// Node names (`nodeCacheCapable: true`), borrowed from the body unless escaped.
    #[serde(
        rename = "NodeNames",
        alias = "nodenames",
        alias = "nodeNames",
        borrow,
        default,
        deserialize_with = "bounded_option"
    )]
    pub node_names: Option<Vec<Text<'a>>>,
}

thread_local! {
    /// Most list elements [`ExtenderArgs`] decodes on this thread ([`with_max_nodes`]).
    static MAX_NODES: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// Runs `decode` with node lists limited to `max` elements. Checked while decoding, not after:
/// a 64 MiB body of one-letter names would otherwise become 16 million list entries (400 MB)
/// before its length could be looked at.
pub fn with_max_nodes<R>(max: usize, decode: impl FnOnce() -> R) -> R {
    let before = MAX_NODES.replace(max);
    let out = decode();
    MAX_NODES.set(before);
    out
}

/// The error a list longer than [`with_max_nodes`] fails with; [`is_too_many_nodes`] finds it.
const TOO_MANY_NODES: &str = "more nodes than the limit";

/// Whether a decode error is the node limit's.
pub fn is_too_many_nodes(e: &serde_json::Error) -> bool {
    e.to_string().starts_with(TOO_MANY_NODES)
}

/// A list of at most [`MAX_NODES`] elements; `null` is an empty list.
fn bounded<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(bounded_option(d)?.unwrap_or_default())
}

/// As [`bounded`], keeping `null` apart from an empty list.
fn bounded_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Vec<T>>, D::Error> {
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> de::Visitor<'de> for V<T> {
        type Value = Option<Vec<T>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list or null")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(self)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let max = MAX_NODES.get();
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(item) = seq.next_element()? {
                if out.len() == max {
                    return Err(de::Error::custom(format_args!("{TOO_MANY_NODES} of {max}")));
                }
                out.push(item);
            }
            Ok(Some(out))
        }
    }
    d.deserialize_option(V(std::marker::PhantomData))
}

/// A JSON string borrowed from the body unless it has escapes. serde's own `Cow<str>` impl
/// always allocates when nested in a `Vec` (`#[serde(borrow)]` only reaches direct fields),
/// which cost one allocation and free per node name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A `v1.NodeList` whose items are kept raw.
#[derive(Debug, Deserialize)]
pub struct RequestNodeList<'a> {
    /// The nodes; `null` is an empty list.
    #[serde(borrow, default, deserialize_with = "bounded")]
    pub items: Vec<RequestNode<'a>>,
}

/// One request node: its raw JSON plus the fields decisions read.
#[derive(Debug)]
pub struct RequestNode<'a> {
    /// The node exactly as received.
    pub raw: &'a RawValue,
    /// `metadata.name`.
    pub name: Cow<'a, str>,
    /// `status.addresses` as (type, address).
    pub addresses: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// The storage operator's unschedulable annotation parsed as true.
    pub storage_unschedulable: bool,
}

impl<'de: 'a, 'a> Deserialize<'de> for RequestNode<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: &'a RawValue = Deserialize::deserialize(d)?;
        let mut fields = NodeFields::default();
        let mut de = serde_json::Deserializer::from_str(raw.get());
        match NodeSeed(&mut fields).deserialize(&mut de) {
            // Stopped on purpose once every field was read: the raw value was checked already.
            Err(_) if fields.stopped => {}
            Err(e) => return Err(de::Error::custom(e)),
            Ok(()) => de.end().map_err(de::Error::custom)?,
        }
        Ok(Self {
            raw,
            name: fields.name,
            addresses: fields.addresses.into_iter().map(|a| (a.kind, a.address)).collect(),
            storage_unschedulable: fields.unschedulable.0.as_deref().and_then(knobs::parse_bool) == Some(true),
        })
    }
}

/// What decisions read of a request Node, filled while decoding it. The Node's JSON was already
/// scanned once as a raw value, so decoding stops as soon as `metadata` and `status.addresses`
/// are read: the rest of `status` (conditions, images: most of a Node) is never scanned again.
#[derive(Default)]
struct NodeFields<'a> {
    name: Cow<'a, str>,
    addresses: Vec<AddressLite<'a>>,
    unschedulable: UnschedulableAnnotation,
    metadata_read: bool,
    status_read: bool,
    stopped: bool,
}

impl NodeFields<'_> {
    /// Ends decoding with an error the caller recognises by `stopped`, once nothing is left to read.
    fn stop_if_done<E: de::Error>(&mut self) -> Result<(), E> {
        if self.metadata_read && self.status_read {
            self.stopped = true;
            return Err(E::custom("node fields read"));
        }
        Ok(())
    }
}

/// Decodes a Node object into [`NodeFields`].
struct NodeSeed<'s, 'a>(&'s mut NodeFields<'a>);

impl<'de: 'a, 'a> de::DeserializeSeed<'de> for NodeSeed<'_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de: 'a, 'a> de::Visitor<'de> for NodeSeed<'_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a Node object")
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let fields = self.0;
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match &*key {
                "metadata" => {
                    let meta: NodeMetaLite<'de> = map.next_value()?;
                    fields.name = meta.name;
                    fields.unschedulable = meta.annotations;
                    fields.metadata_read = true;
                    fields.stop_if_done()?;
                }
                "status" => map.next_value_seed(StatusSeed(&mut *fields))?,
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Decodes a NodeStatus up to its `addresses` (`null` and a missing status read as none).
struct StatusSeed<'s, 'a>(&'s mut NodeFields<'a>);

impl<'de: 'a, 'a> de::DeserializeSeed<'de> for StatusSeed<'_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de: 'a, 'a> de::Visitor<'de> for StatusSeed<'_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a NodeStatus object")
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.0.status_read = true;
        self.0.stop_if_done()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let fields = self.0;
        while let Some(key) = map.next_key::<Text<'de>>()? {
            if &*key == "addresses" {
                fields.addresses = map.next_value::<Option<Vec<AddressLite<'de>>>>()?.unwrap_or_default();
                fields.status_read = true;
                fields.stop_if_done()?;
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        fields.status_read = true;
        fields.stop_if_done()
    }
}

#[derive(Default, Deserialize)]
struct NodeMetaLite<'a> {
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    #[serde(default)]
    annotations: UnschedulableAnnotation,
}

#[derive(Deserialize)]
struct AddressLite<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    address: Cow<'a, str>,
}

/// Picks one annotation out of the map without materialising the others.
#[derive(Default)]
struct UnschedulableAnnotation(Option<String>);

impl<'de> Deserialize<'de> for UnschedulableAnnotation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = UnschedulableAnnotation;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of annotations")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(UnschedulableAnnotation(None))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut found = None;
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    if &*key == knobs::NODE_UNSCHEDULABLE {
                        found = Some(map.next_value::<String>()?);
                    } else {
                        map.next_value::<de::IgnoredAny>()?;
                    }
                }
                Ok(UnschedulableAnnotation(found))
            }
        }
        d.deserialize_any(V)
    }
}

/// `ExtenderFilterResult`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FilterResult<'a> {
    /// Kept nodes (full-node mode), raw as received.
    pub nodes: Option<ResponseNodeList<'a>>,
    /// Kept node names (names mode).
    pub node_names: Option<Vec<&'a str>>,
    /// Dropped nodes that preemption might help, with the reason.
    pub failed_nodes: BTreeMap<&'a str, String>,
    /// Dropped nodes nothing on the node can fix, with the reason.
    pub failed_and_unresolvable_nodes: BTreeMap<&'a str, String>,
    /// Non-empty only for an extender error (the scheduler then fails the attempt).
    pub error: String,
}

impl FilterResult<'static> {
    /// An answer that fails the call with `error`, the protocol's way to report an extender
    /// failure (kube-scheduler shows it on the pod and retries later).
    pub fn error(error: String) -> Self {
        Self {
            nodes: None,
            node_names: None,
            failed_nodes: BTreeMap::new(),
            failed_and_unresolvable_nodes: BTreeMap::new(),
            error,
        }
    }
}

/// A `v1.NodeList` of raw nodes.
#[derive(Debug, Serialize)]
pub struct ResponseNodeList<'a> {
    /// Always `{}`.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The kept nodes, untouched.
    pub items: Vec<&'a RawValue>,
}

/// `HostPriority`: one element of the prioritize response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostPriority {
    /// Node name.
    pub host: String,
    /// Raw score (not clamped to 0–10; see prioritize.rs).
    pub score: i64,
}

/// A [`HostPriority`] that borrows its host name, so encoding copies no name.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostScore<'a> {
    /// Node name.
    pub host: &'a str,
    /// Raw score.
    pub score: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(json: &str) -> RequestNode<'_> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn node_fields_are_read_whatever_the_key_order_and_the_raw_node_is_kept_whole() {
        let addresses = vec![(Cow::from("InternalIP"), Cow::from("10.0.0.1"))];
        for json in [
            r#"{"metadata":{"name":"n1","annotations":{"x":"1"}},"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.1"}],"images":[1]}}"#,
            r#"{"status":{"images":[],"addresses":[{"address":"10.0.0.1","type":"InternalIP"}]},"kind":"Node","metadata":{"name":"n\u0031"}}"#,
        ] {
            let n = node(json);
            assert_eq!((n.name.as_ref(), &n.addresses, n.raw.get()), ("n1", &addresses, json));
        }
        let bare = node(r#"{"metadata":{"name":"n2"},"status":null}"#);
        assert!(bare.addresses.is_empty() && !bare.storage_unschedulable);
    }

    #[test]
    fn null_items_are_an_empty_list_and_lists_past_the_node_limit_fail_while_decoding() {
        let args: ExtenderArgs<'_> = serde_json::from_str(r#"{"Nodes":{"items":null}}"#).unwrap();
        assert!(args.nodes.unwrap().items.is_empty());
        let args: ExtenderArgs<'_> = serde_json::from_str(r#"{"NodeNames":null}"#).unwrap();
        assert!(args.node_names.is_none());
        let body = r#"{"NodeNames":["a","b","c"]}"#;
        let err = with_max_nodes(2, || serde_json::from_str::<ExtenderArgs<'_>>(body)).unwrap_err();
        assert!(is_too_many_nodes(&err), "{err}");
        assert_eq!(
            with_max_nodes(3, || serde_json::from_str::<ExtenderArgs<'_>>(body)).unwrap().node_names.unwrap().len(),
            3
        );
        let nodes = r#"{"Nodes":{"items":[{},{}]}}"#;
        assert!(with_max_nodes(1, || serde_json::from_str::<ExtenderArgs<'_>>(nodes)).is_err());
    }

    #[test]
    fn a_node_that_is_not_an_object_or_has_wrong_typed_fields_is_an_error() {
        for json in [r#"5"#, r#"{"metadata":{"name":5}}"#, r#"{"status":{"addresses":"x"}}"#] {
            assert!(serde_json::from_str::<RequestNode<'_>>(json).is_err(), "{json}");
        }
    }
}
