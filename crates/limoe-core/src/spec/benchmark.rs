//! `eval.benchmarks.NAME`: a labelled set that is evaluated and never trained on, with the
//! class names and prompt templates of its zero-shot classifier, inline or in
//! CLIP_benchmark's JSON files.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::check::Checker;
use super::data::{Source, Splits, check_source};
use super::eval::check_templates;
use super::is_safe_name;
use super::path::KeyPath;

/// One held-out benchmark.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Benchmark {
    /// Where its labelled pairs come from: any entry `data.sources` takes.
    pub source: Source,
    /// The name of each class id, in id order; by default each id's `label_name`.
    #[serde(default)]
    pub classnames: Option<NameList>,
    /// Its own prompt templates; by default `eval.zero_shot.templates`.
    #[serde(default)]
    pub templates: Option<NameList>,
    /// Validation and test fractions, for a benchmark a `finetune` stage trains on (its
    /// train split is the rest); by default every pair is a test pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splits: Option<Splits>,
}

/// A list of strings, written inline or as the path of a JSON file in CLIP_benchmark's
/// format: a list, or an object whose entry under the benchmark's name is the list.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum NameList {
    /// Written in the spec.
    Inline(Vec<String>),
    /// A JSON file.
    File(PathBuf),
}

impl NameList {
    /// The list, read from its file if it has one; `what` is its key path in errors. Errors
    /// when the file cannot be read or parsed, an object has no entry for `benchmark`, or
    /// the list is empty.
    pub fn resolve(&self, benchmark: &str, what: &str) -> anyhow::Result<Vec<String>> {
        let list = match self {
            NameList::Inline(list) => list.clone(),
            NameList::File(path) => {
                read_list(path, benchmark).with_context(|| format!("{what}: {}", path.display()))?
            }
        };
        if list.is_empty() {
            bail!("{what} is empty; give at least one entry");
        }
        Ok(list)
    }
}

fn read_list(path: &Path, benchmark: &str) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).context("cannot read the file")?;
    let value: serde_json::Value = serde_json::from_str(&text).context("not valid JSON")?;
    let list = match &value {
        serde_json::Value::Object(by_dataset) => by_dataset.get(benchmark).with_context(|| {
            let keys: Vec<&str> = by_dataset.keys().map(String::as_str).collect();
            format!(
                "has no entry `{benchmark}` (it has {}); name the benchmark after one of them",
                keys.join(", ")
            )
        })?,
        list => list,
    };
    serde_json::from_value(list.clone())
        .context("expected a list of strings, or an object of such lists by dataset name")
}

impl Benchmark {
    /// The key path of this benchmark's `field` in errors.
    pub fn key(name: &str, field: &str) -> String {
        format!("eval.benchmarks.{name}.{field}")
    }

    /// Its class names, when given (see [`NameList::resolve`]).
    pub fn class_names(&self, name: &str) -> anyhow::Result<Option<Vec<String>>> {
        let list = self.classnames.as_ref();
        list.map(|l| l.resolve(name, &Benchmark::key(name, "classnames")))
            .transpose()
    }

    /// Its own templates, when given, each checked for its `{}`.
    pub fn own_templates(&self, name: &str) -> anyhow::Result<Option<Vec<String>>> {
        let key = Benchmark::key(name, "templates");
        let Some(templates) = self.templates.as_ref().map(|l| l.resolve(name, &key)) else {
            return Ok(None);
        };
        let templates = templates?;
        if let Some((i, t)) = templates
            .iter()
            .enumerate()
            .find(|(_, t)| !t.contains("{}"))
        {
            bail!("{key}[{i}]: template `{t}` has no `{{}}` for the class name");
        }
        Ok(Some(templates))
    }

    pub(super) fn check(&self, name: &str, at: &KeyPath, c: &mut Checker) {
        c.require(is_safe_name(name), at, || {
            format!(
                "benchmark name `{name}` must be letters, digits, `.`, `_` or `-` (it names a \
                 directory)"
            )
        });
        check_source(&self.source, &at.key("source"), c);
        if let Some(splits) = &self.splits {
            splits.check(&at.key("splits"), c);
        }
        for (field, list) in [
            ("classnames", &self.classnames),
            ("templates", &self.templates),
        ] {
            if let Some(NameList::Inline(entries)) = list {
                c.require(!entries.is_empty(), &at.key(field), || {
                    format!("`{field}` is empty; give at least one entry or leave it out")
                });
            }
        }
        if let Some(NameList::Inline(templates)) = &self.templates {
            check_templates(templates, &at.key("templates"), c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_list(json: &str, benchmark: &str) -> anyhow::Result<Vec<String>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("names.json");
        std::fs::write(&path, json)?;
        NameList::File(path).resolve(benchmark, "eval.benchmarks.b.classnames")
    }

    fn message(result: anyhow::Result<Vec<String>>) -> String {
        format!("{:#}", result.unwrap_err())
    }

    #[test]
    fn lists_come_inline_or_from_clip_benchmark_files() {
        let inline = NameList::Inline(vec!["zero".into(), "one".into()]);
        assert_eq!(inline.resolve("b", "k").unwrap(), ["zero", "one"]);
        assert_eq!(file_list(r#"["cat", "dog"]"#, "b").unwrap(), ["cat", "dog"]);
        let by_dataset = r#"{"cifar10": ["plane"], "b": ["cat", "dog"]}"#;
        assert_eq!(file_list(by_dataset, "b").unwrap(), ["cat", "dog"]);
    }

    #[test]
    fn a_bad_list_names_its_key_file_and_fix() {
        let missing = message(file_list(r#"{"cifar10": ["plane"]}"#, "b"));
        assert!(
            missing.contains("eval.benchmarks.b.classnames"),
            "{missing}"
        );
        assert!(
            missing.contains("no entry `b` (it has cifar10)"),
            "{missing}"
        );
        assert!(message(file_list("[1, 2]", "b")).contains("list of strings"));
        assert!(message(file_list("not json", "b")).contains("not valid JSON"));
        assert!(message(file_list("[]", "b")).contains("is empty"));
        let absent = NameList::File("/nonexistent/names.json".into());
        let absent = message(absent.resolve("b", "eval.benchmarks.b.templates"));
        assert!(absent.contains("/nonexistent/names.json") && absent.contains("cannot read"));
    }

    #[test]
    fn templates_from_a_file_need_their_placeholder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("templates.json");
        std::fs::write(&path, r#"{"b": ["a photo of {}.", "a photo."]}"#).unwrap();
        let benchmark = Benchmark {
            source: Source::Mnist(Default::default()),
            classnames: None,
            templates: Some(NameList::File(path)),
            splits: None,
        };
        let error = format!("{:#}", benchmark.own_templates("b").unwrap_err());
        assert!(error.contains("eval.benchmarks.b.templates[1]"), "{error}");
        assert!(error.contains("`a photo.` has no `{}`"), "{error}");
    }
}
