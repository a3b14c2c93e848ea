//! The `ingest` stage: writes the spec's `data.sources` as canonical shards, fetching the raw
//! packages of real data sets into `<data.root>/raw/` when they are not there yet.

use std::path::Path;

use limoe_core::kinds::INGEST;
use limoe_core::spec::{Node, Source, Splits};
use limoe_core::{Spec, Stage, StageContext};

use crate::fetch;
use crate::shards::{DatasetWriter, Index, Pair, ShardLayout};
use crate::sources;

/// Bumped whenever ingest writes different rows for the same spec (e.g. 2: synthetic labels
/// became colour + shape), so outputs of older builds are not reused from the cache.
pub(crate) const SHARD_FORMAT: u32 = 2;

/// The `ingest` stage kind.
pub struct IngestStage;

impl Stage for IngestStage {
    fn kind(&self) -> &'static str {
        INGEST
    }

    fn about(&self) -> &'static str {
        "writes data.sources as Parquet shards (train/val/test by key hash) with index.json"
    }

    /// The data section but the loader's shuffle buffer, which only training reads.
    fn reads(&self) -> &'static [&'static str] {
        &[
            "seed",
            "data.sources",
            "data.root",
            "data.row_group_rows",
            "data.shard_mib",
            "data.splits",
        ]
    }

    /// The synthetic scenes' seed is the data's.
    fn seed_draws_data(&self) -> bool {
        true
    }

    /// The shard format, and the content of the sources whose rows the spec does not
    /// determine (by source index), so that a rewritten foreign file or a newer package
    /// reruns ingest.
    fn fingerprint(&self, _with: &Node, spec: &Spec) -> anyhow::Result<serde_json::Value> {
        let named = (spec.data.sources.iter().enumerate()).map(|(i, s)| (i.to_string(), s));
        let contents = sources::contents(named, &spec.data.root, |i| format!("data.sources[{i}]"))?;
        let mut fingerprint = serde_json::json!({ "shard_format": SHARD_FORMAT });
        if !contents.is_empty() {
            fingerprint["sources"] = contents.into();
        }
        Ok(fingerprint)
    }

    /// Fetches the sources' packages, whose archive hashes the fingerprint covers.
    fn prepare(&self, spec: &Spec) -> anyhow::Result<()> {
        fetch_packages(&spec.data.sources, &spec.data.root)
    }

    fn run(&self, ctx: &StageContext) -> anyhow::Result<()> {
        let data = &ctx.spec.data;
        let mut accept_all = |_: &Pair| Ok(());
        let index = write_dataset(
            ctx,
            &data.sources,
            ctx.spec.data_seed(),
            data.splits,
            ctx.out_dir,
            "ingest",
            &mut accept_all,
        )?;
        tracing::info!(
            "ingest: {} shards, rows per split {:?}",
            index.shards.len(),
            index.rows
        );
        Ok(())
    }
}

/// Fetches the packages of `sources` that are not under `data_root` yet.
pub(crate) fn fetch_packages(sources: &[Source], data_root: &Path) -> anyhow::Result<()> {
    let raw = fetch::raw_dir(data_root);
    for package in sources.iter().flat_map(fetch::packages) {
        fetch::fetch(&raw, package)?;
    }
    Ok(())
}

/// Imports `sources` (drawing synthetic ones with `seed`) into a dataset at `dir` with the
/// spec's shard layout, split by `splits`; `accept` sees each pair first and may refuse it
/// with an error. `what` prefixes the log lines.
pub(crate) fn write_dataset(
    ctx: &StageContext,
    sources: &[Source],
    seed: u64,
    splits: Splits,
    dir: &Path,
    what: &str,
    accept: &mut dyn FnMut(&Pair) -> anyhow::Result<()>,
) -> anyhow::Result<Index> {
    let data = &ctx.spec.data;
    let layout = ShardLayout {
        row_group_rows: data.row_group_rows,
        max_bytes: data.shard_mib as u64 * 1024 * 1024,
    };
    let raw = fetch::raw_dir(&data.root);
    let mut writer = DatasetWriter::new(dir, layout, splits)?;
    for source in sources {
        let imported = sources::import(source, seed, &raw, ctx.progress, &mut |pair| {
            accept(&pair)?;
            writer.add(pair)
        })?;
        for done in imported {
            for (reason, &count) in &done.skipped {
                writer.skipped(&done.source, reason, count);
            }
            tracing::info!(
                "{what}: {}: {} pairs, skipped {:?}",
                done.source,
                done.pairs,
                done.skipped
            );
        }
    }
    writer.finish()
}
