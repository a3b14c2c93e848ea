//! Foreign Parquet files read through the spec's column mapping: img2dataset's layout
//! (`key`, `jpg`, `caption`) and Hugging Face image datasets (`image` a struct of `bytes` and
//! `path`; a mapped name `image.bytes` reaches into a struct, and a struct with a `bytes` field
//! is used that way by itself). Images are passed through as they are (PNG or JPEG); rows with
//! an empty key, caption or image, or an image in another format, are skipped and counted.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Schema};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use limoe_core::spec::{Columns, ForeignParquet};

use super::{Intake, squash};
use crate::shards::Pair;

/// The files a `path` names: the file itself, the `.parquet` files of a directory (sorted), or
/// the matches of a glob (sorted).
pub fn files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let text = path.to_string_lossy();
    if text.contains(['*', '?', '[']) {
        let mut found: Vec<PathBuf> = glob::glob(&text)
            .with_context(|| format!("`{text}` is not a valid glob"))?
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        if found.is_empty() {
            bail!("no file matches `{text}`");
        }
        return Ok(found);
    }
    if path.is_dir() {
        let mut found: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        found.sort();
        if found.is_empty() {
            bail!("{} holds no .parquet files", path.display());
        }
        return Ok(found);
    }
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    bail!("{} does not exist", path.display())
}

/// Imports every file of a foreign Parquet source, in path order.
pub fn import(spec: &ForeignParquet, intake: &mut Intake) -> anyhow::Result<()> {
    for file in files(&spec.path)? {
        import_file(&file, &spec.columns, intake)?;
    }
    Ok(())
}

/// Where a mapped column is: its top-level field and, inside a struct, the field's name.
struct Located {
    root: usize,
    inner: Option<String>,
}

/// Finds the mapped column `name`; `role` is its key in the mapping (for messages).
fn locate(file: &Path, schema: &Schema, role: &str, name: &str) -> anyhow::Result<Located> {
    let (top, inner) = match name.split_once('.') {
        Some((top, inner)) => (top, Some(inner.to_owned())),
        None => (name, None),
    };
    let have = || {
        schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some((root, field)) = schema.fields().find(top) else {
        bail!(
            "{} has no column `{top}` (mapped as `columns.{role}`); its columns: {}",
            file.display(),
            have()
        )
    };
    let inner = match (field.data_type(), inner) {
        (DataType::Struct(fields), Some(inner)) => {
            if fields.find(&inner).is_none() {
                bail!(
                    "{}: struct column `{top}` has no field `{inner}` (mapped as `columns.{role}`)",
                    file.display()
                );
            }
            Some(inner)
        }
        (DataType::Struct(fields), None) if role == "image" && fields.find("bytes").is_some() => {
            Some("bytes".to_owned())
        }
        (_, Some(inner)) => bail!(
            "{}: column `{top}` is not a struct, so `{name}` (mapped as `columns.{role}`) has no field `{inner}`",
            file.display()
        ),
        (_, None) => None,
    };
    Ok(Located { root, inner })
}

/// The array of a located column in a batch read with the mapped columns only.
fn column(batch: &RecordBatch, schema: &Schema, at: &Located) -> anyhow::Result<ArrayRef> {
    let name = schema.field(at.root).name();
    let array = batch
        .column_by_name(name)
        .with_context(|| format!("column `{name}` is missing from a batch"))?;
    Ok(match (&at.inner, array.as_struct_opt()) {
        (Some(inner), Some(s)) => s
            .column_by_name(inner)
            .with_context(|| format!("struct column `{name}` has no field `{inner}`"))?
            .clone(),
        _ => array.clone(),
    })
}

/// The values of a text column.
fn texts(array: &ArrayRef, file: &Path, name: &str) -> anyhow::Result<Vec<Option<String>>> {
    let get = |i: usize| -> Option<String> {
        if array.is_null(i) {
            return None;
        }
        array
            .as_string_opt::<i32>()
            .map(|a| a.value(i).to_owned())
            .or_else(|| array.as_string_opt::<i64>().map(|a| a.value(i).to_owned()))
            .or_else(|| array.as_string_view_opt().map(|a| a.value(i).to_owned()))
    };
    check_type(array, file, name, "text", |t| {
        matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
    })?;
    Ok((0..array.len()).map(get).collect())
}

/// The values of a binary column.
fn blobs(array: &ArrayRef, file: &Path, name: &str) -> anyhow::Result<Vec<Option<Vec<u8>>>> {
    check_type(array, file, name, "binary", |t| {
        matches!(
            t,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView
        )
    })?;
    let get = |i: usize| -> Option<Vec<u8>> {
        if array.is_null(i) {
            return None;
        }
        array
            .as_binary_opt::<i32>()
            .map(|a| a.value(i).to_vec())
            .or_else(|| array.as_binary_opt::<i64>().map(|a| a.value(i).to_vec()))
            .or_else(|| array.as_binary_view_opt().map(|a| a.value(i).to_vec()))
    };
    Ok((0..array.len()).map(get).collect())
}

/// The values of an integer label column.
fn labels(array: &ArrayRef, file: &Path, name: &str) -> anyhow::Result<Vec<Option<i32>>> {
    check_type(array, file, name, "int32 or int64", |t| {
        matches!(t, DataType::Int32 | DataType::Int64)
    })?;
    let get = |i: usize| -> Option<i32> {
        if array.is_null(i) {
            return None;
        }
        array
            .as_primitive_opt::<Int32Type>()
            .map(|a| a.value(i))
            .or_else(|| {
                array
                    .as_primitive_opt::<Int64Type>()
                    .and_then(|a| i32::try_from(a.value(i)).ok())
            })
    };
    Ok((0..array.len()).map(get).collect())
}

fn check_type(
    array: &ArrayRef,
    file: &Path,
    name: &str,
    kind: &str,
    ok: impl Fn(&DataType) -> bool,
) -> anyhow::Result<()> {
    if !ok(array.data_type()) {
        bail!(
            "{}: column `{name}` is {}, not {kind}",
            file.display(),
            array.data_type()
        );
    }
    Ok(())
}

/// Whether `bytes` start like a PNG or a JPEG.
fn is_png_or_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89PNG\r\n\x1a\n") || bytes.starts_with(&[0xff, 0xd8, 0xff])
}

