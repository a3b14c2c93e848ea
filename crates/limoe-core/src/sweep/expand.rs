//! Expanding a `sweep` section into trials with stable, readable ids.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::sample;
use crate::files::sha256_hex;
use crate::spec::{Node, Origin, SweepSpec, Value};

/// One override of a trial: a dotted path and its value (where the value was written is
/// kept, so that a trial's errors point into the sweep section).
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// Dotted key path, e.g. `model.moe.experts`.
    pub path: String,
    /// The value.
    pub value: Node,
}

impl Override {
    /// The override as a `--set` argument (`PATH=VALUE`, the value as JSON, which is YAML).
    pub fn as_set(&self) -> String {
        format!("{}={}", self.path, value_json(&self.value))
    }
}

/// The value of `node` as JSON text (serialising a tree of plain values cannot fail).
pub(super) fn value_json(node: &Node) -> String {
    serde_json::to_string(node).unwrap_or_else(|_| "null".into())
}

/// One trial: an id and the overrides that turn the base spec into it.
#[derive(Clone, Debug, PartialEq)]
pub struct Trial {
    /// Stable, filesystem-safe id, e.g. `setting=none,seed=1` or `experts=8,lr=0.001`.
    pub id: String,
    /// Overrides in application order (a later one wins on the same path).
    pub overrides: Vec<Override>,
}

/// One choice on one axis of the product: its parts of the id and its overrides.
struct Choice {
    id_parts: Vec<String>,
    overrides: Vec<Override>,
}

