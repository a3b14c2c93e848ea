//! Batches: decoded, patchified and tokenized pairs; corrupt images skipped and counted;
//! prefetching changes nothing; batch positions resume exactly; errors reach the caller.

use std::path::Path;
use std::sync::Arc;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use limoe_core::spec::Splits;
use limoe_data::batch::{Batch, Batcher, Preprocess};
use limoe_data::loader::{Loader, LoaderOptions, Mode};
use limoe_data::patches::PatchConfig;
use limoe_data::shards::{DatasetWriter, Pair, ShardLayout};
use limoe_data::split::Split;
use limoe_data::synthetic;
use limoe_data::tokenizer::Tokenizer;

/// 60 synthetic pairs at 40 px; pairs 3 and 17 have corrupt image bytes, pair 5 is a JPEG.
fn dataset(dir: &Path) -> Vec<Pair> {
    let layout = ShardLayout {
        row_group_rows: 8,
        max_bytes: 30_000,
    };
    let mut writer = DatasetWriter::new(dir, layout, Splits::ALL_TRAIN).unwrap();
    let mut pairs = Vec::new();
    for i in 0..60 {
        let mut pair = synthetic::generate(4, i, 40);
        if i == 3 || i == 17 {
            pair.image = b"\x89PNG\r\n\x1a\n broken".to_vec();
        }
        if i == 5 {
            let img = RgbImage::from_pixel(24, 48, Rgb([10, 200, 30]));
            let mut out = std::io::Cursor::new(Vec::new());
            DynamicImage::ImageRgb8(img)
                .write_to(&mut out, ImageFormat::Jpeg)
                .unwrap();
            pair.image = out.into_inner();
        }
        writer.add(pair.clone()).unwrap();
        pairs.push(pair);
    }
    writer.finish().unwrap();
    pairs
}

fn preprocess() -> Preprocess {
    Preprocess {
        patches: PatchConfig::new(32, 8).unwrap(),
        tokenizer: Arc::new(Tokenizer::new(4096, 16).unwrap()),
    }
}

fn batcher(dir: &Path, mode: Mode, batch_size: usize) -> Batcher {
    let options = LoaderOptions {
        split: Split::Train,
        shuffle_buffer: 20,
        seed: 3,
        epoch: 0,
    };
    let loader = Loader::with_mode(dir, options, mode).unwrap();
    Batcher::new(loader, preprocess(), batch_size, false).unwrap()
}

#[test]
fn batches_hold_patches_tokens_and_labels_and_skip_corrupt_images() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dataset(dir.path());
    let batches: Vec<Batch> = batcher(dir.path(), Mode::Epoch, 16)
        .map(Result::unwrap)
        .collect();
    let sizes: Vec<usize> = batches.iter().map(Batch::len).collect();
    assert_eq!(sizes, [16, 16, 16, 10], "58 decodable pairs");
    let last = &batches[3].position.counters;
    assert_eq!((last.yielded, last.undecodable), (58, 2));
    let p = preprocess();
    for batch in &batches {
        let n = batch.len();
        assert_eq!(
            (batch.num_patches, batch.patch_dim, batch.text_length),
            (16, 192, 16)
        );
        assert_eq!(batch.patches.len(), n * 16 * 192);
        assert_eq!((batch.tokens.len(), batch.mask.len()), (n * 16, n * 16));
        for (i, key) in batch.keys.iter().enumerate() {
            assert!(key != "synthetic-4-3" && key != "synthetic-4-17");
            let index: usize = key.rsplit('-').next().unwrap().parse().unwrap();
            let pair = &pairs[index];
            assert_eq!(batch.captions[i], pair.caption);
            assert_eq!(batch.labels[i], pair.label);
            assert_eq!(batch.label_names[i], pair.label_name);
            let mut want = vec![0.0; 16 * 192];
            p.patches.bytes_to_patches(&pair.image, &mut want).unwrap();
            assert_eq!(batch.patches[i * 3072..(i + 1) * 3072], want, "{key}");
            let (ids, mask) = p.tokenizer.encode(&pair.caption);
            assert_eq!(batch.tokens[i * 16..(i + 1) * 16], ids);
            assert_eq!(batch.mask[i * 16..(i + 1) * 16], mask);
            assert_eq!(ids[0], 4094, "start token of a 4096 vocabulary");
        }
    }
    // The JPEG (24x48, green) is resized to 32x32 and lands in the batches.
    let jpeg = batches
        .iter()
        .find_map(|b| {
            b.keys
                .iter()
                .position(|k| k == "synthetic-4-5")
                .map(|i| (b, i))
        })
        .unwrap();
    let green = (200.0 / 255.0 - 0.457_827_5) / 0.261_302_6;
    let value = jpeg.0.patches[jpeg.1 * 3072 + 1];
    assert!((value - green).abs() < 0.1, "{value}");

    let mut dropping = Batcher::new(
        Loader::open(dir.path(), LoaderOptions::in_file_order(Split::Train)).unwrap(),
        preprocess(),
        16,
        true,
    )
    .unwrap();
    assert_eq!(
        dropping.by_ref().count(),
        3,
        "drop_last drops the short batch"
    );
}

