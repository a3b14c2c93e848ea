//! Procedurally drawn scenes of coloured shapes with compositional captions
//! ("a large red circle left of a small blue square"). Needs no downloads; pair `i` of a
//! seed is always the same, so any number of pairs can be drawn in any order or in parallel.
//! The label of a pair is the shape of its main object (the first one the caption names).

use std::fmt;

use limoe_core::random::SplitMix64;
use limoe_core::spec::{SYNTHETIC_COLORS, SYNTHETIC_SHAPES, synthetic_class};

use crate::shards::Pair;

/// Shape names, in label order.
pub const SHAPES: [&str; 4] = SYNTHETIC_SHAPES;

/// Colour names and their RGB values, in the order of [`SYNTHETIC_COLORS`].
pub const COLORS: [(&str, [u8; 3]); 6] = [
    (SYNTHETIC_COLORS[0], [220, 40, 40]),
    (SYNTHETIC_COLORS[1], [40, 170, 60]),
    (SYNTHETIC_COLORS[2], [40, 80, 220]),
    (SYNTHETIC_COLORS[3], [230, 200, 30]),
    (SYNTHETIC_COLORS[4], [140, 60, 180]),
    (SYNTHETIC_COLORS[5], [240, 130, 20]),
];

/// The number of classes: every colour of every shape.
const CLASSES: usize = SHAPES.len() * COLORS.len();

/// Which classes (labels) a scene may show: none of `held_out`, and as its main object only
/// those of `main` when that is restricted.
#[derive(Clone, Debug, PartialEq)]
pub struct Drawable {
    held_out: [bool; CLASSES],
    main: Option<[bool; CLASSES]>,
}

impl Drawable {
    /// Every class, anywhere.
    pub fn all() -> Drawable {
        Drawable {
            held_out: [false; CLASSES],
            main: None,
        }
    }

    /// The classes of a spec's `hold_out` and `classes` lists (names checked by the spec;
    /// an unknown one here is an error naming it). Errors too when fewer than 2 classes are
    /// left to draw, or no main class is.
    pub fn new(hold_out: &[String], classes: &[String]) -> anyhow::Result<Drawable> {
        let labels = |names: &[String]| -> anyhow::Result<[bool; CLASSES]> {
            let mut set = [false; CLASSES];
            for name in names {
                let label = synthetic_class(name)
                    .ok_or_else(|| anyhow::anyhow!("`{name}` is not a synthetic class"))?;
                set[label] = true;
            }
            Ok(set)
        };
        let held_out = labels(hold_out)?;
        let main = (!classes.is_empty()).then(|| labels(classes)).transpose()?;
        let drawable = Drawable { held_out, main };
        let left = (0..CLASSES).filter(|&l| !drawable.held_out[l]).count();
        if left < 2 || !(0..CLASSES).any(|l| drawable.may_be_main(l)) {
            anyhow::bail!(
                "hold_out and classes leave {left} classes to draw and no main one; a scene \
                 needs 2 different classes"
            );
        }
        Ok(drawable)
    }

    fn may_be_main(&self, label: usize) -> bool {
        !self.held_out[label] && self.main.is_none_or(|main| main[label])
    }
}

const BACKGROUND: [u8; 3] = [255, 255, 255];

/// Relations between the main object and the second one.
const RELATIONS: [Relation; 4] = [
    Relation::LeftOf,
    Relation::RightOf,
    Relation::Above,
    Relation::Below,
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Relation {
    LeftOf,
    RightOf,
    Above,
    Below,
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Relation::LeftOf => "left of",
            Relation::RightOf => "right of",
            Relation::Above => "above",
            Relation::Below => "below",
        })
    }
}

/// One object of a scene, in pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Object {
    shape: usize,
    color: usize,
    large: bool,
    center: (f32, f32),
    radius: f32,
}

impl Object {
    fn phrase(&self) -> String {
        let size = if self.large { "large" } else { "small" };
        format!("a {size} {} {}", COLORS[self.color].0, SHAPES[self.shape])
    }

    /// True when the pixel centre (x, y) lies inside the shape.
    fn covers(&self, x: f32, y: f32) -> bool {
        let (dx, dy) = (x - self.center.0, y - self.center.1);
        let r = self.radius;
        match self.shape {
            0 => dx * dx + dy * dy <= r * r,
            1 => dx.abs() <= 0.85 * r && dy.abs() <= 0.85 * r,
            2 => dy.abs() <= r && dx.abs() <= (dy + r) / 2.0,
            _ => {
                let arm = r / 3.0;
                (dx.abs() <= arm && dy.abs() <= r) || (dy.abs() <= arm && dx.abs() <= r)
            }
        }
    }
}

