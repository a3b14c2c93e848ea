//! Fills what a spec leaves out before it is typed: the name, and the shape of the
//! chosen size preset. Filled values carry [`Origin::Default`].

use super::model::Size;
use super::node::{Node, Origin, Value};
use super::path::KeyPath;

/// Sets `name` (from the file stem) and every model shape key the spec does not give,
/// from `model.size` (an unknown size falls back to `tiny`; typing reports it); and, for
/// data without a `synthetic` source, empty dataset lists of the evaluations where the spec
/// gives none (their default names `synthetic`, which such data lacks, and which a resolved
/// spec would then write out as if the spec had named it).
pub fn fill_defaults(tree: &mut Node, file_stem: &str) {
    insert_default(tree, "name", Value::Str(file_stem.to_owned()));
    if !has_synthetic_source(tree) {
        for list in DATASET_LISTS {
            let path = list.parse().expect("static path");
            insert_default_at(tree, &path, Value::Seq(Vec::new()));
        }
    }
    let size = tree
        .at(&"model.size".parse().expect("static path"))
        .and_then(|n| match &n.value {
            Value::Str(s) => Size::from_name(s),
            _ => None,
        })
        .unwrap_or_default();
    let model = KeyPath::root().key("model");
    for (key, value) in size.shape() {
        insert_default_at(tree, &model.key(key), Value::Int(value as i64));
    }
    let (experts, every, last) = size.routing();
    let moe = model.key("moe");
    insert_default_at(tree, &moe.key("experts"), Value::Int(experts as i64));
    let has = |tree: &Node, key: &str| tree.at(&moe.key(key)).is_some();
    if !has(tree, "every") && !has(tree, "last") {
        insert_default_at(tree, &moe.key("every"), Value::Int(every as i64));
        if let Some(last) = last {
            insert_default_at(tree, &moe.key("last"), Value::Int(last as i64));
        }
    }
}

/// The evaluations' dataset lists, whose default is `[synthetic]`.
const DATASET_LISTS: [&str; 3] = [
    "eval.zero_shot.datasets",
    "eval.few_shot.datasets",
    "train.monitor.zero_shot.datasets",
];

/// Whether the data has a `synthetic` source: written as `- synthetic` or `- synthetic:
/// {...}`, or the default sources (none given).
fn has_synthetic_source(tree: &Node) -> bool {
    let Some(sources) = tree.at(&"data.sources".parse().expect("static path")) else {
        return true;
    };
    let Value::Seq(entries) = &sources.value else {
        return true;
    };
    entries.iter().any(|entry| match &entry.value {
        Value::Str(name) => name == "synthetic",
        Value::Map(keys) => keys.iter().any(|k| k.key == "synthetic"),
        _ => false,
    })
}

fn insert_default(tree: &mut Node, key: &str, value: Value) {
    insert_default_at(tree, &KeyPath::root().key(key), value);
}

/// Sets `path` to `value` unless it is present; a parent that is not a mapping is left
/// alone (typing reports it).
fn insert_default_at(tree: &mut Node, path: &KeyPath, value: Value) {
    if tree.at(path).is_none() {
        let _ = tree.set(path, Node::new(value, Origin::Default));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_fills_only_what_is_missing() {
        let mut tree = Node::parse_yaml("model: {size: L, depth: 12, moe: {last: 4}}").unwrap();
        fill_defaults(&mut tree, "exp");
        let get = |p: &str| tree.at(&p.parse().unwrap()).map(|n| n.value.clone());
        assert_eq!(get("name"), Some(Value::Str("exp".into())));
        assert_eq!(get("model.width"), Some(Value::Int(1024)));
        assert_eq!(get("model.depth"), Some(Value::Int(12)));
        assert_eq!(get("model.moe.experts"), Some(Value::Int(32)));
        assert_eq!(get("model.moe.every"), None);
    }
}
