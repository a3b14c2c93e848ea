//! The `benchmarks` stage: writes each of `eval.benchmarks` as a dataset of its own (all its
//! pairs in the test split) beside a [`BenchmarkClasses`] file, never mixed into the
//! training shards. Its cache key is the benchmarks' settings and content, so changing a
//! benchmark reruns only this stage and the evaluation.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use limoe_core::kinds::BENCHMARKS;
use limoe_core::random::mix64;
use limoe_core::records::{read_record, write_record};
use limoe_core::spec::{Benchmark, Node, Splits};
use limoe_core::{Spec, Stage, StageContext};
use serde::{Deserialize, Serialize};

use crate::ingest::{SHARD_FORMAT, fetch_packages, write_dataset};
use crate::shards::Pair;
use crate::sources;

/// The file, in each benchmark's directory, naming its classes.
pub const CLASSES_FILE: &str = "benchmark.json";

/// A benchmark's candidate classes and prompts, as its zero-shot classifier uses them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BenchmarkClasses {
    /// Every class: its label id and name, in id order (`classnames`, else each id's
    /// `label_name`).
    pub classes: Vec<(i32, String)>,
    /// The benchmark's own templates; `None` takes `eval.zero_shot.templates`.
    pub templates: Option<Vec<String>>,
}

impl BenchmarkClasses {
    /// Reads the classes of the benchmark written at `dir`.
    pub fn read(dir: &Path) -> anyhow::Result<BenchmarkClasses> {
        read_record(dir, CLASSES_FILE)?.with_context(|| {
            format!(
                "no {CLASSES_FILE} in {}; rerun the benchmarks stage",
                dir.display()
            )
        })
    }
}

/// The `benchmarks` stage kind.
pub struct BenchmarksStage;

impl Stage for BenchmarksStage {
    fn kind(&self) -> &'static str {
        BENCHMARKS
    }

    fn about(&self) -> &'static str {
        "writes eval.benchmarks as Parquet datasets of their own, never trained on"
    }

    /// The benchmarks and the shard layout; `seed` draws synthetic benchmarks.
    fn reads(&self) -> &'static [&'static str] {
        &[
            "seed",
            "eval.benchmarks",
            "data.root",
            "data.row_group_rows",
            "data.shard_mib",
        ]
    }

    /// The synthetic benchmarks' seed is the data's.
    fn seed_draws_data(&self) -> bool {
        true
    }

    /// The shard format, each benchmark's class names and templates as read from their
    /// files, and the content of its source (see `IngestStage`'s).
    fn fingerprint(&self, _with: &Node, spec: &Spec) -> anyhow::Result<serde_json::Value> {
        let benchmarks = &spec.eval.benchmarks;
        let named = benchmarks.iter().map(|(name, b)| (name.clone(), &b.source));
        let what = |name: &str| Benchmark::key(name, "source");
        let contents = sources::contents(named, &spec.data.root, what)?;
        let mut lists = serde_json::Map::new();
        for (name, benchmark) in benchmarks {
            let classnames = benchmark.class_names(name)?;
            let templates = benchmark.own_templates(name)?;
            lists.insert(name.clone(), serde_json::json!([classnames, templates]));
        }
        Ok(serde_json::json!({
            "shard_format": SHARD_FORMAT,
            "sources": contents,
            "lists": lists,
        }))
    }

    fn prepare(&self, spec: &Spec) -> anyhow::Result<()> {
        let sources: Vec<_> = (spec.eval.benchmarks.values())
            .map(|b| b.source.clone())
            .collect();
        fetch_packages(&sources, &spec.data.root)
    }

    fn run(&self, ctx: &StageContext) -> anyhow::Result<()> {
        for (name, benchmark) in &ctx.spec.eval.benchmarks {
            write_benchmark(ctx, name, benchmark)
                .with_context(|| format!("eval.benchmarks.{name}"))?;
        }
        Ok(())
    }
}

fn write_benchmark(ctx: &StageContext, name: &str, benchmark: &Benchmark) -> anyhow::Result<()> {
    let classnames = benchmark.class_names(name)?;
    let templates = benchmark.own_templates(name)?;
    let mut names: BTreeMap<i32, String> = BTreeMap::new();
    let mut accept = |pair: &Pair| -> anyhow::Result<()> {
        let Some(label) = pair.label else {
            bail!(
                "pair `{}` has no label; every pair of a benchmark needs one (for Parquet, \
                 map the `label` column in `source.parquet.columns`)",
                pair.key
            );
        };
        match (&classnames, &pair.label_name) {
            (Some(classnames), _) => {
                if usize::try_from(label).map_or(true, |l| l >= classnames.len()) {
                    bail!(
                        "pair `{}` has label {label}, outside the {} `classnames` (ids 0..{})",
                        pair.key,
                        classnames.len(),
                        classnames.len()
                    );
                }
            }
            (None, Some(label_name)) => {
                names.entry(label).or_insert_with(|| label_name.clone());
            }
            (None, None) => bail!(
                "label {label} of pair `{}` has no name; give `classnames`, or map a \
                 `label_name` column in the source",
                pair.key
            ),
        }
        Ok(())
    };
    let dir = ctx.out_dir.join(name);
    let seed = benchmark_seed(ctx.spec.data_seed(), name);
    let what = format!("benchmark {name}");
    let index = write_dataset(
        ctx,
        std::slice::from_ref(&benchmark.source),
        seed,
        benchmark.splits.unwrap_or(Splits::ALL_TEST),
        &dir,
        &what,
        &mut accept,
    )?;
    let pairs: usize = index.rows.values().sum();
    if pairs == 0 {
        bail!("the source yielded no pairs; a benchmark needs at least one");
    }
    let classes = match classnames {
        Some(list) => (0..).zip(list).collect(),
        None => names.into_iter().collect(),
    };
    let record = BenchmarkClasses { classes, templates };
    write_record(&dir, CLASSES_FILE, &record)?;
    tracing::info!("{what}: {pairs} pairs, {} classes", record.classes.len());
    Ok(())
}

/// The seed of a benchmark's synthetic scenes: the spec's seed mixed with the benchmark's
/// name, so that no benchmark draws the scenes that training does.
fn benchmark_seed(seed: u64, name: &str) -> u64 {
    name.bytes()
        .fold(mix64(seed ^ 0x6265_6e63_686d_6172), |h, b| {
            mix64(h ^ u64::from(b))
        })
}
