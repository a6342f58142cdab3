//! Wire types of the scheduler extender protocol, mirroring `k8s.io/kube-scheduler/extender/v1`
//! (`ExtenderArgs`, `ExtenderFilterResult`, `HostPriority`). Those Go structs have no json tags,
//! so keys are PascalCase; lower-case aliases accept hand-written clients too.
//!
//! Decoding reads only what decisions need: a request's Node objects stay raw JSON and are
//! passed back untouched in the filter result, so a node list of tens of MB is never rebuilt.

use std::{borrow::Cow, collections::BTreeMap};

use serde::{Deserialize, Deserializer, Serialize, de};
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
    #[serde(rename = "NodeNames", alias = "nodenames", alias = "nodeNames", borrow, default)]
    pub node_names: Option<Vec<Cow<'a, str>>>,
}

/// A `v1.NodeList` whose items are kept raw.
#[derive(Debug, Deserialize)]
pub struct RequestNodeList<'a> {
    /// The nodes.
    #[serde(borrow, default)]
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
        let lite: NodeLite<'a> = serde_json::from_str(raw.get()).map_err(de::Error::custom)?;
        Ok(Self {
            raw,
            name: lite.metadata.name,
            addresses: lite.status.addresses.into_iter().map(|a| (a.kind, a.address)).collect(),
            storage_unschedulable: lite.metadata.annotations.0.as_deref().and_then(knobs::parse_bool) == Some(true),
        })
    }
}

#[derive(Deserialize)]
struct NodeLite<'a> {
    #[serde(borrow, default)]
    metadata: NodeMetaLite<'a>,
    #[serde(borrow, default)]
    status: NodeStatusLite<'a>,
}

#[derive(Default, Deserialize)]
struct NodeMetaLite<'a> {
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    #[serde(default)]
    annotations: UnschedulableAnnotation,
}

#[derive(Default, Deserialize)]
struct NodeStatusLite<'a> {
    #[serde(borrow, default, deserialize_with = "nullable")]
    addresses: Vec<AddressLite<'a>>,
}

#[derive(Deserialize)]
struct AddressLite<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    address: Cow<'a, str>,
}

fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
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
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == knobs::NODE_UNSCHEDULABLE {
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
