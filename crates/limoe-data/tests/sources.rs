//! The importers on small fixtures the tests write themselves, laid out like the unpacked
//! packages (a few drawn PNGs, hand-written SVG metadata, a fake emoji.json, tiny IDX files).

use std::io::Write;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use limoe_core::spec::EmojiStyle;
use limoe_data::shards::Pair;
use limoe_data::sources::raster::{MAX_SIDE, encode};
use limoe_data::sources::{Imported, Intake, emoji, fashion_mnist, mnist, openclipart, tuxpaint};
use png::ColorType;

/// Runs an importer into a vector.
fn collect(
    source: &str,
    limit: Option<usize>,
    run: impl FnOnce(&mut Intake) -> anyhow::Result<()>,
) -> (Vec<Pair>, Imported) {
    let mut pairs = Vec::new();
    let mut sink = |p: Pair| -> anyhow::Result<()> {
        pairs.push(p);
        Ok(())
    };
    let mut intake = Intake::new(source, limit, &mut sink);
    run(&mut intake).unwrap_or_else(|e| panic!("{e:#}"));
    let imported = intake.finish();
    (pairs, imported)
}

/// An RGBA PNG: opaque red on the left half, fully transparent on the right.
fn rgba_png(width: u32, height: u32) -> Vec<u8> {
    let mut pixels = Vec::new();
    for _ in 0..height {
        for x in 0..width {
            pixels.extend(if x < width / 2 {
                [255, 0, 0, 255]
            } else {
                [0, 0, 0, 0]
            });
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&pixels).unwrap();
    writer.finish().unwrap();
    out
}

/// Width, height and RGB pixels (gray expanded) of a PNG written by the importers.
fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let rgb = match info.color_type {
        ColorType::Rgb => buf,
        ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g]).collect(),
        other => panic!("importers write RGB or grayscale PNGs, not {other:?}"),
    };
    (info.width, info.height, rgb)
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn svg(title: &str, description: &str) -> String {
    format!(
        r#"<?xml version="1.0"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:cc="http://web.resource.org/cc/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <metadata><rdf:RDF><cc:Work rdf:about="">
    <dc:title>{title}</dc:title>
    <dc:description>{description}</dc:description>
    <dc:creator><cc:Agent><dc:title>Some Author</dc:title></cc:Agent></dc:creator>
  </cc:Work></rdf:RDF></metadata>
  <rect width="10" height="10"/>
</svg>"#
    )
}

/// An Openclipart-like tree: two captioned clips, a huge one, a template collection, an
/// SVG-only clip, a clip without title and a linked duplicate.
fn openclipart_fixture(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let png_pkg = root.join("openclipart-png");
    let svg_pkg = root.join("openclipart-svg");
    let png = |rel: &str, bytes: &[u8]| write(&png_pkg.join(openclipart::PNG_DIR).join(rel), bytes);
    let sv = |rel: &str, text: &str| {
        write(
            &svg_pkg.join(openclipart::SVG_DIR).join(rel),
            text.as_bytes(),
        )
    };
    let small = encode(4, 4, ColorType::Rgb, &[90; 48]).unwrap();
    png("animals/cat_01.png", &rgba_png(8, 4));
    sv(
        "animals/cat_01.svg",
        &svg("Black  Cat", "A cat &amp; its shadow"),
    );
    png("food/big_v.2_pie.png", &rgba_png(600, 300));
    sv("food/big_v.2_pie.svg", &svg("Apple Pie", "apple pie"));
    for i in 0..=openclipart::MAX_TITLE_REPEATS {
        png(&format!("misc/icon_{i:02}.png"), &small);
        sv(&format!("misc/icon_{i:02}.svg"), &svg("gramastar", ""));
    }
    sv("shapes/star.svg", &svg("Star", ""));
    png("shapes/blank.png", &small);
    sv("shapes/blank.svg", &svg("", ""));
    let link = png_pkg.join(openclipart::PNG_DIR).join("pets/cat_01.png");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("../animals/cat_01.png", &link).unwrap();
    sv("pets/cat_01.svg", &svg("Black Cat", ""));
    (png_pkg, svg_pkg)
}

/// Each pair's key, caption and label, the fields the importer tests compare.
fn keys_captions_labels(pairs: &[Pair]) -> Vec<(&str, &str, Option<i32>)> {
    pairs
        .iter()
        .map(|p| (p.key.as_str(), p.caption.as_str(), p.label))
        .collect()
}

