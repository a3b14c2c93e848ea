//! Typed deserialization from a [`Node`] tree that reports every error with its position.
//!
//! serde stops at the first error; [`deserialize_all`] records it, removes the offending
//! value from a copy of the tree (so its default applies) and tries again, collecting all
//! independent errors of a document in one pass.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, Error as _, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use super::diagnostic::{Diagnostic, did_you_mean};
use super::node::{Entry, NODE_HANDOFF, NODE_MARKER, Node, Origin, Value};
use super::path::KeyPath;

/// Deserializes `T` from `root`, collecting every error. `base` is where `root` sits in the
/// whole spec, so that reported paths are complete.
pub fn deserialize_all<T: DeserializeOwned>(
    root: &Node,
    base: &KeyPath,
) -> Result<T, Vec<Diagnostic>> {
    let typed = deserialize_lenient(root, base, |_| {});
    match typed.value {
        Some(value) if typed.diagnostics.is_empty() => Ok(value),
        _ => Err(typed.diagnostics),
    }
}

/// The result of typing a tree while stepping over errors.
pub struct Lenient<T> {
    /// The value typed with every offending entry left out; `None` when an error could not
    /// be stepped over (e.g. a missing required key).
    pub value: Option<T>,
    /// Every error found.
    pub diagnostics: Vec<Diagnostic>,
    /// Paths whose (wrong) values were replaced by their defaults to type the rest; checks
    /// of values next to these may be misleading.
    pub defaulted: Vec<KeyPath>,
}

/// Deserializes `T` from `root`, recording each error, leaving its value out and retrying.
/// `fill` completes the tree before each try (e.g. puts a preset's value where a wrong one
/// was left out).
pub fn deserialize_lenient<T: DeserializeOwned>(
    root: &Node,
    base: &KeyPath,
    fill: impl Fn(&mut Node),
) -> Lenient<T> {
    let mut tree = root.clone();
    fill(&mut tree);
    let mut typed = Lenient {
        value: None,
        diagnostics: Vec::new(),
        defaulted: Vec::new(),
    };
    loop {
        match T::deserialize(NodeDeserializer::new(&tree, KeyPath::root())) {
            Ok(value) => {
                typed.value = Some(value);
                return typed;
            }
            Err(error) => {
                let removable = error.removable_path();
                let unknown_key = matches!(error.kind, Kind::UnknownField { .. });
                typed.diagnostics.push(error.into_diagnostic(base));
                match removable {
                    Some(path) if tree.remove(&path) => {
                        if !unknown_key {
                            typed.defaulted.push(base.concat(&path));
                        }
                        fill(&mut tree);
                    }
                    _ => return typed,
                }
            }
        }
    }
}

/// A deserialization error, located at the node that caused it.
#[derive(Debug)]
pub struct DeError {
    kind: Kind,
    located: Option<(KeyPath, Origin)>,
}

#[derive(Debug)]
enum Kind {
    UnknownField {
        field: String,
        expected: &'static [&'static str],
    },
    UnknownVariant {
        variant: String,
        expected: &'static [&'static str],
    },
    MissingField(&'static str),
    Other(String),
}

impl DeError {
    fn new(kind: Kind) -> DeError {
        DeError {
            kind,
            located: None,
        }
    }

    /// Records where the error happened, unless a deeper node already did.
    fn locate(mut self, path: &KeyPath, origin: &Origin) -> DeError {
        if self.located.is_none() {
            self.located = Some((path.clone(), origin.clone()));
        }
        self
    }

    /// The value to drop before retrying, or `None` when the error cannot be stepped over.
    fn removable_path(&self) -> Option<KeyPath> {
        let (path, _) = self.located.as_ref()?;
        match self.kind {
            Kind::MissingField(_) => None,
            _ if path.is_root() => None,
            _ => Some(path.clone()),
        }
    }

