//! `limoe bench loader`: pairs/s through the loader against single-threaded loops over the
//! same pairs.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use limoe_core::spec::Splits;
use limoe_data::batch::{Batcher, Preprocess};
use limoe_data::decode::decode_rgb;
use limoe_data::loader::{Loader, LoaderOptions};
use limoe_data::patches::PatchConfig;
use limoe_data::shards::{DatasetWriter, Pair, ShardLayout};
use limoe_data::split::Split;
use limoe_data::synthetic;
use limoe_data::tokenizer::Tokenizer;

use crate::model::LoaderRate;

/// One loader measurement: images drawn at `source` px, resized to `side` px.
struct Case {
    side: u32,
    source: u32,
    patch: u32,
    pairs: u64,
}

/// Pairs/s through the loader (shuffled Parquet reads, parallel decode + resize + patchify +
/// tokenize, batching, prefetch thread) next to single-threaded loops over the same pairs held
/// in memory: decode only, and the whole per-pair work. Returns the loader's rate per size.
pub(crate) fn loader() -> anyhow::Result<Vec<LoaderRate>> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "loader: pairs/s on synthetic shards, batches of 64, text length 16, vocabulary 8192, \
         {threads} CPU threads"
    );
    println!(
        "  {:<15} {:>10} {:>12} {:>12} {:>8}",
        "size", "loader", "1-thr full", "1-thr decode", "ratio"
    );
    let tokenizer = Arc::new(Tokenizer::new(8192, 16)?);
    let cases = [
        Case {
            side: 32,
            source: 40,
            patch: 8,
            pairs: 2048,
        },
        Case {
            side: 64,
            source: 80,
            patch: 8,
            pairs: 2048,
        },
        Case {
            side: 224,
            source: 256,
            patch: 16,
            pairs: 512,
        },
    ];
    let mut rates = Vec::with_capacity(cases.len());
    for case in cases {
        let dir = tempfile::tempdir()?;
        write_dataset(dir.path(), &case)?;
        let preprocess = Preprocess {
            patches: PatchConfig::new(case.side, case.patch)?,
            tokenizer: tokenizer.clone(),
        };
        let options = LoaderOptions {
            split: Split::Train,
            shuffle_buffer: 512,
            seed: 0,
            epoch: 0,
        };
        let start = Instant::now();
        let batcher = Batcher::new(
            Loader::open(dir.path(), options)?,
            preprocess.clone(),
            64,
            false,
        )?;
        let mut delivered = 0;
        for batch in batcher.prefetch(4)? {
            delivered += batch?.len();
        }
        let loader_rate = delivered as f64 / start.elapsed().as_secs_f64();

        let pairs: Vec<Pair> = Loader::open(
            dir.path(),
            LoaderOptions {
                shuffle_buffer: 0,
                ..options
            },
        )?
        .collect::<anyhow::Result<_>>()?;
        let start = Instant::now();
        for pair in &pairs {
            std::hint::black_box(decode_rgb(&pair.image)?);
        }
        let decode_rate = pairs.len() as f64 / start.elapsed().as_secs_f64();
        let mut patches = vec![0.0; preprocess.patches.image_len()];
        let start = Instant::now();
        for pair in &pairs {
            preprocess
                .patches
                .bytes_to_patches(&pair.image, &mut patches)?;
            std::hint::black_box(tokenizer.encode(&pair.caption));
        }
        let full_rate = pairs.len() as f64 / start.elapsed().as_secs_f64();
        println!(
            "  {:<15} {loader_rate:>10.0} {full_rate:>12.0} {decode_rate:>12.0} {:>7.2}x",
            format!("{}px ({}px src)", case.side, case.source),
            loader_rate / full_rate
        );
        rates.push(LoaderRate {
            side: case.side as usize,
            pairs_per_second: loader_rate,
        });
    }
    println!(
        "  loader: Parquet to batches through the prefetch thread; 1-thr full: decode + resize \
         + patchify + tokenize in one thread; ratio = loader / 1-thr full"
    );
    Ok(rates)
}

/// Synthetic pairs drawn at the case's source size, all in the train split.
fn write_dataset(dir: &Path, case: &Case) -> anyhow::Result<()> {
    let layout = ShardLayout {
        row_group_rows: 64,
        max_bytes: 64 << 20,
    };
    let mut writer = DatasetWriter::new(dir, layout, Splits::ALL_TRAIN)?;
    for index in 0..case.pairs {
        writer.add(synthetic::generate(0, index, case.source))?;
    }
    writer.finish()?;
    Ok(())
}
