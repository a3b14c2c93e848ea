//! Shards written by the `ingest` stage read back as they were written.

use std::fs::File;
use std::path::Path;

use limoe_core::files::hash_file;
use limoe_core::runner::{Outcome, Runner};
use limoe_core::spec::Splits;
use limoe_core::{Progress, Registry, load_spec};
use limoe_data::IngestStage;
use limoe_data::fetch::{self, MARKER};
use limoe_data::loader::{Loader, LoaderOptions};
use limoe_data::shards::{DatasetWriter, INDEX, Index, ShardLayout};
use limoe_data::split::Split;
use limoe_data::synthetic;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Rows and row groups of a shard, from its Parquet footer.
fn footer_counts(path: &Path) -> (usize, usize) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let meta = builder.metadata();
    (
        meta.file_metadata().num_rows() as usize,
        meta.num_row_groups(),
    )
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

    for shard in &index.shards {
        let path = dir.path().join(&shard.file);
        assert_eq!(
            hash_file(&path).unwrap(),
            (shard.bytes, shard.sha256.clone())
        );
        let (rows, groups) = footer_counts(&path);
        assert_eq!(rows, shard.rows);
        assert_eq!(groups, shard.row_groups);
        assert_eq!(groups, shard.rows.div_ceil(16), "{}", shard.file);
    }
    let mut seen = 0;
    for split in Split::ALL {
        let options = LoaderOptions::in_file_order(split);
        for pair in Loader::open(dir.path(), options).unwrap() {
            let pair = pair.unwrap();
            assert_eq!(Split::of_key(&pair.key, &fractions), split);
            let i: usize = pair.key.rsplit('-').next().unwrap().parse().unwrap();
            assert_eq!(pair, pairs[i], "read back as written");
            seen += 1;
        }
    }
    assert_eq!(seen, 300);
    assert_eq!(
        index.classes["synthetic"].len(),
        24,
        "every class of every split"
    );
    assert_eq!(index.classes["synthetic"][&0], "red circle");
}

#[test]
fn one_label_with_two_names_is_an_error_naming_both_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let layout = ShardLayout {
        row_group_rows: 16,
        max_bytes: 1 << 20,
    };
    let mut writer = DatasetWriter::new(dir.path(), layout, Splits::default()).unwrap();
    let first = synthetic::generate(5, 0, 16);
    let mut second = synthetic::generate(5, 1, 16);
    second.label = first.label;
    second.label_name = Some("mauve blob".into());
    writer.add(first.clone()).unwrap();
    let error = writer.add(second).unwrap_err().to_string();
    for part in [first.key.as_str(), "synthetic-5-1", "mauve blob"] {
        assert!(error.contains(part), "{error}");
    }
}

/// Writes `files` under `dir` and marks it as a completed fetch.
fn fake_package(dir: &Path, files: &[(&str, Vec<u8>)]) {
    for (rel, bytes) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    mark_fetched(dir, "first");
}

/// Writes the marker of a completed fetch whose archive had hash `sha256`.
fn mark_fetched(dir: &Path, sha256: &str) {
    let marker =
        serde_json::json!({"archive": "a.deb", "bytes": 1, "sha256": sha256, "seconds": 0.0});
    std::fs::write(dir.join(MARKER), marker.to_string()).unwrap();
}

#[test]
fn ingest_stage_runs_caches_and_imports_fetched_sources() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::new();
    registry.register(IngestStage);
    let spec = dir.path().join("data.yaml");
    std::fs::write(
        &spec,
        "name: d\nseed: 3\ndata:\n  sources: [{synthetic: {pairs: 64, image_size: 16}}]\nstages: [{id: ingest, uses: ingest}]\n",
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

    // Real sources, already "fetched" into data.root/raw as small fixtures.
    let root = dir.path().join("data");
    let raw = root.join("raw");
    let digits: Vec<(String, Vec<u8>)> = (0..10)
        .map(|d| {
            let values = vec!["0.5"; 2 * 784].join(",");
            (
                format!("package/src/digits/{d}.json"),
                format!("{{\"data\": [{values}]}}").into_bytes(),
            )
        })
        .collect();
    let digits: Vec<(&str, Vec<u8>)> = digits
        .iter()
        .map(|(p, b)| (p.as_str(), b.clone()))
        .collect();
    fake_package(&fetch::MNIST.dir(&raw), &digits);
    let stamp = synthetic::generate(1, 0, 8).image;
    let stamps = "usr/share/tuxpaint/stamps";
    fake_package(
        &fetch::TUXPAINT_STAMPS.dir(&raw),
        &[
            (
                &format!("{stamps}/animals/cat.txt"),
                b"A cat.\nfr.utf8=Un chat.".to_vec(),
            ),
            (&format!("{stamps}/animals/cat.png"), stamp),
            (&format!("{stamps}/food/pie.txt"), b"A pie.".to_vec()),
            (&format!("{stamps}/food/pie.svg"), b"<svg/>".to_vec()),
        ],
    );
    std::fs::write(
        &spec,
        format!(
            "name: d\ndata:\n  root: {}\n  sources: [{{mnist: {{limit: 15}}}}, tuxpaint]\n\
             stages: [{{id: ingest, uses: ingest}}]\n",
            root.display()
        ),
    )
    .unwrap();
    let report = run(&spec);
    assert!(
        matches!(report.stages[0].2, Outcome::Ran { .. }),
        "{:?}",
        report.stages
    );
    let out = &report.stages[0].1;
    let index: Index =
        serde_json::from_str(&std::fs::read_to_string(out.join(INDEX)).unwrap()).unwrap();
    assert_eq!(index.sources["mnist"], 15);
    assert_eq!(index.sources["tuxpaint"], 1);
    assert_eq!(index.skipped["tuxpaint"]["svg only (not rasterised)"], 1);
    let mut read = Vec::new();
    for split in Split::ALL {
        let options = LoaderOptions::in_file_order(split);
        read.extend(Loader::open(out, options).unwrap().map(|p| p.unwrap()));
    }
    read.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(read.len(), 16);
    assert_eq!(read[0].key, "mnist-0-0000");
    assert_eq!(read[0].caption, "a photo of the digit zero.");
    assert_eq!(read[15].key, "tuxpaint-animals/cat");
    assert_eq!(read[15].caption, "A cat.");
    assert_eq!(read[15].label_name.as_deref(), Some("animals"));

    assert_eq!(run(&spec).stages[0].2, Outcome::Cached);
    mark_fetched(&fetch::MNIST.dir(&raw), "a newer archive");
    assert!(
        matches!(run(&spec).stages[0].2, Outcome::Ran { .. }),
        "a package fetched anew reruns ingest"
    );
}