    fn into_diagnostic(self, base: &KeyPath) -> Diagnostic {
        let (path, origin) = self
            .located
            .unwrap_or_else(|| (KeyPath::root(), Origin::Default));
        let path = base.concat(&path);
        let names = |expected: &[&str]| {
            expected
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self.kind {
            Kind::UnknownField { field, expected } => {
                let hint = did_you_mean(&field, expected.iter().copied())
                    .unwrap_or_else(|| format!("the keys allowed here are {}", names(expected)));
                Diagnostic::new(path, origin, format!("unknown key `{field}`")).with_hint(hint)
            }
            Kind::UnknownVariant { variant, expected } => {
                let hint = did_you_mean(&variant, expected.iter().copied())
                    .unwrap_or_else(|| format!("use one of {}", names(expected)));
                Diagnostic::new(path, origin, format!("unknown value `{variant}`")).with_hint(hint)
            }
            Kind::MissingField(field) => Diagnostic::new(
                path.key(field),
                origin,
                format!("missing required key `{field}`"),
            )
            .with_hint(format!("add `{field}:` here")),
            Kind::Other(message) => Diagnostic::new(path, origin, message),
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::UnknownField { field, .. } => write!(f, "unknown key `{field}`"),
            Kind::UnknownVariant { variant, .. } => write!(f, "unknown value `{variant}`"),
            Kind::MissingField(field) => write!(f, "missing required key `{field}`"),
            Kind::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> DeError {
        DeError::new(Kind::Other(msg.to_string()))
    }
    fn invalid_type(unexpected: de::Unexpected, expected: &dyn de::Expected) -> DeError {
        let expected = plain_expected(&expected.to_string());
        DeError::new(Kind::Other(format!(
            "expected {expected}, found {unexpected}"
        )))
    }
    fn invalid_value(unexpected: de::Unexpected, expected: &dyn de::Expected) -> DeError {
        let expected = plain_expected(&expected.to_string());
        DeError::new(Kind::Other(format!(
            "invalid value {unexpected}: expected {expected}"
        )))
    }
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> DeError {
        DeError::new(Kind::UnknownField {
            field: field.to_owned(),
            expected,
        })
    }
    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> DeError {
        DeError::new(Kind::UnknownVariant {
            variant: variant.to_owned(),
            expected,
        })
    }
    fn missing_field(field: &'static str) -> DeError {
        DeError::new(Kind::MissingField(field))
    }
}

/// Says what Rust's number types mean in words a spec author uses.
fn plain_expected(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number (0 or more)".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        other => other.to_owned(),
    }
}

/// A serde deserializer over one node of the tree.
pub struct NodeDeserializer<'a> {
    node: &'a Node,
    path: KeyPath,
}

impl<'a> NodeDeserializer<'a> {
    /// Deserializes `node`, which sits at `path` (relative to where reporting starts).
    pub fn new(node: &'a Node, path: KeyPath) -> NodeDeserializer<'a> {
        NodeDeserializer { node, path }
    }

    fn fail(&self, error: DeError) -> DeError {
        error.locate(&self.path, &self.node.origin)
    }
}

impl<'de> de::Deserializer<'de> for NodeDeserializer<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(x) => visitor.visit_f64(*x),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Seq(items) => visitor.visit_seq(Items {
                items: items.iter().enumerate(),
                path: &self.path,
            }),
            Value::Map(entries) => visitor.visit_map(Entries {
                entries: entries.iter(),
                pending: None,
                path: &self.path,
            }),
        };
        result.map_err(|e| self.fail(e))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Null => visitor.visit_none().map_err(|e| self.fail(e)),
            _ => visitor.visit_some(self),
        }
    }

    /// YAML reads `name: 2024` as a number; a string field takes it as its text.
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let text = match &self.node.value {
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return self.deserialize_any(visitor),
        };
        visitor.visit_string(text).map_err(|e| self.fail(e))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name == NODE_MARKER {
            NODE_HANDOFF.with(|slot| *slot.borrow_mut() = Some(self.node.clone()));
            return visitor.visit_unit();
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Value::Str(variant) => visitor.visit_enum(Variant {
                name: variant,
                content: None,
                path: self.path.clone(),
            }),
            Value::Map(entries) if entries.len() == 1 => visitor.visit_enum(Variant {
                name: &entries[0].key,
                content: Some(&entries[0]),
                path: self.path.clone(),
            }),
            other => Err(DeError::custom(format!(
                "expected a name, or a mapping with one key (`name: {{...}}`), found {}",
                other.kind_name()
            ))),
        };
        result.map_err(|e| self.fail(e))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier
    }
}

struct Items<'a, I> {
    items: I,
    path: &'a KeyPath,
}

impl<'de, I: Iterator<Item = (usize, &'de Node)>> SeqAccess<'de> for Items<'_, I> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some((i, node)) => seed
                .deserialize(NodeDeserializer::new(node, self.path.index(i)))
                .map(Some),
            None => Ok(None),
        }
    }
}

