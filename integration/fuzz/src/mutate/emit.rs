//! Writes seed trees back out as JSON or block YAML, applying edits on the way: no tree is
//! cloned per input, the edits are looked up by pre-order index while the seed is written.

use super::tree::Node;

/// A replacement: a tree, or bytes written verbatim (what no tree can hold: out-of-range
/// numbers, invalid UTF-8, unbalanced nesting, raw control characters).
#[derive(Debug, Clone)]
pub enum Value {
    /// Written as any node is.
    Tree(Node),
    /// Written as is.
    Raw(Vec<u8>),
}

/// One change to the node at a pre-order index.
#[derive(Debug, Clone)]
pub enum Edit {
    /// The node is written as this instead.
    Replace(Value),
    /// The node, a member or element, is left out.
    Delete,
    /// The member or element is written twice (the copy without edits): a duplicate key.
    Duplicate,
    /// The member is written under another key.
    Rename(String),
    /// The children of a mapping or sequence are written in reverse order.
    Reverse,
    /// One more member (or element) first or last.
    Add {
        /// Its key (ignored in a sequence).
        key: String,
        /// Its value.
        value: Value,
        /// Before the existing members rather than after.
        front: bool,
    },
    /// The node wrapped `depth` times in `[..]`, or in `{"a":..}` when `map`.
    Nest {
        /// How many levels.
        depth: usize,
        /// Mappings rather than sequences.
        map: bool,
    },
}

/// How documents are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Compact JSON; several documents are separated by newlines.
    Json,
    /// Block YAML; several documents are separated by `---`.
    Yaml,
}

/// Writes `docs` with `edits` (indices count nodes across all documents, in order).
pub fn emit(docs: &[Node], edits: &[(usize, Edit)], style: Style, out: &mut Vec<u8>) {
    let mut e = Emitter { edits, index: 0, style, out };
    for (i, doc) in docs.iter().enumerate() {
        match style {
            Style::Json if i > 0 => e.out.push(b'\n'),
            Style::Yaml if i > 0 => e.out.extend_from_slice(b"---"),
            _ => {}
        }
        e.node(doc, 0);
        if style == Style::Yaml && !e.out.ends_with(b"\n") {
            e.out.push(b'\n');
        }
    }
}

struct Emitter<'a> {
    edits: &'a [(usize, Edit)],
    /// Pre-order index of the next node written.
    index: usize,
    style: Style,
    out: &'a mut Vec<u8>,
}

impl Emitter<'_> {
    fn edit(&self, at: usize) -> Option<&Edit> {
        self.edits.iter().find(|(i, _)| *i == at).map(|(_, e)| e)
    }

    /// Writes a node in value position (YAML: right after `key:` or `-`, up to its newline).
    fn node(&mut self, n: &Node, indent: usize) {
        let at = self.index;
        match self.edit(at) {
            Some(Edit::Replace(v)) => {
                let v = v.clone();
                self.value(&v, indent);
                self.index = at + n.size();
            }
            Some(&Edit::Nest { depth, map }) => {
                let (open, close): (&[u8], &[u8]) = if map { (b"{\"a\":", b"}") } else { (b"[", b"]") };
                if self.style == Style::Yaml {
                    self.out.push(b' ');
                }
                (0..depth).for_each(|_| self.out.extend_from_slice(open));
                self.index = at;
                let mut inner = Emitter { edits: &[], index: 0, style: Style::Json, out: &mut *self.out };
                inner.node(n, 0);
                (0..depth).for_each(|_| self.out.extend_from_slice(close));
                self.index = at + n.size();
                if self.style == Style::Yaml {
                    self.out.push(b'\n');
                }
            }
            _ => self.inner(n, at, indent),
        }
    }

    fn value(&mut self, v: &Value, indent: usize) {
        match v {
            Value::Tree(n) => Emitter { edits: &[], index: 0, style: self.style, out: &mut *self.out }.node(n, indent),
            Value::Raw(bytes) if self.style == Style::Yaml => {
                self.out.push(b' ');
                self.out.extend_from_slice(bytes);
                self.out.push(b'\n');
            }
            Value::Raw(bytes) => self.out.extend_from_slice(bytes),
        }
    }

    fn inner(&mut self, n: &Node, at: usize, indent: usize) {
        self.index = at + 1;
        match n {
            Node::Arr(items) => {
                let children: Vec<(Option<&str>, &Node)> = items.iter().map(|n| (None, n)).collect();
                self.children(&children, at, indent, false);
            }
            Node::Obj(members) => {
                let children: Vec<(Option<&str>, &Node)> = members.iter().map(|(k, n)| (Some(k.as_str()), n)).collect();
                self.children(&children, at, indent, true);
            }
            scalar => {
                if self.style == Style::Yaml {
                    self.out.push(b' ');
                }
                self.scalar(scalar);
                if self.style == Style::Yaml {
                    self.out.push(b'\n');
                }
            }
        }
        self.index = at + n.size();
    }

    fn scalar(&mut self, n: &Node) {
        match n {
            Node::Null => self.out.extend_from_slice(b"null"),
            Node::Bool(b) => self.out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Node::Num(s) => self.out.extend_from_slice(s.as_bytes()),
            Node::Str(s) if self.style == Style::Yaml && plain_yaml(s) => self.out.extend_from_slice(s.as_bytes()),
            Node::Str(s) => json_string(self.out, s),
            Node::Arr(_) | Node::Obj(_) => unreachable!("containers are written by `children`"),
        }
    }

    /// The members of a mapping or elements of a sequence starting at index `at`.
    fn children(&mut self, children: &[(Option<&str>, &Node)], at: usize, indent: usize, map: bool) {
        let mut starts = Vec::with_capacity(children.len());
        let mut next = at + 1;
        for (_, n) in children {
            starts.push(next);
            next += n.size();
        }
        let mut order: Vec<usize> = (0..children.len()).collect();
        if matches!(self.edit(at), Some(Edit::Reverse)) {
            order.reverse();
        }
        let add = match self.edit(at) {
            Some(Edit::Add { key, value, front }) => Some((key.clone(), value.clone(), *front)),
            _ => None,
        };
        let mut w = Writer { first: true, map, indent, empty: true };
        w.open(self);
        if let Some((key, value, true)) = &add {
            w.member(self, Some(key), |e| e.value(value, indent + 2));
        }
        for i in order {
            let (key, n) = children[i];
            self.index = starts[i];
            match self.edit(starts[i]).cloned() {
                Some(Edit::Delete) => continue,
                Some(Edit::Rename(k)) => w.member(self, Some(&k), |e| e.node(n, indent + 2)),
                Some(Edit::Duplicate) => {
                    w.member(self, key, |e| e.node(n, indent + 2));
                    let style = self.style;
                    w.member(self, key, |e| {
                        Emitter { edits: &[], index: 0, style, out: &mut *e.out }.node(n, indent + 2)
                    });
                }
                _ => w.member(self, key, |e| e.node(n, indent + 2)),
            }
        }
        if let Some((key, value, false)) = &add {
            w.member(self, Some(key), |e| e.value(value, indent + 2));
        }
        w.close(self);
    }
}