#[test]
fn openclipart_captions_caps_size_composites_alpha_and_drops_templates() {
    let dir = tempfile::tempdir().unwrap();
    let (png_pkg, svg_pkg) = openclipart_fixture(dir.path());
    let (pairs, imported) = collect("openclipart", None, |i| {
        openclipart::import(&png_pkg, &svg_pkg, i)
    });
    let captions: Vec<&str> = pairs.iter().map(|p| p.caption.as_str()).collect();
    assert_eq!(captions, ["Black Cat. A cat & its shadow", "Apple Pie"]);
    assert_eq!(pairs[0].key, "openclipart-animals/cat_01");
    assert_eq!(pairs[0].label_name.as_deref(), Some("animals"));
    assert_eq!(pairs[1].label_name.as_deref(), Some("food"));
    assert_ne!(pairs[0].label, pairs[1].label);
    assert!(pairs.iter().all(|p| p.source == "openclipart"));

    let (w, h, rgb) = decode(&pairs[0].image);
    assert_eq!((w, h), (8, 4));
    assert_eq!(&rgb[..3], &[255, 0, 0], "opaque pixels kept");
    assert_eq!(
        &rgb[rgb.len() - 3..],
        &[255, 255, 255],
        "alpha composited on white"
    );
    let (w, h, _) = decode(&pairs[1].image);
    assert_eq!((w, h), (MAX_SIDE, MAX_SIDE / 2), "longest side capped");

    let skipped: Vec<(&str, usize)> = imported
        .skipped
        .iter()
        .map(|(k, &v)| (k.as_str(), v))
        .collect();
    assert_eq!(
        skipped,
        [
            ("duplicate (png links to another clip)", 1),
            ("no title", 1),
            ("svg only (not rasterised)", 1),
            ("template title", openclipart::MAX_TITLE_REPEATS + 1),
        ]
    );
    assert_eq!(imported.pairs, 2);

    let (limited, _) = collect("openclipart", Some(1), |i| {
        openclipart::import(&png_pkg, &svg_pkg, i)
    });
    assert_eq!(limited.len(), 1);
    assert_eq!(
        limited[0], pairs[0],
        "the limit keeps the first in path order"
    );
}

#[test]
fn emoji_names_categories_and_styles() {
    let dir = tempfile::tempdir().unwrap();
    let entries = r#"[
      {"name": "GRINNING FACE", "unified": "1F600", "image": "1f600.png",
       "category": "Smileys & Emotion", "sort_order": 1,
       "has_img_twitter": true, "has_img_google": true},
      {"name": "Vatican City Flag", "unified": "1F1FB-1F1E6", "image": "1f1fb-1f1e6.png",
       "category": "Flags", "sort_order": 0, "has_img_twitter": true, "has_img_google": false},
      {"name": "NEW THING", "unified": "2000", "image": "2000.png", "category": "Gadgets",
       "sort_order": 2, "has_img_twitter": true, "has_img_google": true}
    ]"#;
    for set in ["twitter", "google"] {
        let pkg = dir.path().join(set).join("package");
        write(&pkg.join("emoji.json"), entries.as_bytes());
        for image in ["1f600.png", "1f1fb-1f1e6.png", "2000.png"] {
            write(
                &pkg.join("img").join(set).join("64").join(image),
                &rgba_png(6, 6),
            );
        }
    }
    let name = emoji::source_name(EmojiStyle::Twitter);
    let (pairs, imported) = collect(&name, None, |i| {
        emoji::import(&dir.path().join("twitter"), EmojiStyle::Twitter, i)
    });
    assert_eq!(name, "emoji-twitter");
    let got = keys_captions_labels(&pairs);
    assert_eq!(
        got,
        [
            ("emoji-twitter-1f1fb-1f1e6", "vatican city flag", Some(9)),
            ("emoji-twitter-1f600", "grinning face", Some(0)),
        ]
    );
    assert_eq!(pairs[1].label_name.as_deref(), Some("smileys & emotion"));
    assert_eq!(imported.skipped["unknown category"], 1);

    let (google, imported) = collect("emoji-google", None, |i| {
        emoji::import(&dir.path().join("google"), EmojiStyle::Google, i)
    });
    assert_eq!(google.len(), 1);
    assert_eq!(google[0].source, "emoji-google");
    assert_eq!(imported.skipped["no drawing in this style"], 1);
}