/// Every trial of `sweep`: the product of, outermost first, each `cases` axis, each `grid`
/// key, the `zip` lists, the `random` samples and the `seeds`, all in file order. Empty when
/// the section asks for no trials.
pub fn expand(sweep: &SweepSpec) -> Vec<Trial> {
    if sweep.is_empty() {
        return Vec::new();
    }
    let labels = Labels::new(sweep);
    let mut axes: Vec<Vec<Choice>> = Vec::new();
    for (axis, cases) in &sweep.cases {
        axes.push(
            cases
                .iter()
                .map(|(case, set)| Choice {
                    id_parts: vec![format!("{axis}={}", sanitize(case))],
                    overrides: set
                        .iter()
                        .map(|(path, value)| Override {
                            path: path.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                })
                .collect(),
        );
    }
    for (path, values) in &sweep.grid {
        axes.push(
            values
                .iter()
                .map(|v| labels.choice(&[(path.clone(), v.clone())], None))
                .collect(),
        );
    }
    if let Some(len) = sweep.zip.values().map(Vec::len).min() {
        axes.push(
            (0..len)
                .map(|i| {
                    let pairs: Vec<(String, Node)> = sweep
                        .zip
                        .iter()
                        .map(|(path, values)| (path.clone(), values[i].clone()))
                        .collect();
                    labels.choice(&pairs, None)
                })
                .collect(),
        );
    }
    if let Some(random) = &sweep.random {
        axes.push(
            sample::sample(random)
                .iter()
                .enumerate()
                .map(|(i, pairs)| labels.choice(pairs, Some(format!("r{i}"))))
                .collect(),
        );
    }
    if !sweep.seeds.is_empty() {
        axes.push(
            sweep
                .seeds
                .iter()
                .map(|seed| Choice {
                    id_parts: vec![format!("seed={seed}")],
                    overrides: vec![Override {
                        path: "seed".into(),
                        value: Node::new(
                            i64::try_from(*seed).map_or(Value::Float(*seed as f64), Value::Int),
                            Origin::Default,
                        ),
                    }],
                })
                .collect(),
        );
    }
    let trials = product(&axes);
    unique_ids(trials)
}

/// The cartesian product of `axes`, the first axis outermost.
fn product(axes: &[Vec<Choice>]) -> Vec<Trial> {
    if axes.iter().any(Vec::is_empty) {
        return Vec::new();
    }
    let mut trials = Vec::new();
    let mut index = vec![0usize; axes.len()];
    loop {
        let chosen: Vec<&Choice> = axes.iter().zip(&index).map(|(a, &i)| &a[i]).collect();
        trials.push(Trial {
            id: chosen
                .iter()
                .flat_map(|c| c.id_parts.iter().cloned())
                .collect::<Vec<_>>()
                .join(","),
            overrides: chosen
                .iter()
                .flat_map(|c| c.overrides.iter().cloned())
                .collect(),
        });
        // Odometer: advance the innermost axis, carrying outwards.
        let mut axis = axes.len();
        loop {
            if axis == 0 {
                return trials;
            }
            axis -= 1;
            index[axis] += 1;
            if index[axis] < axes[axis].len() {
                break;
            }
            index[axis] = 0;
        }
    }
}

/// Longest id kept whole; longer ids are cut and end in a hash of the whole id.
const MAX_ID: usize = 120;

/// Makes ids fit a file name and unique: a long id is cut and given a hash, and a repeated
/// id (e.g. a value listed twice) gets `_2`, `_3`, ... in order.
fn unique_ids(mut trials: Vec<Trial>) -> Vec<Trial> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for trial in &mut trials {
        if trial.id.len() > MAX_ID {
            let mut cut = MAX_ID - 9;
            while !trial.id.is_char_boundary(cut) {
                cut -= 1;
            }
            trial.id = format!(
                "{}-{}",
                &trial.id[..cut],
                &sha256_hex(trial.id.as_bytes())[..8]
            );
        }
        let count = seen.entry(trial.id.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            trial.id = format!("{}_{count}", trial.id);
        }
    }
    trials
}

/// The short names of swept paths in ids: the last segment, or the whole path when two swept
/// paths share their last segment.
struct Labels(HashMap<String, String>);

impl Labels {
    fn new(sweep: &SweepSpec) -> Labels {
        let paths: Vec<&String> = sweep
            .grid
            .keys()
            .chain(sweep.zip.keys())
            .chain(sweep.random.iter().flat_map(|r| r.params.keys()))
            .collect();
        let last = |p: &str| p.rsplit('.').next().unwrap_or(p).to_owned();
        let labels = paths
            .iter()
            .map(|p| {
                let short = last(p);
                let shared = paths.iter().filter(|q| last(q) == short).count() > 1;
                let label = if shared { (*p).clone() } else { short };
                ((*p).clone(), sanitize(&label))
            })
            .collect();
        Labels(labels)
    }

    /// A choice setting each `(path, value)`; `prefix` (e.g. `r3`) starts its id.
    fn choice(&self, pairs: &[(String, Node)], prefix: Option<String>) -> Choice {
        let short_floats = prefix.is_some();
        let parts = pairs.iter().map(|(path, value)| {
            let label = self.0.get(path).cloned().unwrap_or_else(|| sanitize(path));
            format!("{label}={}", sanitize(&id_text(value, short_floats)))
        });
        Choice {
            id_parts: prefix.into_iter().chain(parts).collect(),
            overrides: pairs
                .iter()
                .map(|(path, value)| Override {
                    path: path.clone(),
                    value: value.clone(),
                })
                .collect(),
        }
    }
}

/// A value as it appears in an id: scalars as written, lists joined by `+`, mappings as
/// `key_value` joined by `+`. Sampled floats (`short_floats`) keep 3 significant digits.
fn id_text(node: &Node, short_floats: bool) -> String {
    match &node.value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(x) if short_floats => format!("{x:.2e}"),
        Value::Float(x) => x.to_string(),
        Value::Str(s) => s.clone(),
        Value::Seq(items) => items
            .iter()
            .map(|n| id_text(n, short_floats))
            .collect::<Vec<_>>()
            .join("+"),
        Value::Map(entries) => entries
            .iter()
            .map(|e| format!("{}_{}", e.key, id_text(&e.node, short_floats)))
            .collect::<Vec<_>>()
            .join("+"),
    }
}

/// Keeps letters, digits, `.`, `_`, `-` and `+`; anything else becomes `_` (so an id is a
/// safe file name: no `/`, no spaces, no `=` or `,` inside a value).
fn sanitize(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match clean.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None if clean.is_empty() => "_".into(),
        None => clean,
    }
}

/// How a record of a trial lists its overrides: path -> value (JSON), in order.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct OverrideValues(pub indexmap::IndexMap<String, serde_json::Value>);

impl OverrideValues {
    /// The overrides of `trial` (a later value on the same path wins).
    pub fn of(trial: &Trial) -> OverrideValues {
        OverrideValues(
            trial
                .overrides
                .iter()
                .map(|o| {
                    let value = serde_json::to_value(&o.value).unwrap_or(serde_json::Value::Null);
                    (o.path.clone(), value)
                })
                .collect(),
        )
    }
}
