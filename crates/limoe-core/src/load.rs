//! Loading a spec file: parse, override, fill defaults, type, check; all errors at once.

use std::path::{Path, PathBuf};

use crate::pipeline::check_pipeline;
use crate::spec::{
    Checker, Diagnostic, KeyPath, Node, Origin, Spec, SpecErrors, Value, apply_overrides,
    default_pipeline,
};
use crate::stage::Registry;

/// A spec that passed every check, with what is needed to report on it.
#[derive(Clone, Debug)]
pub struct LoadedSpec {
    /// The spec file.
    pub file: PathBuf,
    /// The resolved spec.
    pub spec: Spec,
    /// The tree it was typed from (positions of every value).
    pub tree: Node,
}

/// Loads `file` with `--set` overrides, checking everything against `registry`.
pub fn load_spec(
    file: &Path,
    sets: &[String],
    registry: &Registry,
) -> Result<LoadedSpec, SpecErrors> {
    let source = std::fs::read_to_string(file).map_err(|e| {
        let d = Diagnostic::new(
            KeyPath::root(),
            Origin::Default,
            format!("cannot read the spec: {e}"),
        )
        .with_hint("check the path; specs live under experiments/");
        SpecErrors::new(file, "", vec![d])
    })?;
    let fail = |diagnostics| SpecErrors::new(file, &source, diagnostics);
    let mut tree = Node::parse_yaml(&source).map_err(|e| fail(vec![syntax_error(&e)]))?;
    if !matches!(tree.value, Value::Map(_)) {
        return Err(fail(vec![
            Diagnostic::new(
                KeyPath::root(),
                tree.origin.clone(),
                format!(
                    "a spec is a mapping of sections, found {}",
                    tree.value.kind_name()
                ),
            )
            .with_hint("start with `name: my-experiment`"),
        ]));
    }
    let mut problems = apply_overrides(&mut tree, sets);
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "experiment".into());
    let typed = Spec::from_tree(&tree, &stem);
    problems.extend(typed.diagnostics);
    let Some(mut spec) = typed.value else {
        return Err(fail(problems));
    };
    if spec.stages.is_empty() {
        spec.stages = default_pipeline();
    }
    let mut c = Checker::new(&tree);
    spec.check(&mut c);
    check_pipeline(&spec, registry, &mut c);
    problems.extend(c.finish(&typed.defaulted));
    if !problems.is_empty() {
        return Err(fail(problems));
    }
    Ok(LoadedSpec {
        file: file.to_path_buf(),
        spec,
        tree,
    })
}

fn syntax_error(e: &serde_saphyr::Error) -> Diagnostic {
    let origin = match e.location() {
        Some(loc) if loc.line() > 0 => Origin::File {
            line: loc.line(),
            column: loc.column(),
        },
        _ => Origin::Default,
    };
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("invalid YAML");
    // serde-saphyr prefixes "error: line L column C: "; the report shows the position itself.
    let message = first
        .split_once(": ")
        .and_then(|(_, rest)| {
            rest.split_once(": ")
                .filter(|(pos, _)| pos.starts_with("line "))
        })
        .map_or(first, |(_, message)| message);
    Diagnostic::new(KeyPath::root(), origin, format!("invalid YAML: {message}"))
}