/// Imports one file.
fn import_file(file: &Path, columns: &Columns, intake: &mut Intake) -> anyhow::Result<()> {
    let opened = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(opened)
        .with_context(|| format!("{} is not a Parquet file", file.display()))?;
    let schema = builder.schema().clone();
    let key = locate(file, &schema, "key", &columns.key)?;
    let image = locate(file, &schema, "image", &columns.image)?;
    let caption = locate(file, &schema, "caption", &columns.caption)?;
    let label = match &columns.label {
        Some(name) => Some(locate(file, &schema, "label", name)?),
        None => None,
    };
    let label_name = match &columns.label_name {
        Some(name) => Some(locate(file, &schema, "label_name", name)?),
        None => None,
    };
    let mut roots: Vec<usize> = [Some(&key), Some(&image), Some(&caption)]
        .into_iter()
        .chain([label.as_ref(), label_name.as_ref()])
        .flatten()
        .map(|l| l.root)
        .collect();
    roots.sort();
    roots.dedup();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    intake.expect(builder.metadata().file_metadata().num_rows() as usize);
    let reader = builder
        .with_projection(mask)
        .build()
        .with_context(|| format!("cannot read {}", file.display()))?;
    for batch in reader {
        let batch = batch.with_context(|| format!("cannot read {}", file.display()))?;
        let keys = texts(&column(&batch, &schema, &key)?, file, &columns.key)?;
        let images = blobs(&column(&batch, &schema, &image)?, file, &columns.image)?;
        let captions = texts(&column(&batch, &schema, &caption)?, file, &columns.caption)?;
        let labels = match (&label, &columns.label) {
            (Some(at), Some(name)) => Some(labels(&column(&batch, &schema, at)?, file, name)?),
            _ => None,
        };
        let names = match (&label_name, &columns.label_name) {
            (Some(at), Some(name)) => Some(texts(&column(&batch, &schema, at)?, file, name)?),
            _ => None,
        };
        for (row, ((key, image), caption)) in keys.into_iter().zip(images).zip(captions).enumerate()
        {
            if intake.full() {
                return Ok(());
            }
            let caption = squash(&caption.unwrap_or_default());
            let image = image.unwrap_or_default();
            let reason = match key.as_deref() {
                None | Some("") => Some("empty key"),
                Some(_) if image.is_empty() => Some("empty image"),
                Some(_) if !is_png_or_jpeg(&image) => Some("image not png or jpeg"),
                Some(_) if caption.is_empty() => Some("empty caption"),
                Some(_) => None,
            };
            if let Some(reason) = reason {
                intake.skip(reason);
                continue;
            }
            intake.add(Pair {
                key: key.unwrap_or_default(),
                image,
                caption,
                label: labels.as_ref().and_then(|l| l[row]),
                label_name: names.as_ref().and_then(|n| n[row].clone()),
                source: intake.source().to_owned(),
            })?;
        }
    }
    Ok(())
}
