//! Fills what a spec leaves out before it is typed: the name, and the shape of the
//! chosen size preset. Filled values carry [`Origin::Default`].

use super::model::Size;
use super::node::{Node, Origin, Value};
use super::path::KeyPath;

/// Sets `name` (from the file stem) and every model shape key the spec does not give,
/// from `model.size` (an unknown size falls back to `tiny`; typing reports it).
pub fn fill_defaults(tree: &mut Node, file_stem: &str) {
    insert_default(tree, "name", Value::Str(file_stem.to_owned()));
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
