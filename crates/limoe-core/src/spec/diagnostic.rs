//! Spec errors that name the file, line and column, the key path, and a hint.

use std::fmt;
use std::path::{Path, PathBuf};

use super::node::Origin;
use super::path::KeyPath;

/// One problem found in a spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// The offending key path.
    pub path: KeyPath,
    /// Where the offending value (or key) was written.
    pub origin: Origin,
    /// What is wrong.
    pub message: String,
    /// What to do about it, when there is something to suggest.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A diagnostic without a hint.
    pub fn new(path: KeyPath, origin: Origin, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            path,
            origin,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }
}

/// Suggests the known name closest to `given` ("did you mean `experts`?"), if any is close.
pub fn did_you_mean<'a>(given: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(given, k), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| format!("did you mean `{k}`?"))
}

/// Every problem found in one spec file, printable as a report.
#[derive(Clone, Debug)]
pub struct SpecErrors {
    /// The spec file.
    pub file: PathBuf,
    /// The file's text, for quoting the offending lines.
    pub source: String,
    /// The problems, in document order.
    pub diagnostics: Vec<Diagnostic>,
}

impl SpecErrors {
    /// Collects diagnostics for `file`, sorted by position.
    pub fn new(file: &Path, source: &str, mut diagnostics: Vec<Diagnostic>) -> SpecErrors {
        diagnostics.sort_by_key(|d| match d.origin {
            Origin::File { line, column } => (0, line, column),
            Origin::Override(_) => (1, 0, 0),
            Origin::Default => (2, 0, 0),
        });
        SpecErrors {
            file: file.to_path_buf(),
            source: source.to_owned(),
            diagnostics,
        }
    }

    fn write_one(&self, f: &mut fmt::Formatter<'_>, d: &Diagnostic) -> fmt::Result {
        let file = self.file.display();
        let path = &d.path;
        match &d.origin {
            Origin::File { line, column } => {
                writeln!(f, "error: {file}:{line}:{column}: {path}: {}", d.message)?;
                if let Some(text) = self.source.lines().nth((*line as usize).saturating_sub(1)) {
                    writeln!(f, "  {line:>4} | {text}")?;
                    let pad = " ".repeat((*column as usize).saturating_sub(1));
                    writeln!(f, "       | {pad}^")?;
                }
            }
            Origin::Override(arg) => {
                writeln!(f, "error: {file}: --set {arg}: {path}: {}", d.message)?
            }
            Origin::Default => writeln!(f, "error: {file}: {path}: {}", d.message)?,
        }
        if let Some(hint) = &d.hint {
            writeln!(f, "  hint: {hint}")?;
        }
        Ok(())
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            self.write_one(f, d)?;
        }
        let n = self.diagnostics.len();
        write!(
            f,
            "{}: {n} error{} in the spec; nothing was run",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for SpecErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("expert", ["experts", "top_k"]).as_deref(),
            Some("did you mean `experts`?")
        );
        assert_eq!(did_you_mean("zzz", ["experts", "top_k"]), None);
    }

    #[test]
    fn report_quotes_the_line_with_a_caret() {
        let d = Diagnostic::new(
            "model.x".parse().unwrap(),
            Origin::File { line: 2, column: 3 },
            "unknown key `x`",
        )
        .with_hint("did you mean `y`?");
        let text = SpecErrors::new(Path::new("s.yaml"), "model:\n  x: 1\n", vec![d]).to_string();
        assert_eq!(
            text,
            "error: s.yaml:2:3: model.x: unknown key `x`\n     2 |   x: 1\n       |   ^\n  \
             hint: did you mean `y`?\ns.yaml: 1 error in the spec; nothing was run"
        );
    }
}
