//! RGB images to normalised patch rows: resize, CLIP normalisation, patchify.
//!
//! Layout of one image's output, `[patches, patch * patch * 3]` row-major f32: patches in
//! row-major order of the patch grid (patch `(gy, gx)` is row `gy * grid + gx`), and inside a
//! patch the pixels in `(y, x, channel)` order, channel fastest (R, G, B), i.e. the element at
//! `(y * patch + x) * 3 + c`.

use anyhow::bail;
use image::RgbImage;
use image::imageops::{self, FilterType};

use crate::decode::decode_rgb;

/// CLIP's per-channel mean of pixel values scaled to [0, 1] (R, G, B).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's per-channel standard deviation of pixel values scaled to [0, 1] (R, G, B):
/// 0.26862954, 0.26130258, 0.27577711 rounded to f32.
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// Channels of every image (RGB), defined where validation checks `model.channels`.
pub use limoe_core::spec::CHANNELS;

/// How images become patches: a square side in pixels and a patch side dividing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchConfig {
    side: u32,
    patch: u32,
}

impl PatchConfig {
    /// Images resized to `side` x `side` (the spec's `model.image_size`), cut into patches of
    /// `patch` x `patch` (`model.patch`), which must divide `side`.
    pub fn new(side: u32, patch: u32) -> anyhow::Result<PatchConfig> {
        if patch == 0 || side == 0 || !side.is_multiple_of(patch) {
            bail!(
                "patch size {patch} does not divide the image size {side}; set model.patch \
                 and model.image_size so that image_size is a multiple of patch"
            );
        }
        Ok(PatchConfig { side, patch })
    }

    /// Side of the resized image in pixels.
    pub fn side(&self) -> u32 {
        self.side
    }

    /// Patches per image: `(side / patch)^2`.
    pub fn num_patches(&self) -> usize {
        let grid = (self.side / self.patch) as usize;
        grid * grid
    }

    /// Values per patch: `patch * patch * 3`.
    pub fn patch_dim(&self) -> usize {
        (self.patch * self.patch) as usize * CHANNELS
    }

    /// Values per image: `num_patches * patch_dim`.
    pub fn image_len(&self) -> usize {
        self.num_patches() * self.patch_dim()
    }

    /// Decodes PNG or JPEG `bytes` (alpha on white), resizes, normalises and patchifies into
    /// `out` (`image_len` values). An undecodable image is an error.
    pub fn bytes_to_patches(&self, bytes: &[u8], out: &mut [f32]) -> anyhow::Result<()> {
        let image = self.resize(decode_rgb(bytes)?);
        self.patchify(&image, out);
        Ok(())
    }

    /// Scales `image` so that its shorter side is `side` (bilinear, i.e. a triangle filter,
    /// which averages when shrinking) and crops the centre `side` x `side`, as CLIP does.
    /// An image already `side` x `side` is returned as it is.
    pub fn resize(&self, image: RgbImage) -> RgbImage {
        let side = self.side;
        let (w, h) = image.dimensions();
        if (w, h) == (side, side) {
            return image;
        }
        let scale = |long: u32, short: u32| {
            ((u64::from(long) * u64::from(side) + u64::from(short) / 2) / u64::from(short))
                .max(u64::from(side)) as u32
        };
        let (nw, nh) = if w <= h {
            (side, scale(h, w))
        } else {
            (scale(w, h), side)
        };
        let scaled = imageops::resize(&image, nw, nh, FilterType::Triangle);
        if (nw, nh) == (side, side) {
            return scaled;
        }
        imageops::crop_imm(&scaled, (nw - side) / 2, (nh - side) / 2, side, side).to_image()
    }

