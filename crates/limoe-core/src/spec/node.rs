//! A YAML document as a tree of nodes that remember where each value came from.
//!
//! Typed configuration is deserialized from this tree (see [`super::de`]), so every error
//! can name the file position or the `--set` argument that produced the offending value.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use serde_saphyr::Spanned;

use super::path::{KeyPath, Segment};

/// Where a value of a spec came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A position in the spec file (1-based line and column).
    File {
        /// 1-based line.
        line: u64,
        /// 1-based column.
        column: u64,
    },
    /// A `--set PATH=VALUE` argument, kept verbatim.
    Override(String),
    /// Not written anywhere: a built-in default.
    Default,
}

impl Origin {
    fn from_location(location: &serde_saphyr::Location) -> Origin {
        if location.line() == 0 {
            Origin::Default
        } else {
            Origin::File {
                line: location.line(),
                column: location.column(),
            }
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { line, column } => write!(f, "{line}:{column}"),
            Origin::Override(arg) => write!(f, "--set {arg}"),
            Origin::Default => f.write_str("(default)"),
        }
    }
}

/// One value of the tree with its origin.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where the value was written.
    pub origin: Origin,
}

/// The shapes a YAML value can take.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Vec<Entry>),
}

/// One key of a mapping, with the key's own position.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// Where the key was written.
    pub key_origin: Origin,
    /// The value under the key.
    pub node: Node,
}

impl Value {
    /// A short description of the kind of value, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// A node with a built-in default origin.
    pub fn new(value: Value, origin: Origin) -> Node {
        Node { value, origin }
    }

    /// An empty mapping.
    pub fn empty_map(origin: Origin) -> Node {
        Node::new(Value::Map(Vec::new()), origin)
    }

    /// Parses YAML text into a tree (syntax errors come back with line and column).
    pub fn parse_yaml(text: &str) -> Result<Node, serde_saphyr::Error> {
        if text.trim().is_empty() {
            return Ok(Node::empty_map(Origin::File { line: 1, column: 1 }));
        }
        serde_saphyr::from_str::<Node>(text)
    }

    /// Parses one YAML value given on the command line, tagging it with `origin`.
    pub fn parse_value(text: &str, origin: &Origin) -> Result<Node, serde_saphyr::Error> {
        let mut node = if text.trim().is_empty() {
            Node::new(Value::Null, Origin::Default)
        } else {
            serde_saphyr::from_str::<Node>(text)?
        };
        node.set_origin(origin);
        Ok(node)
    }

    fn set_origin(&mut self, origin: &Origin) {
        self.origin = origin.clone();
        match &mut self.value {
            Value::Seq(items) => items.iter_mut().for_each(|n| n.set_origin(origin)),
            Value::Map(entries) => entries.iter_mut().for_each(|e| {
                e.key_origin = origin.clone();
                e.node.set_origin(origin);
            }),
            _ => {}
        }
    }

    /// The value under `key` when this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.node)
    }

    /// The entry under `key` when this node is a mapping.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    /// The node at `path`, if every step exists.
    pub fn at(&self, path: &KeyPath) -> Option<&Node> {
        path.segments()
            .iter()
            .try_fold(self, |node, seg| match seg {
                Segment::Key(k) => node.get(k),
                Segment::Index(i) => match &node.value {
                    Value::Seq(items) => items.get(*i),
                    _ => None,
                },
            })
    }

    /// The best position to report for `path`: the key of the deepest entry that exists
    /// (a missing value is reported where its parent is written).
    pub fn origin_of(&self, path: &KeyPath) -> Origin {
        let mut node = self;
        let mut origin = self.origin.clone();
        for seg in path.segments() {
            match seg {
                Segment::Key(k) => match node.entry(k) {
                    Some(entry) => {
                        origin = entry.key_origin.clone();
                        node = &entry.node;
                    }
                    None => break,
                },
                Segment::Index(i) => match &node.value {
                    Value::Seq(items) if *i < items.len() => {
                        node = &items[*i];
                        origin = node.origin.clone();
                    }
                    _ => break,
                },
            }
        }
        origin
    }

    /// Removes the value at `path` (a mapping entry or a list item); true when it existed.
    pub fn remove(&mut self, path: &KeyPath) -> bool {
        let Some((last, parent)) = path.segments().split_last() else {
            return false;
        };
        let Some(parent) = self.at_mut(parent) else {
            return false;
        };
        match (&mut parent.value, last) {
            (Value::Map(entries), Segment::Key(k)) => {
                let before = entries.len();
                entries.retain(|e| &e.key != k);
                entries.len() != before
            }
            (Value::Seq(items), Segment::Index(i)) if *i < items.len() => {
                items.remove(*i);
                true
            }
            _ => false,
        }
    }

    fn at_mut(&mut self, segments: &[Segment]) -> Option<&mut Node> {
        segments
            .iter()
            .try_fold(self, |node, seg| match (seg, &mut node.value) {
                (Segment::Key(k), Value::Map(entries)) => entries
                    .iter_mut()
                    .find(|e| &e.key == k)
                    .map(|e| &mut e.node),
                (Segment::Index(i), Value::Seq(items)) => items.get_mut(*i),
                _ => None,
            })
    }

    /// Sets `path` to `value`, creating missing mappings on the way (tagged with the value's
    /// origin). Fails with a message when a step crosses a value that is not a mapping or
    /// an index is out of range.
    pub fn set(&mut self, path: &KeyPath, value: Node) -> Result<(), String> {
        let mut node = self;
        let mut walked = KeyPath::root();
        for seg in path.segments() {
            node = node.child_or_insert(seg, &value.origin, &walked)?;
            walked = walked.join(seg.clone());
        }
        *node = value;
        Ok(())
    }

    fn child_or_insert(
        &mut self,
        seg: &Segment,
        origin: &Origin,
        here: &KeyPath,
    ) -> Result<&mut Node, String> {
        if matches!(self.value, Value::Null) {
            self.value = Value::Map(Vec::new());
        }
        let kind = self.value.kind_name();
        match (seg, &mut self.value) {
            (Segment::Key(k), Value::Map(entries)) => {
                let position = match entries.iter().position(|e| &e.key == k) {
                    Some(p) => p,
                    None => {
                        entries.push(Entry {
                            key: k.clone(),
                            key_origin: origin.clone(),
                            node: Node::new(Value::Null, origin.clone()),
                        });
                        entries.len() - 1
                    }
                };
                Ok(&mut entries[position].node)
            }
            (Segment::Index(i), Value::Seq(items)) => {
                let len = items.len();
                items.get_mut(*i).ok_or_else(|| {
                    format!("index {i} of `{here}` is out of range: the list has {len} item(s)")
                })
            }
            (Segment::Index(i), _) => Err(format!(
                "`{here}` is {kind}, not a list; it has no item {i}"
            )),
            (Segment::Key(k), _) => Err(format!(
                "`{here}` is {kind}, not a mapping; it has no key `{k}`"
            )),
        }
    }
}

