//! Decoding of one request Node: its raw JSON kept whole, plus the few fields decisions read
//! (name, addresses, the storage-unschedulable annotation), without scanning the rest twice.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, de, de::DeserializeSeed};
use serde_json::value::RawValue;

use super::{RequestNode, Text};
use crate::knobs;

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
