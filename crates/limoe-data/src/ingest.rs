//! The `ingest` stage: writes the spec's `data.sources` as canonical shards, fetching the raw
//! packages of real data sets into `<data.root>/raw/` when they are not there yet.

use anyhow::Context;
use limoe_core::content_hashes::ContentHashes;
use limoe_core::kinds::INGEST;
use limoe_core::spec::Node;
use limoe_core::{Spec, Stage, StageContext};

use crate::fetch;
use crate::shards::{DatasetWriter, ShardLayout};
use crate::sources;

/// Bumped whenever ingest writes different rows for the same spec (e.g. 2: synthetic labels
/// became colour + shape), so outputs of older builds are not reused from the cache.
const SHARD_FORMAT: u32 = 2;

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

    /// The shard format, and the content of the sources whose rows the spec does not
    /// determine (by source index), so that a rewritten foreign file or a newer package
    /// reruns ingest.
    fn fingerprint(&self, _with: &Node, spec: &Spec) -> anyhow::Result<serde_json::Value> {
        let raw = fetch::raw_dir(&spec.data.root);
        let mut hashes = ContentHashes::user();
        let contents = (spec.data.sources.iter().enumerate())
            .filter_map(|(i, source)| {
                let content = sources::content(source, &raw, &mut hashes)
                    .with_context(|| format!("data.sources[{i}] ({})", source.name()));
                content.transpose().map(|c| c.map(|c| (i.to_string(), c)))
            })
            .collect::<anyhow::Result<serde_json::Map<_, _>>>();
        hashes.save();
        let contents = contents?;
        let mut fingerprint = serde_json::json!({ "shard_format": SHARD_FORMAT });
        if !contents.is_empty() {
            fingerprint["sources"] = contents.into();
        }
        Ok(fingerprint)
    }

    /// Fetches the sources' packages, whose archive hashes the fingerprint covers.
    fn prepare(&self, spec: &Spec) -> anyhow::Result<()> {
        let raw = fetch::raw_dir(&spec.data.root);
        for package in spec.data.sources.iter().flat_map(fetch::packages) {
            fetch::fetch(&raw, package)?;
        }
        Ok(())
    }

    fn run(&self, ctx: &StageContext) -> anyhow::Result<()> {
        let data = &ctx.spec.data;
        let layout = ShardLayout {
            row_group_rows: data.row_group_rows,
            max_bytes: data.shard_mib as u64 * 1024 * 1024,
        };
        let raw = fetch::raw_dir(&data.root);
        let mut writer = DatasetWriter::new(ctx.out_dir, layout, data.splits)?;
        for source in &data.sources {
            let imported =
                sources::import(source, ctx.spec.seed, &raw, ctx.progress, &mut |pair| {
                    writer.add(pair)
                })?;
            for done in imported {
                for (reason, &count) in &done.skipped {
                    writer.skipped(&done.source, reason, count);
                }
                tracing::info!(
                    "ingest: {}: {} pairs, skipped {:?}",
                    done.source,
                    done.pairs,
                    done.skipped
                );
            }
        }
        let index = writer.finish()?;
        tracing::info!(
            "ingest: {} shards, rows per split {:?}",
            index.shards.len(),
            index.rows
        );
        Ok(())
    }
}
