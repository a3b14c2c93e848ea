//! The streaming loader: every pair once per epoch, seeded orders, skipped bad rows, errors
//! that name the file.

use std::collections::BTreeSet;
use std::path::Path;

use limoe_core::spec::Splits;
use limoe_data::loader::{Loader, LoaderOptions, Mode, Position};
use limoe_data::shards::{DatasetWriter, Pair, ShardLayout};
use limoe_data::split::Split;

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
    let mut writer = DatasetWriter::new(dir, layout, Splits::ALL_TRAIN).unwrap();
    for i in 0..100 {
        let caption = if i == 10 || i == 20 { " " } else { "a caption" };
        writer.add(pair(i, caption)).unwrap();
    }
    writer.finish().unwrap();
}

fn keys(dir: &Path, shuffle_buffer: usize, seed: u64, epoch: u64) -> (Vec<String>, u64) {
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
    let options = LoaderOptions::in_file_order(Split::Train);
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

/// One flipped bit leaves a shard's size and often its Parquet structure intact: the hash
/// `index.json` records finds it before any row is read.
#[test]
fn a_same_size_change_of_a_shard_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let shard = dir.path().join("train-00000.parquet");
    let mut bytes = std::fs::read(&shard).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&shard, &bytes).unwrap();
    let results: Vec<_> = Loader::open(dir.path(), options(0)).unwrap().collect();
    let err = results
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("the changed shard is an error");
    let text = format!("{err:#}");
    assert!(
        text.contains("train-00000.parquet")
            && text.contains("does not match index.json")
            && text.contains("--force ingest"),
        "{text}"
    );
    assert!(
        results.iter().take_while(|r| r.is_ok()).count() == 0,
        "no row of the changed shard is delivered"
    );
}

fn options(shuffle_buffer: usize) -> LoaderOptions {
    LoaderOptions {
        split: Split::Train,
        shuffle_buffer,
        seed: 11,
        epoch: 0,
    }
}

/// The keys of the next `n` pairs (all when `n` is None).
fn take(loader: &mut Loader, n: Option<usize>) -> Vec<String> {
    let n = n.unwrap_or(usize::MAX);
    loader.take(n).map(|p| p.unwrap().key).collect()
}

/// A position survives a JSON round trip (as it will in a checkpoint).
fn saved(loader: &Loader) -> Position {
    let json = serde_json::to_string(&loader.position()).unwrap();
    serde_json::from_str(&json).unwrap()
}

#[test]
fn resume_yields_exactly_the_remaining_pairs_of_an_epoch() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    for shuffle_buffer in [0, 5, 16, 1000] {
        let mut whole = Loader::open(dir.path(), options(shuffle_buffer)).unwrap();
        let all = take(&mut whole, None);
        assert_eq!(all.len(), 98);
        let end = whole.counters();
        assert_eq!((end.yielded, end.empty_caption), (98, 2));
        for cut in [0, 1, 7, 8, 9, 37, 50, 90, 97, 98] {
            let mut first = Loader::open(dir.path(), options(shuffle_buffer)).unwrap();
            assert_eq!(take(&mut first, Some(cut)), all[..cut]);
            let position = saved(&first);
            let mut resumed = Loader::resume(dir.path(), &position).unwrap();
            assert_eq!(resumed.position(), position);
            assert_eq!(
                take(&mut resumed, None),
                all[cut..],
                "buffer {shuffle_buffer}, cut at {cut}"
            );
            assert_eq!(resumed.counters(), end, "counters carry over");
        }
    }
}

#[test]
fn resampled_mode_rolls_over_epochs_and_resumes_across_the_boundary() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let mut endless = Loader::with_mode(dir.path(), options(16), Mode::Resampled).unwrap();
    let all = take(&mut endless, Some(300));
    assert_eq!(all.len(), 300, "no end");
    assert_eq!(endless.epoch(), 3, "300 of 98 rows a pass: epochs 0 to 3");
    let seen: BTreeSet<&String> = all.iter().collect();
    assert_eq!(seen.len(), 98);
    let mut count = std::collections::BTreeMap::<&String, usize>::new();
    for key in &all[..196] {
        *count.entry(key).or_default() += 1;
    }
    assert!(
        count.values().all(|&c| c <= 3),
        "rows repeat once per epoch"
    );
    // Epochs have their own orders: the second pass is not the first again.
    let mut one_epoch = Loader::open(dir.path(), options(16)).unwrap();
    assert_eq!(take(&mut one_epoch, None)[..80], all[..80]);
    assert_ne!(all[98..178], all[..80]);

    for cut in [0, 60, 97, 98, 99, 120, 196, 205] {
        let mut first = Loader::with_mode(dir.path(), options(16), Mode::Resampled).unwrap();
        assert_eq!(take(&mut first, Some(cut)), all[..cut]);
        let mut resumed = Loader::resume(dir.path(), &saved(&first)).unwrap();
        assert_eq!(
            take(&mut resumed, Some(300 - cut)),
            all[cut..],
            "cut at {cut}"
        );
    }
    // In file order too.
    let mut plain = Loader::with_mode(dir.path(), options(0), Mode::Resampled).unwrap();
    let plain_all = take(&mut plain, Some(250));
    assert_eq!(
        plain_all[..98],
        plain_all[98..196],
        "file order every epoch"
    );
    let mut first = Loader::with_mode(dir.path(), options(0), Mode::Resampled).unwrap();
    take(&mut first, Some(101));
    let mut resumed = Loader::resume(dir.path(), &saved(&first)).unwrap();
    assert_eq!(take(&mut resumed, Some(149)), plain_all[101..]);
}

#[test]
fn resuming_on_other_data_is_an_error() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    dataset(a.path());
    let mut writer = DatasetWriter::new(
        b.path(),
        ShardLayout {
            row_group_rows: 8,
            max_bytes: 2_000,
        },
        Splits::ALL_TRAIN,
    )
    .unwrap();
    for i in 0..50 {
        writer.add(pair(i, "other")).unwrap();
    }
    writer.finish().unwrap();
    let mut loader = Loader::open(a.path(), options(16)).unwrap();
    take(&mut loader, Some(10));
    let err = Loader::resume(b.path(), &loader.position())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("other data"), "{err}");
}

#[test]
fn an_endless_loader_over_no_usable_rows_stops_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let layout = ShardLayout {
        row_group_rows: 4,
        max_bytes: 2_000,
    };
    let mut writer = DatasetWriter::new(dir.path(), layout, Splits::ALL_TRAIN).unwrap();
    for i in 0..10 {
        writer.add(pair(i, "")).unwrap();
    }
    writer.finish().unwrap();
    let mut loader = Loader::with_mode(dir.path(), options(4), Mode::Resampled).unwrap();
    let err = loader.next().unwrap().err().unwrap().to_string();
    assert!(err.contains("no usable rows"), "{err}");
    assert!(loader.next().is_none());
    assert_eq!(loader.counters().empty_caption, 10);
    let mut val = Loader::with_mode(
        dir.path(),
        LoaderOptions {
            split: Split::Val,
            ..options(4)
        },
        Mode::Resampled,
    )
    .unwrap();
    assert!(val.next().unwrap().is_err(), "an empty split");
}
