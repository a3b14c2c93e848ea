//! The `ingest` stage: writes the spec's `data.sources` as canonical shards, fetching the raw
//! packages of real data sets into `<data.root>/raw/` when they are not there yet.

use limoe_core::kinds::INGEST;
use limoe_core::spec::Node;
use limoe_core::{Stage, StageContext};

use crate::shards::{DatasetWriter, ShardLayout};

/// Bumped whenever ingest writes different rows for the same spec (e.g. 2: synthetic labels
/// became colour + shape), so outputs of older builds are not reused from the cache.
const SHARD_FORMAT: u32 = 2;
use crate::sources;

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

    fn fingerprint(&self, _with: &Node) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::json!({ "shard_format": SHARD_FORMAT }))
    }

    fn run(&self, ctx: &StageContext) -> anyhow::Result<()> {
        let data = &ctx.spec.data;
        let layout = ShardLayout {
            row_group_rows: data.row_group_rows,
            max_bytes: data.shard_mib as u64 * 1024 * 1024,
        };
        let raw = data.root.join("raw");
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