#[test]
fn prefetching_gives_the_same_batches_and_positions_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let plain: Vec<Batch> = batcher(dir.path(), Mode::Resampled, 7)
        .take(20)
        .map(Result::unwrap)
        .collect();
    let prefetched: Vec<Batch> = batcher(dir.path(), Mode::Resampled, 7)
        .prefetch(3)
        .unwrap()
        .take(20)
        .map(Result::unwrap)
        .collect();
    assert_eq!(plain, prefetched);
    assert!(plain[19].position.epoch >= 2, "crosses epochs");
    for cut in [0, 4, 8, 13] {
        let position = &plain[cut].position;
        let loader = Loader::resume(dir.path(), position).unwrap();
        let resumed: Vec<Batch> = Batcher::new(loader, preprocess(), 7, false)
            .unwrap()
            .prefetch(2)
            .unwrap()
            .take(19 - cut)
            .map(Result::unwrap)
            .collect();
        assert_eq!(resumed, plain[cut + 1..], "resumed after batch {cut}");
    }
}

#[test]
fn errors_of_the_background_thread_reach_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    std::fs::write(dir.path().join("train-00000.parquet"), b"not parquet").unwrap();
    let mut prefetcher = batcher(dir.path(), Mode::Resampled, 8).prefetch(2).unwrap();
    let mut results = Vec::new();
    for item in prefetcher.by_ref() {
        results.push(item);
        assert!(results.len() < 100, "the stream ends after the error");
    }
    let err = results
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("an error");
    assert!(
        format!("{err:#}").contains("train-00000.parquet"),
        "{err:#}"
    );
    assert!(
        results.last().unwrap().is_err(),
        "the error ends the stream"
    );
    assert!(prefetcher.next().is_none());
}

#[test]
fn rank_shares_are_disjoint_and_rebuild_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let whole = batcher(dir.path(), Mode::Resampled, 6)
        .next_batch()
        .unwrap()
        .unwrap();
    let shares: Vec<Batch> = (0..3).map(|rank| whole.share(rank, 3).unwrap()).collect();
    let field =
        |get: fn(&Batch) -> Vec<String>| -> Vec<String> { shares.iter().flat_map(get).collect() };
    assert_eq!(field(|b| b.keys.clone()), whole.keys);
    assert_eq!(field(|b| b.captions.clone()), whole.captions);
    let patches: Vec<f32> = shares.iter().flat_map(|b| b.patches.clone()).collect();
    assert_eq!(patches, whole.patches);
    let tokens: Vec<u32> = shares.iter().flat_map(|b| b.tokens.clone()).collect();
    assert_eq!(tokens, whole.tokens);
    let mask: Vec<u8> = shares.iter().flat_map(|b| b.mask.clone()).collect();
    assert_eq!(mask, whole.mask);
    assert!(
        shares
            .iter()
            .all(|b| b.len() == 2 && b.position == whole.position)
    );
    let uneven = whole.share(0, 4).unwrap_err().to_string();
    assert!(
        uneven.contains("6 examples does not split evenly over 4 ranks"),
        "{uneven}"
    );
}
