//! Seeds as trees that keep what the decoders care about and `serde_json::Value` loses: member
//! order (the `/mutate` single pass only takes its fast path when `kind` and `operation` come
//! before `object`) and duplicate keys. Without `preserve_order` — a feature this crate must not
//! switch on, as feature unification would turn it on for stork too — `Value` sorts keys.

use std::fmt;

use serde::{
    Deserialize, Deserializer,
    de::{MapAccess, SeqAccess, Visitor},
};

/// A JSON or YAML node. Numbers keep their text.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `null` (YAML `~`, an empty value).
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, as written by [`fmt::Display`] of the decoded value.
    Num(String),
    /// A string.
    Str(String),
    /// A sequence.
    Arr(Vec<Node>),
    /// A mapping, in document order, duplicates kept.
    Obj(Vec<(String, Node)>),
}

/// What a node is, for picking edit sites of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Null, booleans and numbers.
    Scalar,
    /// Strings.
    Str,
    /// Sequences.
    Arr,
    /// Mappings.
    Obj,
}

impl Node {
    /// How many nodes the subtree holds, itself included (the pre-order index of the node after
    /// it is its own index plus this).
    pub fn size(&self) -> usize {
        match self {
            Node::Arr(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            Node::Obj(members) => 1 + members.iter().map(|(_, v)| v.size()).sum::<usize>(),
            _ => 1,
        }
    }

    /// The kind of every node of the subtree, in pre-order.
    pub fn kinds(&self, out: &mut Vec<Kind>) {
        match self {
            Node::Arr(items) => {
                out.push(Kind::Arr);
                items.iter().for_each(|n| n.kinds(out));
            }
            Node::Obj(members) => {
                out.push(Kind::Obj);
                members.iter().for_each(|(_, n)| n.kinds(out));
            }
            Node::Str(_) => out.push(Kind::Str),
            _ => out.push(Kind::Scalar),
        }
    }

    /// The node at pre-order index `index` of this subtree, if there is one.
    pub fn nth(&self, index: usize) -> Option<&Node> {
        if index == 0 {
            return Some(self);
        }
        let mut rest = index - 1;
        let children: Box<dyn Iterator<Item = &Node>> = match self {
            Node::Arr(items) => Box::new(items.iter()),
            Node::Obj(members) => Box::new(members.iter().map(|(_, v)| v)),
            _ => return None,
        };
        for child in children {
            let size = child.size();
            if rest < size {
                return child.nth(rest);
            }
            rest -= size;
        }
        None
    }

    /// Every string of the subtree, keys included: the dictionary edits draw from.
    pub fn strings<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Node::Str(s) => out.push(s),
            Node::Arr(items) => items.iter().for_each(|n| n.strings(out)),
            Node::Obj(members) => members.iter().for_each(|(k, v)| {
                out.push(k);
                v.strings(out);
            }),
            _ => {}
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON or YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Num(v.to_string()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Num(v.to_string()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        // Non-finite YAML floats (`.inf`, `.nan`) have no JSON spelling: keep them as text.
        Ok(if v.is_finite() { Node::Num(v.to_string()) } else { Node::Str(v.to_string()) })
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Arr(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry::<String, Node>()? {
            members.push(member);
        }
        Ok(Node::Obj(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_duplicates_survive_decoding() {
        let n: Node = serde_json::from_str(r#"{"z":1,"a":[true,null],"z":"x"}"#).unwrap();
        let Node::Obj(m) = &n else { panic!("{n:?}") };
        let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a", "z"]);
        assert_eq!(n.size(), 6);
        assert_eq!(n.nth(3), Some(&Node::Bool(true)));
        assert_eq!(n.nth(5), Some(&Node::Str("x".into())));
        assert_eq!(n.nth(6), None);
    }

    #[test]
    fn yaml_decodes_into_the_same_tree() {
        let n: Node = serde_saphyr::from_str("z: 1\na: [true, ~]\n").unwrap();
        let j: Node = serde_json::from_str(r#"{"z":1,"a":[true,null]}"#).unwrap();
        assert_eq!(n, j);
    }
}
