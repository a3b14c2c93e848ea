//! One image as the model saw it, each patch tinted by the expert it was routed to, with a
//! legend of the experts and their shares of the image's patches (`limoe route`).

use std::path::Path;

use limoe_core::spec::ImageFormat;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{Canvas, Figure, drawing, font, palette, render};
use crate::{AnalysisError, Result};

/// The least side in pixels the image is shown at (scaled up by a whole factor).
const SHOWN: u32 = 384;
/// Width of the legend beside the image.
const LEGEND: u32 = 200;
/// Height of the title above the image.
const TITLE: u32 = 28;
/// Height of one legend row.
const ROW: u32 = 18;
/// How much of a tinted pixel is the expert's colour.
const TINT: f64 = 0.45;

/// An image's patches and the expert of each.
pub struct PatchRouting<'a> {
    /// The title, e.g. the image's name and the block.
    pub title: String,
    /// The image the model saw, `side * side` RGB triples row-major.
    pub view: &'a [u8],
    /// Its side in pixels.
    pub side: u32,
    /// Patches along a side.
    pub grid: u32,
    /// Each patch's expert, patches in row-major grid order.
    pub experts: &'a [u32],
}

/// The size in pixels of the picture of an image of `side` pixels: the image scaled up by
/// the least whole factor that makes it at least [`SHOWN`] wide, a legend to its right, a
/// title above.
pub fn patch_routing_size(side: u32) -> (u32, u32) {
    let shown = side * SHOWN.div_ceil(side.max(1));
    (shown + LEGEND, shown + TITLE)
}

/// Draws `routing` as a PNG at `path`. Errors when the patches and the image disagree.
pub fn plot_patch_routing(routing: &PatchRouting, path: &Path) -> Result<()> {
    let (side, grid) = (routing.side as usize, routing.grid as usize);
    if grid == 0 || !side.is_multiple_of(grid) || routing.experts.len() != grid * grid {
        return Err(AnalysisError::Draw {
            path: path.to_owned(),
            message: format!(
                "{} patch experts for a {grid} x {grid} grid of a {side}-pixel image",
                routing.experts.len()
            ),
        });
    }
    let canvas = Canvas {
        format: ImageFormat::Png,
        size: patch_routing_size(routing.side),
    };
    render(routing, path, canvas)
}

impl PatchRouting<'_> {
    /// The image scaled by `scale`, each patch blended with its expert's colour and outlined.
    fn tinted(&self, scale: usize) -> Vec<u8> {
        let (side, grid) = (self.side as usize, self.grid as usize);
        let (patch, shown) = (side / grid, side * scale);
        let mut out = vec![0; shown * shown * 3];
        for (i, pixel) in out.chunks_exact_mut(3).enumerate() {
            let (y, x) = (i / shown / scale, i % shown / scale);
            let expert = self.experts[(y / patch) * grid + x / patch];
            let RGBColor(r, g, b) = palette(expert as usize);
            let edge = (i / shown) % (patch * scale) == 0 || (i % shown) % (patch * scale) == 0;
            for (c, (dst, tint)) in pixel.iter_mut().zip([r, g, b]).enumerate() {
                let own = f64::from(self.view[(y * side + x) * 3 + c]);
                let tint = if edge { 255.0 } else { f64::from(tint) };
                *dst = (own * (1.0 - TINT) + tint * TINT).round() as u8;
            }
        }
        out
    }

    /// Each expert that took patches, with its share, largest first.
    fn shares(&self) -> Vec<(u32, f64)> {
        let mut counts = std::collections::BTreeMap::<u32, usize>::new();
        for &e in self.experts {
            *counts.entry(e).or_default() += 1;
        }
        let total = self.experts.len() as f64;
        let mut shares: Vec<(u32, f64)> = (counts.into_iter())
            .map(|(e, n)| (e, n as f64 / total))
            .collect();
        shares.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        shares
    }
}

impl Figure for PatchRouting<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        root.fill(&WHITE).map_err(drawing)?;
        let scale = SHOWN.div_ceil(self.side.max(1));
        let shown = self.side * scale;
        root.draw(&Text::new(self.title.clone(), (8, 6), font(15)))
            .map_err(drawing)?;
        let picture = BitMapElement::with_owned_buffer(
            (0, TITLE as i32),
            (shown, shown),
            self.tinted(scale as usize),
        )
        .ok_or("the tinted image has the wrong size")?;
        root.draw(&picture).map_err(drawing)?;
        let x = (shown + 12) as i32;
        let rows = ((shown - ROW) / ROW) as usize;
        let shares = self.shares();
        let (listed, rest) = shares.split_at(shares.len().min(rows));
        for (i, &(expert, share)) in listed.iter().enumerate() {
            let y = (TITLE + i as u32 * ROW) as i32 + 4;
            let square = [(x, y), (x + 12, y + 12)];
            root.draw(&Rectangle::new(square, palette(expert as usize).filled()))
                .map_err(drawing)?;
            let label = format!("expert {expert}: {share:.2}");
            root.draw(&Text::new(label, (x + 18, y), font(13)))
                .map_err(drawing)?;
        }
        if !rest.is_empty() {
            let share: f64 = rest.iter().map(|r| r.1).sum();
            let y = (TITLE + listed.len() as u32 * ROW) as i32 + 4;
            let label = format!("{} more: {share:.2}", rest.len());
            root.draw(&Text::new(label, (x + 18, y), font(13)))
                .map_err(drawing)?;
        }
        Ok(())
    }
}