/// Separators and indentation of one mapping or sequence.
struct Writer {
    first: bool,
    map: bool,
    indent: usize,
    empty: bool,
}

impl Writer {
    fn open(&mut self, e: &mut Emitter<'_>) {
        if e.style == Style::Json {
            e.out.push(if self.map { b'{' } else { b'[' });
        }
    }

    fn member(&mut self, e: &mut Emitter<'_>, key: Option<&str>, value: impl FnOnce(&mut Emitter<'_>)) {
        self.empty = false;
        match e.style {
            Style::Json => {
                if !std::mem::take(&mut self.first) {
                    e.out.push(b',');
                }
                if let (true, Some(k)) = (self.map, key) {
                    json_string(e.out, k);
                    e.out.push(b':');
                }
            }
            Style::Yaml => {
                if std::mem::take(&mut self.first) {
                    e.out.push(b'\n');
                }
                e.out.extend(std::iter::repeat_n(b' ', self.indent));
                match (self.map, key) {
                    (true, Some(k)) if plain_yaml(k) => e.out.extend_from_slice(k.as_bytes()),
                    (true, Some(k)) => json_string(e.out, k),
                    _ => e.out.push(b'-'),
                }
                if self.map {
                    e.out.push(b':');
                }
            }
        }
        value(e);
    }

    fn close(&mut self, e: &mut Emitter<'_>) {
        match e.style {
            Style::Json => e.out.push(if self.map { b'}' } else { b']' }),
            Style::Yaml if self.empty => e.out.extend_from_slice(if self.map { b" {}\n" } else { b" []\n" }),
            Style::Yaml => {}
        }
    }
}

/// Whether a YAML plain scalar says exactly `s` (a conservative subset).
fn plain_yaml(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b'-' | b'_'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        )
}

/// A JSON string literal (also a valid YAML double-quoted scalar).
pub fn json_string(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(json: &str) -> Node {
        serde_json::from_str(json).unwrap()
    }

    fn json(doc: &Node, edits: &[(usize, Edit)]) -> String {
        let mut out = Vec::new();
        emit(std::slice::from_ref(doc), edits, Style::Json, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn unedited_json_round_trips_in_document_order() {
        let src = r#"{"kind":{"kind":"Pod"},"object":{"a":[1,"x",null,true]},"b":{}}"#;
        assert_eq!(json(&tree(src), &[]), src);
    }

    #[test]
    fn edits_apply_at_their_pre_order_index() {
        let doc = tree(r#"{"a":1,"b":[2,3],"c":"x"}"#);
        assert_eq!(json(&doc, &[(3, Edit::Delete)]), r#"{"a":1,"b":[3],"c":"x"}"#);
        assert_eq!(json(&doc, &[(1, Edit::Duplicate)]), r#"{"a":1,"a":1,"b":[2,3],"c":"x"}"#);
        assert_eq!(json(&doc, &[(5, Edit::Rename("d".into()))]), r#"{"a":1,"b":[2,3],"d":"x"}"#);
        assert_eq!(json(&doc, &[(0, Edit::Reverse)]), r#"{"c":"x","b":[2,3],"a":1}"#);
        assert_eq!(json(&doc, &[(2, Edit::Replace(Value::Raw(b"1e999".to_vec())))]), r#"{"a":1,"b":1e999,"c":"x"}"#);
        assert_eq!(json(&doc, &[(4, Edit::Nest { depth: 2, map: false })]), r#"{"a":1,"b":[2,[[3]]],"c":"x"}"#);
        let add = Edit::Add { key: "z".into(), value: Value::Tree(Node::Null), front: true };
        assert_eq!(json(&doc, &[(0, add), (5, Edit::Delete)]), r#"{"z":null,"a":1,"b":[2,3]}"#);
    }

    #[test]
    fn yaml_output_decodes_to_the_same_tree() {
        let doc = tree(
            r#"{"kind":"Node","metadata":{"name":"n1","labels":{}},"ips":["10.0.0.1","true"],"n":[{"a":1,"b":[]}]}"#,
        );
        let mut out = Vec::new();
        emit(std::slice::from_ref(&doc), &[], Style::Yaml, &mut out);
        let text = String::from_utf8(out).unwrap();
        let back: Node = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, doc, "{text}");
    }
}
