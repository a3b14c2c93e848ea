//! Normalising decoded images for shards: alpha composited on white, the longest side capped
//! at [`MAX_SIDE`] by box averaging while rows stream in (so a 20990 x 29700 Openclipart PNG
//! never sits in memory whole), re-encoded as 8-bit RGB or grayscale PNG.

use std::io::{BufRead, Seek};

use anyhow::{Context, bail};
use png::{BitDepth, ColorType, Decoder, Limits, Transformations};

/// Longest side, in pixels, of images written by the importers: above the largest resize the
/// loader uses (224 px), small enough to keep shards compact.
pub const MAX_SIDE: u32 = 256;

/// Interlaced PNGs are decoded whole; larger ones than this many bytes are refused.
const MAX_INTERLACED_BYTES: usize = 256 << 20;

/// Decodes a PNG, composites alpha on white, shrinks it to at most `max_side` pixels per side,
/// and encodes the result as an RGB PNG.
pub fn normalize_png(input: impl BufRead + Seek, max_side: u32) -> anyhow::Result<Vec<u8>> {
    let mut decoder = Decoder::new_with_limits(
        input,
        Limits {
            bytes: MAX_INTERLACED_BYTES,
        },
    );
    decoder.set_transformations(Transformations::normalize_to_color8());
    let mut reader = decoder.read_info()?;
    let (width, height) = (reader.info().width, reader.info().height);
    let (color, _) = reader.output_color_type();
    let mut shrink = Shrink::new(width, height, max_side);
    let mut rgb = Vec::with_capacity(width as usize * 3);
    if reader.info().interlaced {
        let size = reader
            .output_buffer_size()
            .filter(|&n| n <= MAX_INTERLACED_BYTES)
            .with_context(|| {
                format!("interlaced {width} x {height} image is too large to decode")
            })?;
        let mut buf = vec![0; size];
        let info = reader.next_frame(&mut buf)?;
        for row in buf.chunks(info.line_size).take(height as usize) {
            on_white(row, color, &mut rgb)?;
            shrink.push_row(&rgb);
        }
    } else {
        while let Some(row) = reader.next_row()? {
            on_white(row.data(), color, &mut rgb)?;
            shrink.push_row(&rgb);
        }
    }
    let (w, h, pixels) = shrink.finish();
    encode(w, h, ColorType::Rgb, &pixels)
}

/// Encodes 8-bit pixels (`Rgb` or `Grayscale`) as a PNG.
pub fn encode(width: u32, height: u32, color: ColorType, pixels: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(color);
    encoder.set_depth(BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(pixels)?;
    writer.finish()?;
    Ok(out)
}

/// One decoded row as RGB, alpha composited on white.
fn on_white(row: &[u8], color: ColorType, rgb: &mut Vec<u8>) -> anyhow::Result<()> {
    fn blend(c: u8, a: u8) -> u8 {
        ((c as u32 * a as u32 + 255 * (255 - a as u32) + 127) / 255) as u8
    }
    rgb.clear();
    match color {
        ColorType::Rgb => rgb.extend_from_slice(row),
        ColorType::Rgba => {
            for p in row.chunks_exact(4) {
                rgb.extend([blend(p[0], p[3]), blend(p[1], p[3]), blend(p[2], p[3])]);
            }
        }
        ColorType::Grayscale => rgb.extend(row.iter().flat_map(|&g| [g, g, g])),
        ColorType::GrayscaleAlpha => {
            for p in row.chunks_exact(2) {
                let g = blend(p[0], p[1]);
                rgb.extend([g, g, g]);
            }
        }
        ColorType::Indexed => bail!("palette image was not expanded"),
    }
    Ok(())
}

/// Box-filter downscaling fed one RGB row at a time.
struct Shrink {
    width: u32,
    height: u32,
    out_width: u32,
    out_height: u32,
    /// Source rows seen.
    row: u32,
    /// Output row being accumulated.
    out_row: u32,
    sums: Vec<u32>,
    counts: Vec<u32>,
    pixels: Vec<u8>,
}

impl Shrink {
    fn new(width: u32, height: u32, max_side: u32) -> Shrink {
        let scale = |side: u32, other: u32| -> u32 {
            if width.max(height) <= max_side {
                side
            } else {
                ((side as u64 * max_side as u64) / other.max(side) as u64).max(1) as u32
            }
        };
        let out_width = scale(width, height);
        let out_height = scale(height, width);
        Shrink {
            width,
            height,
            out_width,
            out_height,
            row: 0,
            out_row: 0,
            sums: vec![0; out_width as usize * 3],
            counts: vec![0; out_width as usize],
            pixels: Vec::with_capacity(out_width as usize * out_height as usize * 3),
        }
    }

    fn push_row(&mut self, rgb: &[u8]) {
        let target = (self.row as u64 * self.out_height as u64 / self.height as u64) as u32;
        if target != self.out_row {
            self.flush();
            self.out_row = target;
        }
        for (x, p) in rgb.chunks_exact(3).take(self.width as usize).enumerate() {
            let tx = x * self.out_width as usize / self.width as usize;
            self.counts[tx] += 1;
            for (sum, &v) in self.sums[tx * 3..tx * 3 + 3].iter_mut().zip(p) {
                *sum += v as u32;
            }
        }
        self.row += 1;
    }

    fn flush(&mut self) {
        for (tx, &count) in self.counts.iter().enumerate() {
            for c in 0..3 {
                let sum = self.sums[tx * 3 + c];
                self.pixels.push(((sum + count / 2) / count.max(1)) as u8);
            }
        }
        self.sums.fill(0);
        self.counts.fill(0);
    }

    fn finish(mut self) -> (u32, u32, Vec<u8>) {
        if self.row > 0 {
            self.flush();
        }
        let full = self.out_width as usize * self.out_height as usize * 3;
        self.pixels.resize(full, 255);
        (self.out_width, self.out_height, self.pixels)
    }
}