#[test]
fn tuxpaint_first_lines_and_categories() {
    let dir = tempfile::tempdir().unwrap();
    let stamps = dir.path().join(tuxpaint::STAMPS_DIR);
    let small = encode(3, 3, ColorType::Rgb, &[7; 27]).unwrap();
    write(
        &stamps.join("animals/cats/cat.txt"),
        "A cat says meow.\nfr.utf8=Un chat.\n".as_bytes(),
    );
    write(&stamps.join("animals/cats/cat.png"), &small);
    write(&stamps.join("food/apple.txt"), b"An apple.\n");
    write(&stamps.join("food/apple.svg"), svg("apple", "").as_bytes());
    write(&stamps.join("food/bread.txt"), b"A loaf of bread.");
    write(&stamps.join("food/bread.png"), &small);
    write(&stamps.join("food/gift.txt"), b"A gift.");
    write(&stamps.join("food/broken.txt"), b"A broken image.");
    write(
        &stamps.join("food/broken.png"),
        b"\x89PNG\r\n\x1a\ntruncated",
    );
    write(&stamps.join("food/empty.txt"), b"\n");
    write(&stamps.join("food/empty.png"), &small);
    let (pairs, imported) = collect("tuxpaint", None, |i| tuxpaint::import(dir.path(), i));
    let got: Vec<(&str, &str, Option<&str>, Option<i32>)> = pairs
        .iter()
        .map(|p| {
            (
                p.key.as_str(),
                p.caption.as_str(),
                p.label_name.as_deref(),
                p.label,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "tuxpaint-animals/cats/cat",
                "A cat says meow.",
                Some("animals"),
                Some(0)
            ),
            (
                "tuxpaint-food/bread",
                "A loaf of bread.",
                Some("food"),
                Some(1)
            ),
        ]
    );
    assert_eq!(imported.skipped["svg only (not rasterised)"], 1);
    assert_eq!(imported.skipped["no image"], 1);
    assert_eq!(imported.skipped["empty description"], 1);
    assert_eq!(imported.skipped["undecodable png"], 1);
}

/// An IDX file of unsigned bytes.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(data);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn fashion_mnist_reads_gzipped_and_plain_idx() {
    let dir = tempfile::tempdir().unwrap();
    let idx_dir = dir.path().join(fashion_mnist::IDX_DIR);
    let pixels: Vec<u8> = (0..3 * 4 * 2).map(|v| v as u8 * 10).collect();
    write(
        &idx_dir.join("train-images-idx3-ubyte.gz"),
        &gzip(&idx(&[3, 4, 2], &pixels)),
    );
    write(
        &idx_dir.join("train-labels-idx1-ubyte.gz"),
        &gzip(&idx(&[3], &[9, 0, 42])),
    );
    write(
        &idx_dir.join("t10k-images-idx3-ubyte"),
        &idx(&[1, 4, 2], &[200; 8]),
    );
    write(&idx_dir.join("t10k-labels-idx1-ubyte"), &idx(&[1], &[3]));
    let (pairs, imported) = collect("fashion_mnist", None, |i| {
        fashion_mnist::import(dir.path(), i)
    });
    let got = keys_captions_labels(&pairs);
    assert_eq!(
        got,
        [
            (
                "fashion_mnist-train-00000",
                "a photo of an ankle boot.",
                Some(9)
            ),
            (
                "fashion_mnist-train-00001",
                "a photo of a t-shirt.",
                Some(0)
            ),
            ("fashion_mnist-t10k-00000", "a photo of a dress.", Some(3)),
        ]
    );
    assert_eq!(imported.skipped["label out of range"], 1);
    let (w, h, rgb) = decode(&pairs[1].image);
    assert_eq!((w, h), (2, 4));
    assert_eq!(rgb[..3], [80, 80, 80], "second image, first pixel");

    write(&idx_dir.join("t10k-labels-idx1-ubyte"), &idx(&[2], &[3]));
    let mut sink = |_: Pair| Ok(());
    let mut intake = Intake::new("fashion_mnist", None, &mut sink);
    let error = format!(
        "{:#}",
        fashion_mnist::import(dir.path(), &mut intake).unwrap_err()
    );
    assert!(
        error.contains("t10k-labels-idx1-ubyte") && error.contains("need 2 bytes"),
        "{error}"
    );
}

#[test]
fn mnist_interleaves_digits_so_a_limit_stays_balanced() {
    let dir = tempfile::tempdir().unwrap();
    for digit in 0..10 {
        let samples = if digit == 0 { 2 } else { 1 };
        let data: Vec<String> = (0..samples * 784)
            .map(|i| {
                if i % 784 == 0 {
                    "1".into()
                } else {
                    format!("{}", digit as f32 / 10.0)
                }
            })
            .collect();
        write(
            &dir.path().join(format!("package/src/digits/{digit}.json")),
            format!("{{\"data\": [{}]}}", data.join(",")).as_bytes(),
        );
    }
    let (pairs, _) = collect("mnist", None, |i| mnist::import(dir.path(), i));
    assert_eq!(pairs.len(), 11);
    let keys: Vec<&str> = pairs.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(&keys[..2], ["mnist-0-0000", "mnist-1-0000"]);
    assert_eq!(keys[10], "mnist-0-0001");
    assert_eq!(pairs[7].caption, "a photo of the digit seven.");
    assert_eq!(pairs[7].label_name.as_deref(), Some("seven"));
    let (w, h, rgb) = decode(&pairs[5].image);
    assert_eq!((w, h), (28, 28));
    assert_eq!((rgb[0], rgb[3]), (255, 128));

    let (limited, _) = collect("mnist", Some(10), |i| mnist::import(dir.path(), i));
    let labels: Vec<i32> = limited.iter().filter_map(|p| p.label).collect();
    assert_eq!(labels, (0..10).collect::<Vec<_>>());
}
