//! Loading a spec file: parse, override, fill defaults, type, check; all errors at once.

use std::fs::File;
use std::io::Read;
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
    let source = read_spec(file).map_err(|d| SpecErrors::new(file, "", vec![d]))?;
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
        spec.stages = default_pipeline(&spec);
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

/// The largest spec file read: specs are a few KiB of YAML, and anything larger is the wrong
/// path (a data file, say), which would otherwise be read whole into memory.
const MAX_SPEC_BYTES: u64 = 1 << 20;

/// The text of `file`, refusing before reading what is not a regular file (a directory; a
/// device or a pipe, which may never end) or is larger than [`MAX_SPEC_BYTES`].
fn read_spec(file: &Path) -> Result<String, Diagnostic> {
    let refuse = |message: String, hint: &str| {
        Diagnostic::new(
            KeyPath::root(),
            Origin::Default,
            format!("cannot read the spec: {message}"),
        )
        .with_hint(hint)
    };
    let unreadable = |e: std::io::Error| {
        refuse(
            e.to_string(),
            "check the path; specs live under experiments/",
        )
    };
    let too_large = || {
        refuse(
            format!("it is over the limit of {MAX_SPEC_BYTES} bytes (1 MiB) for a spec"),
            "check the path: a spec is a short YAML file such as experiments/tiny.yaml",
        )
    };
    let meta = std::fs::metadata(file).map_err(unreadable)?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file (a device, a pipe or a socket)"
        };
        return Err(refuse(
            format!("it is {what}"),
            "give the path of a YAML file such as experiments/tiny.yaml",
        ));
    }
    if meta.len() > MAX_SPEC_BYTES {
        return Err(too_large());
    }
    // Read at most one byte past the limit: the file may have grown since.
    let mut text = String::new();
    File::open(file)
        .and_then(|f| f.take(MAX_SPEC_BYTES + 1).read_to_string(&mut text))
        .map_err(unreadable)?;
    if text.len() as u64 > MAX_SPEC_BYTES {
        return Err(too_large());
    }
    Ok(text)
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
