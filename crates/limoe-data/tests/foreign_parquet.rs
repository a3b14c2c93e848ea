//! Foreign Parquet through the column mapping: an img2dataset-style and a Hugging Face-style
//! file written by the test, in every compression foreign writers use, plus the errors for
//! missing columns and non-Parquet files, and ingest rerunning when a file is rewritten.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use ::parquet::arrow::ArrowWriter;
use ::parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
use ::parquet::file::properties::WriterProperties;
use arrow_array::{ArrayRef, BinaryArray, Int64Array, RecordBatch, StringArray, StructArray};
use arrow_schema::{DataType, Field, Fields};
use limoe_core::runner::{Outcome, Runner};
use limoe_core::spec::{Columns, ForeignParquet};
use limoe_core::{Progress, Registry, load_spec};
use limoe_data::IngestStage;
use limoe_data::shards::{INDEX, Index, Pair};
use limoe_data::sources::{Imported, Intake, parquet};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\nrest";
const JPEG: &[u8] = b"\xff\xd8\xff\xe0rest";

fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    write_compressed(path, columns, Compression::UNCOMPRESSED);
}

fn write_compressed(path: &Path, columns: Vec<(&str, ArrayRef)>, compression: Compression) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let props = WriterProperties::builder()
        .set_compression(compression)
        .build();
    let mut writer =
        ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// img2dataset's layout: `key`, `jpg`, `caption`, with one row of each kind of bad data.
fn img2dataset(path: &Path) {
    img2dataset_compressed(path, Compression::UNCOMPRESSED);
}

fn img2dataset_compressed(path: &Path, compression: Compression) {
    write_compressed(
        path,
        vec![
            (
                "key",
                Arc::new(StringArray::from(vec!["000", "001", "002", "003", "004"])) as ArrayRef,
            ),
            (
                "jpg",
                Arc::new(BinaryArray::from(vec![
                    Some(JPEG),
                    Some(JPEG),
                    None,
                    Some(b"GIF89a".as_slice()),
                    Some(PNG),
                ])),
            ),
            (
                "caption",
                Arc::new(StringArray::from(vec![
                    Some("a dog"),
                    Some("  "),
                    Some("x"),
                    Some("y"),
                    Some("a  cat"),
                ])),
            ),
            ("width", Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5]))),
        ],
        compression,
    );
}

/// Hugging Face's layout: `image` as struct{bytes, path}, `text`, an int64 `label`.
fn hugging_face(path: &Path) {
    let bytes: ArrayRef = Arc::new(BinaryArray::from(vec![PNG, JPEG]));
    let paths: ArrayRef = Arc::new(StringArray::from(vec!["a.png", "b.jpg"]));
    let image = StructArray::new(
        Fields::from(vec![
            Field::new("bytes", DataType::Binary, true),
            Field::new("path", DataType::Utf8, true),
        ]),
        vec![bytes, paths],
        None,
    );
    write_parquet(
        path,
        vec![
            (
                "id",
                Arc::new(StringArray::from(vec!["hf-0", "hf-1"])) as ArrayRef,
            ),
            ("image", Arc::new(image)),
            (
                "text",
                Arc::new(StringArray::from(vec!["a red car", "a blue bus"])),
            ),
            ("label", Arc::new(Int64Array::from(vec![3, 7]))),
            (
                "label_text",
                Arc::new(StringArray::from(vec!["car", "bus"])),
            ),
        ],
    );
}

fn import(spec: &ForeignParquet) -> anyhow::Result<(Vec<Pair>, Imported)> {
    let mut pairs = Vec::new();
    let mut sink = |p: Pair| -> anyhow::Result<()> {
        pairs.push(p);
        Ok(())
    };
    let mut intake = Intake::new("parquet", None, &mut sink);
    parquet::import(spec, &mut intake)?;
    let imported = intake.finish();
    Ok((pairs, imported))
}

fn img2dataset_columns() -> Columns {
    Columns {
        image: "jpg".into(),
        ..Columns::default()
    }
}

#[test]
fn img2dataset_layout_passes_images_through_and_skips_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    img2dataset(&dir.path().join("00000.parquet"));
    let spec = ForeignParquet {
        path: dir.path().to_path_buf(),
        columns: img2dataset_columns(),
    };
    let (pairs, imported) = import(&spec).unwrap();
    let got: Vec<(&str, &str, &[u8])> = pairs
        .iter()
        .map(|p| (p.key.as_str(), p.caption.as_str(), p.image.as_slice()))
        .collect();
    assert_eq!(got, [("000", "a dog", JPEG), ("004", "a cat", PNG)]);
    assert!(
        pairs
            .iter()
            .all(|p| p.label.is_none() && p.source == "parquet")
    );
    let skipped: Vec<(&str, usize)> = imported
        .skipped
        .iter()
        .map(|(k, &v)| (k.as_str(), v))
        .collect();
    assert_eq!(
        skipped,
        [
            ("empty caption", 1),
            ("empty image", 1),
            ("image not png or jpeg", 1)
        ]
    );
}

