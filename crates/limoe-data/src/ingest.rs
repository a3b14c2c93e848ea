//! The `ingest` stage: writes the spec's `data.sources` as canonical shards.

use anyhow::bail;

use limoe_core::spec::{Section, Source};
use limoe_core::{Stage, StageContext};

use crate::shards::{DatasetWriter, ShardLayout};
use crate::synthetic;

/// The `ingest` stage kind.
pub struct IngestStage;

impl Stage for IngestStage {
    fn kind(&self) -> &'static str {
        "ingest"
    }

    fn about(&self) -> &'static str {
        "writes data.sources as Parquet shards (train/val/test by key hash) with index.json"
    }

    fn reads(&self) -> &'static [Section] {
        &[Section::Seed, Section::Data]
    }

    fn run(&self, ctx: &StageContext) -> anyhow::Result<()> {
        let data = &ctx.spec.data;
        let layout = ShardLayout {
            row_group_rows: data.row_group_rows,
            max_bytes: data.shard_mib as u64 * 1024 * 1024,
        };
        let mut writer = DatasetWriter::new(ctx.out_dir, layout, data.splits)?;
        for source in &data.sources {
            match source {
                Source::Synthetic(settings) => {
                    let bar = ctx.progress.bar(settings.pairs as u64, "synthetic");
                    for index in 0..settings.pairs as u64 {
                        writer.add(synthetic::generate(
                            ctx.spec.seed,
                            index,
                            settings.image_size,
                        ))?;
                        bar.inc(1);
                    }
                    bar.finish_and_clear();
                }
                other => bail!(
                    "data source `{}` is not built yet; this build ingests `synthetic` only \
                     (the importers of real data sets are still open work)",
                    other.name()
                ),
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
