//! `--set PATH=VALUE` overrides, applied to the tree before it is typed.

use super::diagnostic::Diagnostic;
use super::node::{Node, Origin};
use super::path::KeyPath;

/// Applies each `PATH=VALUE` (VALUE is YAML: `16`, `true`, `[1, 2]`, `{a: 1}`) to `tree`.
/// Unknown paths are caught later by typed deserialization, which names the argument.
pub fn apply_overrides(tree: &mut Node, sets: &[String]) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    for arg in sets {
        let origin = Origin::Override(arg.clone());
        let Some((path_text, value_text)) = arg.split_once('=') else {
            problems.push(
                Diagnostic::new(KeyPath::root(), origin, "an override needs `=`")
                    .with_hint("write `--set model.moe.experts=16`"),
            );
            continue;
        };
        let path = match path_text.trim().parse::<KeyPath>() {
            Ok(path) if !path.is_root() => path,
            Ok(_) => {
                problems.push(Diagnostic::new(KeyPath::root(), origin, "empty key path"));
                continue;
            }
            Err(e) => {
                problems.push(Diagnostic::new(KeyPath::root(), origin, e));
                continue;
            }
        };
        let value = match Node::parse_value(value_text, &origin) {
            Ok(value) => value,
            Err(e) => {
                problems.push(Diagnostic::new(
                    path,
                    origin,
                    format!(
                        "the value is not valid YAML: {}",
                        first_line(&e.to_string())
                    ),
                ));
                continue;
            }
        };
        if let Err(message) = tree.set(&path, value) {
            problems.push(Diagnostic::new(path, origin, message));
        }
    }
    problems
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Value;

    #[test]
    fn sets_typed_values_and_reports_bad_arguments() {
        let mut tree = Node::parse_yaml("model: {moe: {experts: 4}}").unwrap();
        let problems = apply_overrides(
            &mut tree,
            &[
                "model.moe.experts=16".into(),
                "train.lr=3e-4".into(),
                "novalue".into(),
                "model.moe.experts.x=1".into(),
            ],
        );
        let experts = tree.at(&"model.moe.experts".parse().unwrap()).unwrap();
        assert_eq!(experts.value, Value::Int(16));
        assert_eq!(
            experts.origin,
            Origin::Override("model.moe.experts=16".into())
        );
        let lr = tree.at(&"train.lr".parse().unwrap()).unwrap();
        assert_eq!(lr.value, Value::Float(3e-4));
        let messages: Vec<&str> = problems.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert_eq!(messages[0], "an override needs `=`");
        assert_eq!(
            messages[1],
            "`model.moe.experts` is an integer, not a mapping; it has no key `x`"
        );
    }
}
