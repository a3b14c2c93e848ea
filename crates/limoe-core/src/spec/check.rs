//! Collects the value errors that typed deserialization cannot see, each at its position.

use super::diagnostic::Diagnostic;
use super::node::Node;
use super::path::KeyPath;

/// Gathers diagnostics for one spec, looking positions up in its tree.
pub struct Checker<'a> {
    tree: &'a Node,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Checker<'a> {
    /// A checker reporting positions from `tree`.
    pub fn new(tree: &'a Node) -> Checker<'a> {
        Checker {
            tree,
            diagnostics: Vec::new(),
        }
    }

    /// Records an error at `path`.
    pub fn error(&mut self, path: &KeyPath, message: impl Into<String>, hint: Option<String>) {
        let mut d = Diagnostic::new(path.clone(), self.tree.origin_of(path), message);
        d.hint = hint;
        self.diagnostics.push(d);
    }

    /// Records an error at `path` unless `ok`.
    pub fn require(&mut self, ok: bool, path: &KeyPath, message: impl FnOnce() -> String) {
        if !ok {
            self.error(path, message(), None);
        }
    }

    /// Records an error for each `(key, value)` under `at` whose value is below 1.
    pub fn at_least_one(&mut self, at: &KeyPath, fields: &[(&str, usize)]) {
        for (key, value) in fields {
            self.require(*value >= 1, &at.key(key), || {
                format!("`{key}` must be at least 1")
            });
        }
    }

    /// Whether `path` is written in the spec (by the file or an override), not defaulted.
    pub fn is_written(&self, path: &KeyPath) -> bool {
        self.tree.at(path).is_some()
    }

    /// Adds diagnostics found elsewhere (e.g. by a stage checking its own config).
    pub fn extend(&mut self, diagnostics: Vec<Diagnostic>) {
        self.diagnostics.extend(diagnostics);
    }

    /// The diagnostics gathered, leaving out those next to a value in `defaulted` (a
    /// wrong value replaced by its default, whose neighbours' checks may mislead).
    pub fn finish(self, defaulted: &[KeyPath]) -> Vec<Diagnostic> {
        self.diagnostics
            .into_iter()
            .filter(|d| {
                !defaulted
                    .iter()
                    .any(|r| r.neighbourhood().is_prefix_of(&d.path))
            })
            .collect()
    }
}
