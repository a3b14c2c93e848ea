//! The `sweep` section: how one spec expands into trials.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::check::Checker;
use super::node::Node;
use super::path::KeyPath;

/// The whole `sweep` section; every key is a dotted override path such as `model.moe.experts`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SweepSpec {
    /// Cartesian product over the listed values.
    pub grid: BTreeMap<String, Vec<Node>>,
    /// Paired lists, taken position by position (all of one length).
    pub zip: BTreeMap<String, Vec<Node>>,
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
    pub params: BTreeMap<String, Distribution>,
}

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
        self.grid.is_empty()
            && self.zip.is_empty()
            && self.random.is_none()
            && self.seeds.is_empty()
    }

    pub(super) fn check(&self, at: &KeyPath, c: &mut Checker) {
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
            let forbidden = ["sweep", "stages", "name"]
                .iter()
                .any(|s| top == Some(&super::path::Segment::Key((*s).to_owned())));
            c.require(!forbidden, at, || {
                format!("`{key}` cannot be swept; sweep keys under data, model, train, eval, analysis or seed")
            });
        }
        Err(e) => c.error(at, format!("not a key path: {e}"), None),
    }
}