/// Draws pair `index` of the dataset of `seed` with every class allowed; see [`draw`].
pub fn generate(seed: u64, index: u64, image_size: u32) -> Pair {
    draw(seed, index, image_size, &Drawable::all())
}

/// Draws pair `index` of the dataset of `seed`, on a square canvas of `image_size` pixels
/// (at least 8), showing only the classes `drawable` allows (objects of other classes are
/// redrawn, so with every class allowed the pairs are those of [`generate`]). Its key is `synthetic-<seed>-<index>`, its image PNG-encoded RGB. Its class
/// is the main object's colour and shape ("red circle"): label `colour * SHAPES.len() +
/// shape` over [`COLORS`] x [`SHAPES`], 24 classes (a tiny model learns colours long before
/// shapes, so a shape-only label leaves zero-shot accuracy at chance for a CPU-sized run).
pub fn draw(seed: u64, index: u64, image_size: u32, drawable: &Drawable) -> Pair {
    let mut rng = SplitMix64::new(seed ^ index.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let side = image_size.max(8) as f32;
    let object = |rng: &mut SplitMix64, not_like: Option<&Object>| loop {
        let large = rng.below_modulo(2) == 1;
        let candidate = Object {
            shape: rng.below_modulo(SHAPES.len()),
            color: rng.below_modulo(COLORS.len()),
            large,
            center: (0.0, 0.0),
            radius: side * if large { 0.2 } else { 0.12 },
        };
        let same =
            not_like.is_some_and(|o| o.shape == candidate.shape && o.color == candidate.color);
        let label = candidate.color * SHAPES.len() + candidate.shape;
        let allowed = match not_like {
            None => drawable.may_be_main(label),
            Some(_) => !drawable.held_out[label],
        };
        if !same && allowed {
            return candidate;
        }
    };
    let mut main = object(&mut rng, None);
    let second = (rng.below_modulo(10) < 7).then(|| {
        (
            object(&mut rng, Some(&main)),
            RELATIONS[rng.below_modulo(4)],
        )
    });
    let place = |rng: &mut SplitMix64, o: &Object, x: (f32, f32), y: (f32, f32)| {
        // x and y are the allowed band of the centre, as fractions of the side.
        let lo = |f: f32| (f * side).max(o.radius);
        let hi = |f: f32| (f * side).min(side - o.radius);
        (
            rng.between(lo(x.0), hi(x.1).max(lo(x.0))),
            rng.between(lo(y.0), hi(y.1).max(lo(y.0))),
        )
    };
    let (caption, objects) = match second {
        None => {
            main.center = place(&mut rng, &main, (0.0, 1.0), (0.0, 1.0));
            (main.phrase(), vec![main])
        }
        Some((mut other, relation)) => {
            let (first_half, second_half) = ((0.0, 0.5), (0.5, 1.0));
            let whole = (0.0, 1.0);
            let (main_band, other_band) = match relation {
                Relation::LeftOf => ((first_half, whole), (second_half, whole)),
                Relation::RightOf => ((second_half, whole), (first_half, whole)),
                Relation::Above => ((whole, first_half), (whole, second_half)),
                Relation::Below => ((whole, second_half), (whole, first_half)),
            };
            main.center = place(&mut rng, &main, main_band.0, main_band.1);
            other.center = place(&mut rng, &other, other_band.0, other_band.1);
            (
                format!("{} {relation} {}", main.phrase(), other.phrase()),
                vec![other, main],
            )
        }
    };
    let png = render_png(image_size.max(8), &objects);
    Pair {
        key: format!("synthetic-{seed}-{index}"),
        image: png,
        caption,
        label: Some((main.color * SHAPES.len() + main.shape) as i32),
        label_name: Some(format!("{} {}", COLORS[main.color].0, SHAPES[main.shape])),
        source: "synthetic".into(),
    }
}

/// Paints `objects` in order (later on top) on a white canvas and encodes it as PNG.
fn render_png(side: u32, objects: &[Object]) -> Vec<u8> {
    let mut pixels = Vec::with_capacity((side * side * 3) as usize);
    for y in 0..side {
        for x in 0..side {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let color = objects
                .iter()
                .rev()
                .find(|o| o.covers(px, py))
                .map_or(BACKGROUND, |o| COLORS[o.color].1);
            pixels.extend_from_slice(&color);
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // Writing a correctly sized RGB8 buffer into a Vec cannot fail.
    let mut writer = encoder.write_header().expect("PNG header into memory");
    writer
        .write_image_data(&pixels)
        .expect("PNG data into memory");
    writer.finish().expect("PNG end into memory");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png_bytes: &[u8]) -> (u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.width, info.height);
        buf.truncate(info.buffer_size());
        (info.width, buf)
    }

    #[test]
    fn pairs_are_reproducible_and_varied() {
        assert_eq!(generate(7, 3, 32), generate(7, 3, 32));
        assert_ne!(generate(7, 3, 32).caption, generate(8, 3, 32).caption);
        let captions: std::collections::BTreeSet<String> =
            (0..200).map(|i| generate(0, i, 32).caption).collect();
        assert!(
            captions.len() > 150,
            "only {} distinct captions",
            captions.len()
        );
        let labels: std::collections::BTreeSet<Option<i32>> =
            (0..200).map(|i| generate(0, i, 32).label).collect();
        assert_eq!(
            labels.len(),
            SHAPES.len() * COLORS.len(),
            "every colour and shape appears as a label"
        );
    }

    #[test]
    fn held_out_classes_are_never_drawn_and_classes_pick_the_main_object() {
        let held = ["green triangle".to_owned(), "blue cross".to_owned()];
        let training = Drawable::new(&held, &[]).unwrap();
        for index in 0..400 {
            let pair = draw(3, index, 16, &training);
            for name in &held {
                assert!(!pair.caption.contains(name.as_str()), "{}", pair.caption);
            }
        }
        let benchmark = Drawable::new(&[], &held).unwrap();
        let names: std::collections::BTreeSet<String> = (0..100)
            .map(|i| draw(3, i, 16, &benchmark).label_name.unwrap())
            .collect();
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["blue cross", "green triangle"]
        );
        // With every class allowed the scenes are those of `generate`.
        assert_eq!(draw(3, 5, 16, &Drawable::all()), generate(3, 5, 16));
        let unknown = Drawable::new(&["pink circle".to_owned()], &[]).unwrap_err();
        assert!(unknown.to_string().contains("`pink circle`"), "{unknown}");
        let all: Vec<String> = (0..CLASSES)
            .map(|l| {
                format!(
                    "{} {}",
                    COLORS[l / SHAPES.len()].0,
                    SHAPES[l % SHAPES.len()]
                )
            })
            .collect();
        assert!(Drawable::new(&all[1..], &[]).is_err(), "one class left");
    }

    #[test]
    fn caption_names_the_label_and_the_image_shows_its_colour() {
        for index in 0..50 {
            let pair = generate(1, index, 32);
            assert_eq!(pair.key, format!("synthetic-1-{index}"));
            let label = pair.label.unwrap();
            let name = pair.label_name.as_deref().unwrap();
            let (color, shape) = (label as usize / SHAPES.len(), label as usize % SHAPES.len());
            assert_eq!(format!("{} {}", COLORS[color].0, SHAPES[shape]), name);
            let words: Vec<&str> = pair.caption.split(' ').collect();
            assert_eq!(words[0], "a");
            assert!(["small", "large"].contains(&words[1]), "{}", pair.caption);
            assert_eq!(
                format!("{} {}", words[2], words[3]),
                name,
                "{}",
                pair.caption
            );
            let color = COLORS.iter().find(|(name, _)| *name == words[2]).unwrap().1;
            let (side, pixels) = decode(&pair.image);
            assert_eq!(side, 32);
            let painted = pixels.chunks(3).filter(|p| *p == color).count();
            assert!(
                painted >= 10,
                "{}: only {painted} pixels of {}",
                pair.caption,
                words[2]
            );
        }
    }

    #[test]
    fn relations_place_objects_on_the_named_side() {
        let mut checked = 0;
        for index in 0..300 {
            let pair = generate(2, index, 64);
            let Some(rest) = pair.caption.strip_prefix("a ") else {
                continue;
            };
            let words: Vec<&str> = rest.split(' ').collect();
            if words.len() < 7 || words[3] != "left" {
                continue;
            }
            // "a SIZE COLOR SHAPE left of a SIZE COLOR SHAPE": the main colour's mean x is
            // smaller than the other's.
            let (first, second) = (words[1], words[7]);
            if first == second {
                continue;
            }
            let (side, pixels) = decode(&pair.image);
            let mean_x = |name: &str| {
                let rgb = COLORS.iter().find(|(n, _)| *n == name).unwrap().1;
                let xs: Vec<f32> = pixels
                    .chunks(3)
                    .enumerate()
                    .filter(|(_, p)| *p == rgb)
                    .map(|(i, _)| (i as u32 % side) as f32)
                    .collect();
                xs.iter().sum::<f32>() / xs.len().max(1) as f32
            };
            assert!(mean_x(first) < mean_x(second), "{}", pair.caption);
            checked += 1;
        }
        assert!(checked >= 10, "only {checked} `left of` scenes checked");
    }
}
