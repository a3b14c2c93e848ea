//! The `sweep` section: how one spec expands into trials.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::check::Checker;
use super::is_safe_name;
use super::node::Node;
use super::path::KeyPath;

/// The whole `sweep` section; every key is a dotted override path such as `model.moe.experts`.
/// Every mapping keeps the file's order, which is the order of the trials and of the parts of
/// their ids (see [`crate::sweep`]).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SweepSpec {
    /// Named axes of named override sets: `cases: {setting: {none: {PATH: VALUE}, ...}}`.
    /// The cases of each axis are crossed with every other axis and the grid.
    pub cases: IndexMap<String, IndexMap<String, OverrideSet>>,
    /// Cartesian product over the listed values.
    pub grid: IndexMap<String, Vec<Node>>,
    /// Paired lists, taken position by position (all of one length).
    pub zip: IndexMap<String, Vec<Node>>,
    /// Random samples.
    pub random: Option<RandomSweep>,
    /// Every trial repeated with each of these seeds.
    pub seeds: Vec<u64>,
}

/// Random search settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RandomSweep {
    /// Number of samples.
    pub trials: usize,
    /// Seed of the sampler.
    #[serde(default)]
    pub seed: u64,
    /// What to sample for each path.
    pub params: IndexMap<String, Distribution>,
}

/// One case of a `cases` axis: dotted override paths and their values (may be empty: the
/// base spec itself).
pub type OverrideSet = IndexMap<String, Node>;

/// A distribution to sample one override from.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    /// One of the listed values.
    Choice(Vec<Node>),
    /// Uniform in [low, high).
    Uniform([f64; 2]),
    /// Log-uniform in [low, high).
    LogUniform([f64; 2]),
    /// Integer uniform in [low, high].
    IntUniform([i64; 2]),
}

impl SweepSpec {
    /// True when the section asks for no trials.
    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
            && self.grid.is_empty()
            && self.zip.is_empty()
            && self.random.is_none()
            && self.seeds.is_empty()
    }

    pub(super) fn check(&self, at: &KeyPath, c: &mut Checker) {
        for (axis, cases) in &self.cases {
            let here = at.key("cases").key(axis);
            c.require(is_safe_name(axis), &here, || {
                format!("axis `{axis}` must be letters, digits, `.`, `_` or `-` (it is part of trial ids)")
            });
            c.require(!cases.is_empty(), &here, || {
                format!("axis `{axis}` needs at least one case")
            });
            for (case, overrides) in cases {
                let case_at = here.key(case);
                c.require(is_safe_name(case), &case_at, || {
                    format!("case `{case}` must be letters, digits, `.`, `_` or `-` (it is part of trial ids)")
                });
                for key in overrides.keys() {
                    check_target(key, &case_at.key(key), c);
                }
            }
        }
        for (section, lists) in [("grid", &self.grid), ("zip", &self.zip)] {
            for (key, values) in lists {
                let here = at.key(section).key(key);
                check_target(key, &here, c);
                c.require(!values.is_empty(), &here, || {
                    format!("`{key}` needs at least one value")
                });
            }
        }
        let lengths: Vec<usize> = self.zip.values().map(Vec::len).collect();
        if lengths.windows(2).any(|w| w[0] != w[1]) {
            let described: Vec<String> = self
                .zip
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.len()))
                .collect();
            c.error(
                &at.key("zip"),
                format!("zip lists differ in length ({})", described.join(", ")),
                Some("give every zipped key the same number of values".into()),
            );
        }
        if let Some(random) = &self.random {
            let here = at.key("random");
            c.at_least_one(&here, &[("trials", random.trials)]);
            for (key, dist) in &random.params {
                let param = here.key("params").key(key);
                check_target(key, &param, c);
                let ok = match dist {
                    Distribution::Choice(values) => !values.is_empty(),
                    Distribution::Uniform([lo, hi]) => lo < hi,
                    Distribution::LogUniform([lo, hi]) => *lo > 0.0 && lo < hi,
                    Distribution::IntUniform([lo, hi]) => lo <= hi,
                };
                c.require(ok, &param, || {
                    "need a non-empty choice or a range [low, high] with low < high \
                     (and low > 0 for log_uniform)"
                        .into()
                });
            }
        }
    }
}

/// A swept key must be a well-formed path outside `sweep`, `stages` and `name`.
fn check_target(key: &str, at: &KeyPath, c: &mut Checker) {
    match key.parse::<KeyPath>() {
        Ok(path) => {
            let top = path.segments().first();
            let forbidden = ["sweep", "stages", "name", "executor"]
                .iter()
                .any(|s| top == Some(&super::path::Segment::Key((*s).to_owned())));
            c.require(!forbidden, at, || {
                format!("`{key}` cannot be swept; sweep keys under data, model, train, eval, analysis or seed")
            });
        }
        Err(e) => c.error(at, format!("not a key path: {e}"), None),
    }
}
