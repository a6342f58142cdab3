//! Wire types of the scheduler extender protocol, mirroring `k8s.io/kube-scheduler/extender/v1`
//! (`ExtenderArgs`, `ExtenderFilterResult`, `HostPriority`). Those Go structs have no json tags,
//! so keys are PascalCase; lower-case aliases accept hand-written clients too.
//!
//! Decoding reads only what decisions need: a request's Node objects stay raw JSON and are
//! passed back untouched in the filter result, so a node list of tens of MB is never rebuilt.

mod node;
mod response;

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, de};
use serde_json::value::RawValue;

use crate::cluster::pod::PodFacts;

pub use self::response::{FilterResult, HostPriority, HostScore, ResponseNodeList};

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
