//! The streaming loader: every pair once per epoch, seeded orders, skipped bad rows, errors
//! that name the file.

use std::collections::BTreeSet;
use std::path::Path;

use limoe_core::spec::Splits;
use limoe_data::loader::{Loader, LoaderOptions};
use limoe_data::shards::{DatasetWriter, Pair, ShardLayout};
use limoe_data::split::Split;

const ALL_TRAIN: Splits = Splits {
    val: 0.0,
    test: 0.0,
};

fn pair(i: usize, caption: &str) -> Pair {
    Pair {
        key: format!("k{i:04}"),
        image: vec![1, 2, 3, i as u8],
        caption: caption.to_owned(),
        label: i.is_multiple_of(2).then_some(i as i32),
        label_name: None,
        source: "test".into(),
    }
}

/// 100 pairs in shards of 8-row groups, pairs 10 and 20 with empty captions.
fn dataset(dir: &Path) {
    let layout = ShardLayout {
        row_group_rows: 8,
        max_bytes: 2_000,
    };
    let mut writer = DatasetWriter::new(dir, layout, ALL_TRAIN).unwrap();
    for i in 0..100 {
        let caption = if i == 10 || i == 20 { " " } else { "a caption" };
        writer.add(pair(i, caption)).unwrap();
    }
    writer.finish().unwrap();
}

fn keys(dir: &Path, shuffle_buffer: usize, seed: u64, epoch: u64) -> (Vec<String>, usize) {
    let options = LoaderOptions {
        split: Split::Train,
        shuffle_buffer,
        seed,
        epoch,
    };
    let mut loader = Loader::open(dir, options).unwrap();
    let keys = loader.by_ref().map(|p| p.unwrap().key).collect();
    (keys, loader.skipped())
}

#[test]
fn every_pair_once_per_epoch_in_a_seeded_order() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let (in_order, skipped) = keys(dir.path(), 0, 0, 0);
    assert_eq!(skipped, 2);
    let expected: Vec<String> = (0..100)
        .filter(|i| *i != 10 && *i != 20)
        .map(|i| format!("k{i:04}"))
        .collect();
    assert_eq!(in_order, expected, "without a shuffle buffer, file order");

    let (a, _) = keys(dir.path(), 16, 7, 0);
    let (b, _) = keys(dir.path(), 16, 7, 0);
    let (c, _) = keys(dir.path(), 16, 7, 1);
    assert_eq!(a, b, "same seed and epoch, same order");
    assert_ne!(a, c, "another epoch, another order");
    assert_ne!(a, in_order);
    for order in [&a, &c] {
        let set: BTreeSet<&String> = order.iter().collect();
        assert_eq!(set.len(), 98);
        assert_eq!(set, expected.iter().collect());
    }
}

#[test]
fn labels_round_trip_as_optional() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let options = LoaderOptions {
        split: Split::Train,
        shuffle_buffer: 0,
        seed: 0,
        epoch: 0,
    };
    let pairs: Vec<Pair> = Loader::open(dir.path(), options)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(pairs[0], pair(0, "a caption"));
    assert_eq!(pairs[1].label, None);
}

#[test]
fn missing_index_and_damaged_shards_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let options = LoaderOptions {
        split: Split::Train,
        shuffle_buffer: 4,
        seed: 0,
        epoch: 0,
    };
    let err = Loader::open(dir.path(), options).err().unwrap().to_string();
    assert!(
        err.contains("index.json") && err.contains("ingest stage"),
        "{err}"
    );

    dataset(dir.path());
    std::fs::write(dir.path().join("train-00000.parquet"), b"not parquet").unwrap();
    let results: Vec<_> = Loader::open(
        dir.path(),
        LoaderOptions {
            shuffle_buffer: 0,
            ..options
        },
    )
    .unwrap()
    .collect();
    let err = results
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("an error");
    let text = format!("{err:#}");
    assert!(text.contains("train-00000.parquet"), "{text}");
    assert!(text.contains("--force ingest"), "{text}");
}
