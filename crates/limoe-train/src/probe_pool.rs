//! The pool a training source's few-shot probe draws its shots from: a seeded, stratified
//! sample of the train split, so that every class of the dataset is in it however the split's
//! files are ordered (the first N pairs in file order can miss a dataset entirely).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use limoe_core::random::{SplitMix64, mix64};
use limoe_data::loader::{Loader, LoaderOptions, Mode};
use limoe_data::split::Split;

/// The keys of up to `per_class` train-split pairs of each class of each of `datasets`
/// (pairs whose key starts with the dataset's name), drawn uniformly with `seed` by
/// reservoir sampling over the split in file order. Reads the split's rows once, decoding
/// nothing.
pub fn draw_pool(
    data_dir: &Path,
    datasets: &[&str],
    per_class: usize,
    seed: u64,
) -> anyhow::Result<HashSet<String>> {
    let options = LoaderOptions::in_file_order(Split::Train);
    let mut reservoirs: BTreeMap<(usize, i32), Reservoir> = BTreeMap::new();
    for pair in Loader::with_mode(data_dir, options, Mode::Epoch)? {
        let pair = pair?;
        let (Some(dataset), Some(label)) = (
            datasets.iter().position(|d| pair.key.starts_with(d)),
            pair.label,
        ) else {
            continue;
        };
        let reservoir = reservoirs.entry((dataset, label)).or_insert_with(|| {
            let stream = mix64(seed ^ mix64(dataset as u64) ^ (label as u64).rotate_left(32));
            Reservoir::new(per_class, stream)
        });
        reservoir.offer(pair.key);
    }
    Ok(reservoirs.into_values().flat_map(|r| r.kept).collect())
}

/// A uniform sample of at most `size` of the items offered (Algorithm R).
struct Reservoir {
    size: usize,
    seen: u64,
    kept: Vec<String>,
    rng: SplitMix64,
}

impl Reservoir {
    fn new(size: usize, seed: u64) -> Reservoir {
        Reservoir {
            size,
            seen: 0,
            kept: Vec::with_capacity(size),
            rng: SplitMix64::new(seed),
        }
    }

    fn offer(&mut self, item: String) {
        self.seen += 1;
        if self.kept.len() < self.size {
            self.kept.push(item);
        } else {
            let slot = self.rng.below(self.seen) as usize;
            if slot < self.size {
                self.kept[slot] = item;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use limoe_core::spec::Splits;
    use limoe_data::shards::{DatasetWriter, ShardLayout};
    use limoe_data::synthetic;

    use super::*;

    #[test]
    fn every_class_of_a_dataset_last_in_file_order_is_in_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let layout = ShardLayout {
            row_group_rows: 32,
            max_bytes: 1 << 30,
        };
        let mut writer = DatasetWriter::new(dir.path(), layout, Splits::ALL_TRAIN).unwrap();
        for index in 0..400 {
            writer.add(synthetic::generate(1, index, 8)).unwrap();
        }
        for index in 0..40 {
            let mut pair = synthetic::generate(2, index, 8);
            pair.key = format!("late-{index}");
            pair.source = "late".into();
            pair.label = Some(index as i32 % 4);
            pair.label_name = Some(format!("class {}", index % 4));
            writer.add(pair).unwrap();
        }
        writer.finish().unwrap();
        let pool = draw_pool(dir.path(), &["late"], 3, 7).unwrap();
        assert_eq!(pool.len(), 12, "3 of each of the 4 classes: {pool:?}");
        assert_eq!(pool, draw_pool(dir.path(), &["late"], 3, 7).unwrap());
        assert_ne!(pool, draw_pool(dir.path(), &["late"], 3, 8).unwrap());
        let both = draw_pool(dir.path(), &["synthetic", "late"], 1, 7).unwrap();
        assert_eq!(both.len(), 24 + 4);
    }

    #[test]
    fn a_reservoir_keeps_a_uniform_sample() {
        let mut hits = [0usize; 10];
        for trial in 0..2000 {
            let mut reservoir = Reservoir::new(3, trial);
            (0..10).for_each(|i| reservoir.offer(i.to_string()));
            assert_eq!(reservoir.kept.len(), 3);
            for item in &reservoir.kept {
                hits[item.parse::<usize>().unwrap()] += 1;
            }
        }
        // Each item is kept with probability 3/10: 600 of 2000 trials, within 5 sigma.
        assert!(
            hits.iter().all(|&h| (h as f64 - 600.0).abs() < 5.0 * 20.5),
            "{hits:?}"
        );
    }
}
