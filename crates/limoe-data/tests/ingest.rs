//! Shards written by the `ingest` stage read back as they were written.

use std::fs::File;
use std::path::Path;

use arrow_array::{Array, BinaryArray, Int32Array, StringArray};
use limoe_core::files::hash_file;
use limoe_core::runner::{Outcome, Runner};
use limoe_core::spec::Splits;
use limoe_core::{Progress, Registry, load_spec};
use limoe_data::IngestStage;
use limoe_data::schema::column;
use limoe_data::shards::{DatasetWriter, INDEX, Index, ShardLayout};
use limoe_data::split::Split;
use limoe_data::synthetic;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// One row read back: (key, image, caption, label, label_name).
type Row = (String, Vec<u8>, String, i32, String);

/// Every row of a shard, and its row-group count.
fn read_shard(path: &Path) -> (Vec<Row>, usize) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let groups = builder.metadata().num_row_groups();
    let mut rows = Vec::new();
    for batch in builder.build().unwrap() {
        let batch = batch.unwrap();
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        let (keys, captions, names) = (
            text(column::KEY),
            text(column::CAPTION),
            text(column::LABEL_NAME),
        );
        let images = batch.column_by_name(column::IMAGE).unwrap();
        let images = images.as_any().downcast_ref::<BinaryArray>().unwrap();
        let labels = batch.column_by_name(column::LABEL).unwrap();
        let labels = labels.as_any().downcast_ref::<Int32Array>().unwrap();
        for i in 0..batch.num_rows() {
            rows.push((
                keys.value(i).to_owned(),
                images.value(i).to_vec(),
                captions.value(i).to_owned(),
                labels.value(i),
                names.value(i).to_owned(),
            ));
        }
    }
    (rows, groups)
}

#[test]
fn writer_cuts_row_groups_and_shards_and_indexes_them() {
    let dir = tempfile::tempdir().unwrap();
    let fractions = Splits {
        val: 0.1,
        test: 0.1,
    };
    let layout = ShardLayout {
        row_group_rows: 16,
        max_bytes: 20_000,
    };
    let mut writer = DatasetWriter::new(dir.path(), layout, fractions).unwrap();
    let pairs: Vec<_> = (0..300).map(|i| synthetic::generate(5, i, 32)).collect();
    for p in &pairs {
        writer.add(p.clone()).unwrap();
    }
    let index = writer.finish().unwrap();
    let on_disk: Index =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(INDEX)).unwrap()).unwrap();
    assert_eq!(index, on_disk);
    assert_eq!(index.rows.values().sum::<usize>(), 300);
    assert_eq!(index.sources["synthetic"], 300);
    let train_shards = index
        .shards
        .iter()
        .filter(|s| s.split == Split::Train)
        .count();
    assert!(
        train_shards >= 2,
        "the size cap splits train into shards: {:?}",
        index.shards
    );

    let mut seen = 0;
    for shard in &index.shards {
        let path = dir.path().join(&shard.file);
        assert_eq!(
            hash_file(&path).unwrap(),
            (shard.bytes, shard.sha256.clone())
        );
        let (rows, groups) = read_shard(&path);
        assert_eq!(rows.len(), shard.rows);
        assert_eq!(groups, shard.rows.div_ceil(16), "{}", shard.file);
        for (key, image, caption, label, name) in rows {
            assert_eq!(Split::of_key(&key, &fractions), shard.split);
            let i: u64 = key.rsplit('-').next().unwrap().parse().unwrap();
            let original = &pairs[i as usize];
            assert_eq!(
                (image, caption),
                (original.image.clone(), original.caption.clone())
            );
            assert_eq!(
                (Some(label), Some(name)),
                (original.label, original.label_name.clone())
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 300);
}

#[test]
fn ingest_stage_runs_caches_and_rejects_sources_it_cannot_build() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::new();
    registry.register(IngestStage);
    let spec = dir.path().join("data.yaml");
    std::fs::write(
        &spec,
        "name: d\nseed: 3\ndata:\n  sources: [{synthetic: {pairs: 64, image_size: 16}}]\n",
    )
    .unwrap();
    let run = |spec: &Path| {
        let loaded = load_spec(spec, &[], &registry).unwrap_or_else(|e| panic!("{e}"));
        let runner = Runner::new(&registry, dir.path().join("runs"), Progress::new(false));
        let plan = runner.plan(&loaded, &[]).unwrap();
        runner.execute(&loaded, &plan).unwrap()
    };
    let first = run(&spec);
    assert!(
        matches!(first.stages[0].2, Outcome::Ran { .. }),
        "{:?}",
        first.stages
    );
    let index: Index =
        serde_json::from_str(&std::fs::read_to_string(first.stages[0].1.join(INDEX)).unwrap())
            .unwrap();
    assert_eq!(index.rows.values().sum::<usize>(), 64);
    assert_eq!(run(&spec).stages[0].2, Outcome::Cached);

    std::fs::write(&spec, "name: d\ndata:\n  sources: [mnist]\n").unwrap();
    let Outcome::Failed { error } = run(&spec).stages[0].2.clone() else {
        panic!("mnist is not built yet")
    };
    assert!(
        error.contains("data source `mnist` is not built yet"),
        "{error}"
    );
}