struct Entries<'a, 'de, I> {
    entries: I,
    pending: Option<&'de Entry>,
    path: &'a KeyPath,
}

impl<'de, I: Iterator<Item = &'de Entry>> MapAccess<'de> for Entries<'_, 'de, I> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.pending = Some(entry);
        let key = de::value::BorrowedStrDeserializer::<DeError>::new(&entry.key);
        seed.deserialize(key)
            .map(Some)
            .map_err(|e| e.locate(&self.path.key(&entry.key), &entry.key_origin))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let entry = self
            .pending
            .take()
            .ok_or_else(|| DeError::custom("internal: value requested before its key"))?;
        seed.deserialize(NodeDeserializer::new(
            &entry.node,
            self.path.key(&entry.key),
        ))
    }
}

/// An enum written as a bare name (`mean`) or as a one-key mapping (`synthetic: {...}`).
struct Variant<'de> {
    name: &'de str,
    content: Option<&'de Entry>,
    path: KeyPath,
}

impl<'de> EnumAccess<'de> for Variant<'de> {
    type Error = DeError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), DeError> {
        let name = de::value::BorrowedStrDeserializer::<DeError>::new(self.name);
        let value = match self.content {
            Some(entry) => seed
                .deserialize(name)
                .map_err(|e| e.locate(&self.path.key(&entry.key), &entry.key_origin))?,
            None => seed.deserialize(name)?,
        };
        Ok((value, self))
    }
}

/// The settings of a variant written as a bare name: none, so its defaults apply.
static NO_SETTINGS: Node = Node {
    value: Value::Map(Vec::new()),
    origin: Origin::Default,
};

impl<'de> Variant<'de> {
    fn content(&self) -> NodeDeserializer<'de> {
        match self.content {
            Some(entry) => NodeDeserializer::new(&entry.node, self.path.key(&entry.key)),
            None => NodeDeserializer::new(&NO_SETTINGS, self.path.clone()),
        }
    }
}

impl<'de> VariantAccess<'de> for Variant<'de> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.content {
            None => Ok(()),
            Some(entry) if entry.node.value == Value::Null => Ok(()),
            Some(entry) => Err(DeError::custom(format!(
                "`{}` takes no settings: write just `{}`",
                self.name, self.name
            ))
            .locate(&self.path.key(&entry.key), &entry.node.origin)),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self.content())
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_any(self.content(), visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_any(self.content(), visitor)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[serde(default)]
        experts: u32,
        #[serde(default)]
        kind: Kind2,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Kind2 {
        #[default]
        Mean,
        Map,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        name: String,
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default)]
        raw: Option<Node>,
    }

    fn parse(text: &str) -> Result<Outer, Vec<Diagnostic>> {
        deserialize_all(&Node::parse_yaml(text).unwrap(), &KeyPath::root())
    }

    #[test]
    fn reports_all_errors_with_positions() {
        let errors = parse("name: x\ninner:\n  expert: 3\n  kind: mapp\nbogus: 1\n").unwrap_err();
        let lines: Vec<String> = errors
            .iter()
            .map(|d| format!("{} {} {} {:?}", d.origin, d.path, d.message, d.hint))
            .collect();
        assert_eq!(
            lines,
            [
                "3:3 inner.expert unknown key `expert` Some(\"did you mean `experts`?\")",
                "4:9 inner.kind unknown value `mapp` Some(\"did you mean `map`?\")",
                "5:1 bogus unknown key `bogus` Some(\"the keys allowed here are `name`, `inner`, `raw`\")",
            ]
        );
    }

    #[test]
    fn wrong_types_and_missing_keys() {
        let errors = parse("inner: {experts: many}").unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].path.to_string(), "inner.experts");
        assert_eq!(
            errors[0].origin,
            Origin::File {
                line: 1,
                column: 18
            }
        );
        assert_eq!(
            errors[0].message,
            "expected a whole number (0 or more), found string \"many\""
        );
        assert_eq!(errors[1].message, "missing required key `name`");
    }

    #[test]
    fn nodes_pass_through_with_origins() {
        let outer = parse("name: 2024\nraw: {a: 1}\n").unwrap();
        assert_eq!(outer.name, "2024");
        let raw = outer.raw.unwrap();
        assert_eq!(
            raw.entry("a").unwrap().key_origin,
            Origin::File { line: 2, column: 7 }
        );
    }
}