/// pyarrow, img2dataset and Hugging Face write snappy by default; gzip, lz4 (both framings),
/// brotli and zstd are common too. Every one must read back the same rows.
#[test]
fn every_common_compression_reads_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let compressions = [
        Compression::UNCOMPRESSED,
        Compression::SNAPPY,
        Compression::GZIP(GzipLevel::default()),
        Compression::LZ4,
        Compression::LZ4_RAW,
        Compression::BROTLI(BrotliLevel::default()),
        Compression::ZSTD(ZstdLevel::default()),
    ];
    for compression in compressions {
        let path = dir.path().join(format!("{compression}.parquet"));
        img2dataset_compressed(&path, compression);
        let spec = ForeignParquet {
            path,
            columns: img2dataset_columns(),
        };
        let (pairs, imported) =
            import(&spec).unwrap_or_else(|e| panic!("{compression} files must be readable: {e:#}"));
        let keys: Vec<&str> = pairs.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["000", "004"], "{compression}");
        assert_eq!(imported.skipped.values().sum::<usize>(), 3, "{compression}");
    }
}

#[test]
fn hugging_face_layout_reads_the_image_struct_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    hugging_face(&dir.path().join("train-00000-of-00001.parquet"));
    for image in ["image", "image.bytes"] {
        let spec = ForeignParquet {
            path: dir.path().join("train-*.parquet"),
            columns: Columns {
                key: "id".into(),
                image: image.into(),
                caption: "text".into(),
                label: Some("label".into()),
                label_name: Some("label_text".into()),
            },
        };
        let (pairs, imported) = import(&spec).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(imported.pairs, 2);
        assert_eq!(
            pairs[1],
            Pair {
                key: "hf-1".into(),
                image: JPEG.to_vec(),
                caption: "a blue bus".into(),
                label: Some(7),
                label_name: Some("bus".into()),
                source: "parquet".into(),
            }
        );
    }
}

#[test]
fn missing_columns_and_foreign_files_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hf.parquet");
    hugging_face(&file);
    let spec = ForeignParquet {
        path: file.clone(),
        columns: Columns::default(),
    };
    let error = format!("{:#}", import(&spec).unwrap_err());
    assert!(
        error.contains("hf.parquet has no column `key` (mapped as `columns.key`)")
            && error.contains("its columns: id, image, text, label, label_text"),
        "{error}"
    );

    let spec = ForeignParquet {
        path: file.clone(),
        columns: Columns {
            key: "id".into(),
            image: "image.pixels".into(),
            caption: "text".into(),
            ..Columns::default()
        },
    };
    let error = format!("{:#}", import(&spec).unwrap_err());
    assert!(error.contains("has no field `pixels`"), "{error}");

    let spec = ForeignParquet {
        path: file,
        columns: Columns {
            key: "id".into(),
            image: "label".into(),
            caption: "text".into(),
            ..Columns::default()
        },
    };
    let error = format!("{:#}", import(&spec).unwrap_err());
    assert!(
        error.contains("column `label` is Int64, not binary"),
        "{error}"
    );

    let text = dir.path().join("notes.parquet");
    std::fs::write(&text, "just text").unwrap();
    let spec = ForeignParquet {
        path: text,
        columns: img2dataset_columns(),
    };
    let error = format!("{:#}", import(&spec).unwrap_err());
    assert!(
        error.contains("notes.parquet is not a Parquet file"),
        "{error}"
    );

    let spec = ForeignParquet {
        path: dir.path().join("nothing-*.parquet"),
        columns: img2dataset_columns(),
    };
    let error = format!("{:#}", import(&spec).unwrap_err());
    assert!(error.contains("no file matches"), "{error}");
}

/// The ingest key covers the files' content: a source rewritten with fewer rows reruns
/// ingest instead of serving the old shards from the cache.
#[test]
fn rewriting_a_source_file_reruns_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("shards/00000.parquet");
    std::fs::create_dir_all(source.parent().unwrap()).unwrap();
    img2dataset(&source);
    let spec = dir.path().join("foreign.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: f\ndata:\n  sources: [{{parquet: {{path: {}, columns: {{image: jpg}}}}}}]\n\
             stages: [{{id: ingest, uses: ingest}}]\n",
            source.parent().unwrap().display()
        ),
    )
    .unwrap();
    let mut registry = Registry::new();
    registry.register(IngestStage);
    let run = || {
        let loaded = load_spec(&spec, &[], &registry).unwrap_or_else(|e| panic!("{e}"));
        let runner = Runner::new(&registry, dir.path().join("runs"), Progress::new(false));
        let plan = runner.plan(&loaded, &[]).unwrap();
        let report = runner.execute(&loaded, &plan).unwrap();
        let (_, out, outcome) = report.stages[0].clone();
        let index: Index =
            serde_json::from_str(&std::fs::read_to_string(out.join(INDEX)).unwrap()).unwrap();
        (outcome, index.rows.values().sum::<usize>())
    };
    assert!(matches!(run(), (Outcome::Ran { .. }, 2)));
    assert_eq!(run(), (Outcome::Cached, 2));
    write_parquet(
        &source,
        vec![
            ("key", Arc::new(StringArray::from(vec!["100"])) as ArrayRef),
            ("jpg", Arc::new(BinaryArray::from(vec![JPEG]))),
            ("caption", Arc::new(StringArray::from(vec!["a bird"]))),
        ],
    );
    assert!(matches!(run(), (Outcome::Ran { .. }, 1)));
}
