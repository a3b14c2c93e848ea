//! The claims' per-patch routing pictures (the LIMoE paper's qualitative figure): test images
//! as a trained trial routes them, each patch tinted by its expert, per MoE block.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use limoe_analysis::RunDirs;
use limoe_analysis::plot::{PatchRouting, plot_patch_routing};
use limoe_analysis::report::PLOTS;
use limoe_core::Registry;
use limoe_core::kinds::INGEST;
use limoe_core::sweep::SweepRecord;
use limoe_data::named_images::NamedImage;
use limoe_data::shard_file::ShardFile;
use limoe_data::shards::{Index, Pair};
use limoe_data::split::Split;
use limoe_train::infer::route::route_image;

use crate::checkpoint::ModelArgs;

/// Test images drawn per report.
const IMAGES: usize = 12;

/// Draws [`IMAGES`] test images of trial `id` (taken in turn from each source of its test
/// split), routed by its newest checkpoint, into `out/plots/routing/`; returns each picture's
/// path relative to `out` and its caption.
pub(crate) fn patch_routing_pictures(
    registry: &Registry,
    record: &SweepRecord,
    id: &str,
    dirs: &RunDirs,
    out: &Path,
) -> anyhow::Result<Vec<(String, String)>> {
    let ingest = (record.trials.iter())
        .find(|t| t.id == id)
        .and_then(|t| t.stages.iter().find(|s| s.kind == INGEST));
    let Some(ingest) = ingest else {
        return Ok(Vec::new());
    };
    let pairs = test_pairs(&ingest.dir)?;
    let trained = ModelArgs::newest(dirs.train.clone()).open(registry, Path::new("."))?;
    let relative = format!("{PLOTS}/routing");
    let dir = out.join(&relative);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut pictures = Vec::new();
    for (i, pair) in pairs.iter().enumerate() {
        let image = NamedImage {
            name: pair.key.clone(),
            bytes: pair.image.clone(),
        };
        let routed = route_image(&trained.built, &image)?;
        for block in &routed.blocks {
            let title = format!("{} - block {}", pair.key, block.block);
            let file = format!("{i:02}.block{}.png", block.block);
            let picture = PatchRouting {
                title: title.clone(),
                view: &routed.view,
                side: routed.side,
                grid: routed.grid,
                experts: &block.experts,
            };
            plot_patch_routing(&picture, &dir.join(&file))?;
            pictures.push((
                format!("{relative}/{file}"),
                format!("{title}: \"{}\"", pair.caption),
            ));
        }
    }
    Ok(pictures)
}

/// [`IMAGES`] pairs of the test split in `dataset`, one from each source in turn.
fn test_pairs(dataset: &Path) -> anyhow::Result<Vec<Pair>> {
    let index = Index::read(dataset)?;
    let mut by_source: BTreeMap<String, Vec<Pair>> = BTreeMap::new();
    for shard in index.shards.iter().filter(|s| s.split == Split::Test) {
        for batch in ShardFile::open(&dataset.join(&shard.file), 256)? {
            for pair in batch? {
                let taken = by_source.entry(pair.source.clone()).or_default();
                if taken.len() < IMAGES {
                    taken.push(pair);
                }
            }
        }
    }
    let mut sources: Vec<std::vec::IntoIter<Pair>> =
        by_source.into_values().map(Vec::into_iter).collect();
    let mut picked = Vec::with_capacity(IMAGES);
    while picked.len() < IMAGES {
        let before = picked.len();
        for source in &mut sources {
            if picked.len() < IMAGES
                && let Some(pair) = source.next()
            {
                picked.push(pair);
            }
        }
        if picked.len() == before {
            break;
        }
    }
    Ok(picked)
}