thread_local! {
    /// Hands a node through serde from [`super::de::NodeDeserializer`] to `Node::deserialize`
    /// without losing its origins (serde has no way to pass a value through a visitor).
    pub(super) static NODE_HANDOFF: RefCell<Option<Node>> = const { RefCell::new(None) };
}

/// The newtype name under which a [`Node`] asks to be handed over whole.
pub(super) const NODE_MARKER: &str = "__limoe_node";

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_newtype_struct(NODE_MARKER, NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        NODE_HANDOFF
            .with(|slot| slot.borrow_mut().take())
            .ok_or_else(|| E::custom("internal: no node was handed over"))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        let spanned = Spanned::<RawValue>::deserialize(d)?;
        Ok(Node::new(
            spanned.value.0,
            Origin::from_location(&spanned.referenced),
        ))
    }
}

/// A value whose children are [`Node`]s (the value half of a spanned node).
struct RawValue(Value);

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawValue, D::Error> {
        deserializer.deserialize_any(RawValueVisitor).map(RawValue)
    }
}

struct RawValueVisitor;

impl<'de> Visitor<'de> for RawValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let node = map.next_value::<Node>()?;
            entries.push(Entry {
                key: key.value,
                key_origin: Origin::from_location(&key.referenced),
                node,
            });
        }
        Ok(Value::Map(entries))
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.value {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::Float(x) => serializer.serialize_f64(*x),
            Value::Str(s) => serializer.serialize_str(s),
            Value::Seq(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for e in entries {
                    map.serialize_entry(&e.key, &e.node)?;
                }
                map.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_keep_their_positions() {
        let node = Node::parse_yaml("a: 1\nb:\n  c: [x, 2.5]\n").unwrap();
        let b = node.entry("b").unwrap();
        assert_eq!(b.key_origin, Origin::File { line: 2, column: 1 });
        let c = b.node.entry("c").unwrap();
        assert_eq!(c.key_origin, Origin::File { line: 3, column: 3 });
        let Value::Seq(items) = &c.node.value else {
            panic!("expected a list, got {:?}", c.node.value)
        };
        assert_eq!(items[0].value, Value::Str("x".into()));
        assert_eq!(items[1].value, Value::Float(2.5));
        assert_eq!(
            items[1].origin,
            Origin::File {
                line: 3,
                column: 10
            }
        );
    }

    #[test]
    fn set_creates_maps_and_remove_deletes() {
        let mut node = Node::parse_yaml("a: {b: 1}").unwrap();
        let path: KeyPath = "a.c.d".parse().unwrap();
        let origin = Origin::Override("a.c.d=3".into());
        node.set(&path, Node::new(Value::Int(3), origin.clone()))
            .unwrap();
        assert_eq!(node.at(&path).unwrap().value, Value::Int(3));
        assert_eq!(node.origin_of(&path), origin);
        assert!(node.remove(&path));
        assert!(node.at(&path).is_none());
        let err = node
            .set(&"a.b.x".parse().unwrap(), Node::new(Value::Null, origin))
            .unwrap_err();
        assert_eq!(err, "`a.b` is an integer, not a mapping; it has no key `x`");
    }

    #[test]
    fn serializes_back_to_the_same_json() {
        let node = Node::parse_yaml("a: [1, true, null, s]\nb: {c: 1.5}").unwrap();
        let json = serde_json::to_string(&node).unwrap();
        assert_eq!(json, r#"{"a":[1,true,null,"s"],"b":{"c":1.5}}"#);
    }
}