    /// Writes the `side` x `side` `image` into `out` (`image_len` values) in the layout of the
    /// module documentation, each value `(pixel / 255 - CLIP_MEAN[c]) / CLIP_STD[c]`.
    ///
    /// # Panics
    /// When the image is not `side` x `side` or `out` is not `image_len` long (a caller's bug).
    pub fn patchify(&self, image: &RgbImage, out: &mut [f32]) {
        assert_eq!(image.dimensions(), (self.side, self.side), "image size");
        assert_eq!(out.len(), self.image_len(), "patch buffer length");
        let table: Vec<[f32; CHANNELS]> = (0..=255u8)
            .map(|v| std::array::from_fn(|c| (f32::from(v) / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c]))
            .collect();
        let (side, patch) = (self.side as usize, self.patch as usize);
        let grid = side / patch;
        let row = patch * CHANNELS;
        let pixels = image.as_raw();
        for (p, dst) in out.chunks_exact_mut(self.patch_dim()).enumerate() {
            let (gy, gx) = (p / grid, p % grid);
            for y in 0..patch {
                let start = ((gy * patch + y) * side + gx * patch) * CHANNELS;
                let src = &pixels[start..start + row];
                for (i, (d, &v)) in dst[y * row..(y + 1) * row].iter_mut().zip(src).enumerate() {
                    *d = table[usize::from(v)][i % CHANNELS];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn value(v: u8, c: usize) -> f32 {
        (f32::from(v) / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c]
    }

    #[test]
    fn patch_layout_is_grid_row_major_then_y_x_channel() {
        // 4x4 image, patch 2: pixel (x, y) = (x, y, 10 * y + x) on R, G, B.
        let config = PatchConfig::new(4, 2).unwrap();
        assert_eq!(
            (config.num_patches(), config.patch_dim(), config.image_len()),
            (4, 12, 48)
        );
        let image = RgbImage::from_fn(4, 4, |x, y| Rgb([x as u8, y as u8, (10 * y + x) as u8]));
        let mut out = vec![0.0; config.image_len()];
        config.patchify(&image, &mut out);
        for gy in 0..2 {
            for gx in 0..2 {
                for y in 0..2 {
                    for x in 0..2 {
                        let (px, py) = (gx * 2 + x, gy * 2 + y);
                        let rgb = [px as u8, py as u8, (10 * py + px) as u8];
                        for (c, &v) in rgb.iter().enumerate() {
                            let at = (gy * 2 + gx) * 12 + (y * 2 + x) * 3 + c;
                            assert_eq!(out[at], value(v, c), "patch {gy},{gx} px {y},{x}");
                        }
                    }
                }
            }
        }
        // Patch 1 is the top-right one: its first pixel is (x 2, y 0).
        assert_eq!(out[12..15], [value(2, 0), value(0, 1), value(2, 2)]);
    }

    #[test]
    fn white_and_black_normalise_by_clip_statistics() {
        let config = PatchConfig::new(2, 1).unwrap();
        let image = RgbImage::from_fn(2, 2, |x, _| Rgb([255 * x as u8; 3]));
        let mut out = vec![0.0; config.image_len()];
        config.patchify(&image, &mut out);
        assert!((out[0] - (-0.481_454_66 / 0.268_629_54)).abs() < 1e-6);
        assert!((out[3] - (1.0 - 0.481_454_66) / 0.268_629_54).abs() < 1e-6);
    }

    #[test]
    fn resize_scales_the_short_side_and_crops_the_centre() {
        let config = PatchConfig::new(4, 2).unwrap();
        // 16x8: red and blue edges, green centre; the crop keeps only the green.
        let image = RgbImage::from_fn(16, 8, |x, _| match x {
            0..2 => Rgb([255, 0, 0]),
            2..14 => Rgb([0, 255, 0]),
            _ => Rgb([0, 0, 255]),
        });
        let small = config.resize(image);
        assert_eq!(small.dimensions(), (4, 4));
        assert!(small.pixels().all(|p| p.0 == [0, 255, 0]), "{small:?}");
        let same = RgbImage::from_pixel(4, 4, Rgb([1, 2, 3]));
        assert_eq!(config.resize(same.clone()), same);
        let up = config.resize(RgbImage::from_pixel(2, 3, Rgb([9, 9, 9])));
        assert_eq!(up.dimensions(), (4, 4));
        assert!(up.pixels().all(|p| p.0 == [9, 9, 9]));
    }

    #[test]
    fn patch_must_divide_the_side() {
        assert!(PatchConfig::new(32, 5).is_err());
        assert!(PatchConfig::new(32, 0).is_err());
        assert!(PatchConfig::new(224, 16).is_ok());
    }
}
