//! The `stages` section: the pipeline as a list of stage invocations.

use serde::{Deserialize, Serialize};

use super::Spec;
use super::node::{Node, Origin};
use crate::kinds::{ANALYZE, BENCHMARKS, EVAL, INGEST, TRAIN};

/// One stage of the pipeline.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Name of this stage within the spec (also its output directory's prefix).
    pub id: String,
    /// The registered stage kind that runs it (`limoe stages` lists them).
    pub uses: String,
    /// Stages whose outputs this one reads.
    #[serde(default)]
    pub needs: Vec<String>,
    /// The stage kind's own settings, checked by the kind.
    #[serde(default = "empty_with")]
    pub with: Node,
}

fn empty_with() -> Node {
    Node::empty_map(Origin::Default)
}

impl StageSpec {
    /// A stage with no settings of its own.
    pub fn new(id: &str, uses: &str, needs: &[&str]) -> StageSpec {
        StageSpec {
            id: id.to_owned(),
            uses: uses.to_owned(),
            needs: needs.iter().map(|s| (*s).to_owned()).collect(),
            with: empty_with(),
        }
    }
}

/// The pipeline used when a spec has no `stages`: ingest -> train -> eval -> analyze, with
/// a `benchmarks` stage feeding eval when the spec has `eval.benchmarks`.
pub fn default_pipeline(spec: &Spec) -> Vec<StageSpec> {
    if spec.eval.benchmarks.is_empty() {
        return vec![
            StageSpec::new(INGEST, INGEST, &[]),
            StageSpec::new(TRAIN, TRAIN, &[INGEST]),
            StageSpec::new(EVAL, EVAL, &[TRAIN, INGEST]),
            StageSpec::new(ANALYZE, ANALYZE, &[TRAIN, EVAL]),
        ];
    }
    vec![
        StageSpec::new(INGEST, INGEST, &[]),
        StageSpec::new(BENCHMARKS, BENCHMARKS, &[]),
        StageSpec::new(TRAIN, TRAIN, &[INGEST]),
        StageSpec::new(EVAL, EVAL, &[TRAIN, INGEST, BENCHMARKS]),
        StageSpec::new(ANALYZE, ANALYZE, &[TRAIN, EVAL]),
    ]
}
