//! Image bytes (PNG or JPEG) to 8-bit RGB, transparent pixels composited on white.

use anyhow::Context;
use image::{DynamicImage, ImageReader, RgbImage};

/// Decodes PNG or JPEG `bytes` to RGB. Pixels with alpha are composited on white
/// (`c' = (c * a + 255 * (255 - a)) / 255`, rounded); 16-bit images are reduced to 8 bits.
/// Other formats, damaged data and images whose pixels need more than 512 MiB are errors.
pub fn decode_rgb(bytes: &[u8]) -> anyhow::Result<RgbImage> {
    let image = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .context("cannot read the image header")?
        .decode()
        .context("not a decodable PNG or JPEG image")?;
    Ok(on_white(image))
}

/// Drops the alpha channel of `image` by compositing it on white.
fn on_white(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    let (width, height) = rgba.dimensions();
    let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
    for px in rgba.pixels() {
        let a = u32::from(px[3]);
        for &c in &px.0[..3] {
            rgb.push(((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8);
        }
    }
    // The buffer holds exactly width * height * 3 bytes.
    RgbImage::from_raw(width, height, rgb).expect("RGB buffer of the image's size")
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Rgb, Rgba, RgbaImage};

    fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        image.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn png_with_alpha_lands_on_white() {
        let mut img = RgbaImage::new(2, 1);
        img.put_pixel(0, 0, Rgba([10, 20, 30, 255]));
        img.put_pixel(1, 0, Rgba([0, 0, 0, 0]));
        let bytes = encode(DynamicImage::ImageRgba8(img.clone()), ImageFormat::Png);
        let rgb = decode_rgb(&bytes).unwrap();
        assert_eq!(rgb.get_pixel(0, 0), &Rgb([10, 20, 30]));
        assert_eq!(rgb.get_pixel(1, 0), &Rgb([255, 255, 255]));
        img.put_pixel(1, 0, Rgba([0, 100, 200, 128]));
        let rgb = decode_rgb(&encode(DynamicImage::ImageRgba8(img), ImageFormat::Png)).unwrap();
        // 0*128/255 + 255*127/255 = 127; 100*128/255 + 127 = 177.2; 200*128/255 + 127 = 227.4
        assert_eq!(rgb.get_pixel(1, 0), &Rgb([127, 177, 227]));
    }

    #[test]
    fn jpeg_decodes_close_to_its_source() {
        let img = RgbImage::from_pixel(16, 16, Rgb([200, 40, 60]));
        let bytes = encode(DynamicImage::ImageRgb8(img), ImageFormat::Jpeg);
        assert_eq!(&bytes[..2], [0xff, 0xd8], "a JPEG stream");
        let rgb = decode_rgb(&bytes).unwrap();
        assert_eq!(rgb.dimensions(), (16, 16));
        for (got, want) in rgb.get_pixel(8, 8).0.iter().zip([200u8, 40, 60]) {
            assert!(got.abs_diff(want) <= 4, "{:?}", rgb.get_pixel(8, 8));
        }
    }

    #[test]
    fn damaged_bytes_are_errors() {
        assert!(decode_rgb(b"not an image").is_err());
        assert!(decode_rgb(&[]).is_err());
        let img = RgbImage::from_pixel(8, 8, Rgb([1, 2, 3]));
        let bytes = encode(DynamicImage::ImageRgb8(img), ImageFormat::Png);
        assert!(
            decode_rgb(&bytes[..bytes.len() / 2]).is_err(),
            "truncated PNG"
        );
    }
}
