//! Fashion-MNIST (Debian `dataset-fashion-mnist`): IDX files, gzipped or not, 28 x 28 grayscale
//! clothes in 10 classes. The package's train and test files are both imported (train first);
//! the shards' own key-hash split decides val/test. Caption = [`TEMPLATE`] with the class name
//! ("a photo of a t-shirt.", "a photo of an ankle boot.").

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use flate2::read::GzDecoder;
use png::ColorType;

use super::raster::encode;
use super::{Intake, class_caption};
use crate::shards::Pair;

/// Where the package puts the IDX files, relative to the unpacked package.
pub const IDX_DIR: &str = "usr/share/datasets/fashion-mnist";

/// Class names by label, worded for zero-shot prompts.
pub const CLASSES: [&str; 10] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
];

/// Caption template; `{}` is the class name (`a` becomes `an` before a vowel).
pub const TEMPLATE: &str = "a photo of a {}.";

/// An IDX array: unsigned bytes with their dimensions.
#[derive(Clone, Debug, PartialEq)]
pub struct Idx {
    /// Sizes of the dimensions, outermost first.
    pub dims: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes (type 0x08), gunzipping it when it starts with the gzip
/// magic number.
pub fn read_idx(path: &Path) -> anyhow::Result<Idx> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{} is not a valid gzip file", path.display()))?;
        out
    } else {
        bytes
    };
    let what = || format!("{} is not an IDX file of unsigned bytes", path.display());
    ensure!(
        bytes.len() >= 4 && bytes[0] == 0 && bytes[1] == 0 && bytes[2] == 0x08,
        "{}: bad magic number",
        what()
    );
    let ndims = bytes[3] as usize;
    let header = 4 + 4 * ndims;
    ensure!(bytes.len() >= header, "{}: truncated header", what());
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let count: usize = dims.iter().product();
    ensure!(
        bytes.len() - header == count,
        "{}: dimensions {dims:?} need {count} bytes of data, the file has {}",
        what(),
        bytes.len() - header
    );
    Ok(Idx {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// The IDX file `name` (e.g. `train-images-idx3-ubyte`) in `dir`, gzipped or not.
fn idx_file(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        Ok(gz)
    } else if plain.is_file() {
        Ok(plain)
    } else {
        bail!(
            "{} has no {name} or {name}.gz; re-fetch the package (remove {} and run `limoe data`)",
            dir.display(),
            dir.display()
        )
    }
}

/// Imports the unpacked package at `pkg`: the `train` files, then `t10k`, each in file order.
pub fn import(pkg: &Path, intake: &mut Intake) -> anyhow::Result<()> {
    let dir = pkg.join(IDX_DIR);
    let mut parts = Vec::new();
    for part in ["train", "t10k"] {
        let images_path = idx_file(&dir, &format!("{part}-images-idx3-ubyte"))?;
        let labels_path = idx_file(&dir, &format!("{part}-labels-idx1-ubyte"))?;
        let images = read_idx(&images_path)?;
        let labels = read_idx(&labels_path)?;
        ensure!(
            images.dims.len() == 3 && labels.dims.len() == 1 && images.dims[0] == labels.dims[0],
            "{} ({:?}) and {} ({:?}) do not hold one label per image",
            images_path.display(),
            images.dims,
            labels_path.display(),
            labels.dims
        );
        parts.push((part, images, labels));
    }
    intake.expect(parts.iter().map(|(_, _, l)| l.data.len()).sum());
    for (part, images, labels) in &parts {
        let (rows, cols) = (images.dims[1], images.dims[2]);
        for (i, (pixels, &label)) in images
            .data
            .chunks_exact(rows * cols)
            .zip(&labels.data)
            .enumerate()
        {
            if intake.full() {
                return Ok(());
            }
            let Some(name) = CLASSES.get(label as usize) else {
                intake.skip("label out of range");
                continue;
            };
            intake.add(Pair {
                key: format!("fashion_mnist-{part}-{i:05}"),
                image: encode(cols as u32, rows as u32, ColorType::Grayscale, pixels)?,
                caption: class_caption(TEMPLATE, name),
                label: Some(label as i32),
                label_name: Some((*name).to_owned()),
                source: intake.source().to_owned(),
            })?;
        }
    }
    Ok(())
}
