//! Importers: each turns one source's raw files into canonical [`Pair`]s, counting what it
//! skips and why. [`import`] fetches a source's packages on demand and runs its importer.

mod content;
pub mod emoji;
pub mod fashion_mnist;
pub mod mnist;
pub mod openclipart;
pub mod parquet;
pub mod raster;
pub mod tuxpaint;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::Context;

use indicatif::ProgressBar;
use limoe_core::Progress;
use limoe_core::spec::Source;

pub use content::{content, contents};

use crate::fetch;
use crate::shards::Pair;
use crate::synthetic;

/// What one source yielded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imported {
    /// Source name, as written in the pairs' `source` column.
    pub source: String,
    /// Pairs handed on.
    pub pairs: usize,
    /// Items skipped, by reason.
    pub skipped: BTreeMap<String, usize>,
}

/// Where an importer hands its pairs: counts them, stops at the source's `limit`, and counts
/// skipped items by reason.
pub struct Intake<'a> {
    imported: Imported,
    limit: Option<usize>,
    sink: &'a mut dyn FnMut(Pair) -> anyhow::Result<()>,
    progress: Option<&'a Progress>,
    bar: Option<ProgressBar>,
}

impl<'a> Intake<'a> {
    /// An intake for `source` that hands at most `limit` pairs to `sink`.
    pub fn new(
        source: &str,
        limit: Option<usize>,
        sink: &'a mut dyn FnMut(Pair) -> anyhow::Result<()>,
    ) -> Intake<'a> {
        Intake {
            imported: Imported {
                source: source.to_owned(),
                ..Imported::default()
            },
            limit,
            sink,
            progress: None,
            bar: None,
        }
    }

    /// Draws a progress bar once the importer knows how many items it will look at.
    pub fn with_progress(mut self, progress: &'a Progress) -> Intake<'a> {
        self.progress = Some(progress);
        self
    }

    /// The source name.
    pub fn source(&self) -> &str {
        &self.imported.source
    }

    /// Announces the number of items to look at (for the progress bar).
    pub fn expect(&mut self, items: usize) {
        if let Some(progress) = self.progress {
            let total = self.limit.map_or(items, |l| l.min(items));
            self.bar = Some(progress.bar(total as u64, &self.imported.source));
        }
    }

    /// Whether the limit is reached (importers stop looking then).
    pub fn full(&self) -> bool {
        self.limit.is_some_and(|l| self.imported.pairs >= l)
    }

    /// Hands on one pair.
    pub fn add(&mut self, pair: Pair) -> anyhow::Result<()> {
        (self.sink)(pair)?;
        self.imported.pairs += 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        Ok(())
    }

    /// Counts one skipped item.
    pub fn skip(&mut self, reason: &str) {
        *self.imported.skipped.entry(reason.to_owned()).or_default() += 1;
    }

    /// What was handed on and skipped.
    pub fn finish(self) -> Imported {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        self.imported
    }
}

/// Imports one spec source: fetches its packages into `raw` when they are not there yet, then
/// hands its pairs to `sink`. Emoji yields one [`Imported`] per drawing style.
pub fn import(
    source: &Source,
    seed: u64,
    raw: &Path,
    progress: &Progress,
    sink: &mut dyn FnMut(Pair) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Imported>> {
    let mut dirs = Vec::new();
    for package in fetch::packages(source) {
        dirs.push(fetch::fetch(raw, package)?.0);
    }
    let mut done = Vec::new();
    match source {
        Source::Synthetic(s) => {
            let drawable = synthetic::Drawable::new(&s.hold_out, &s.classes)?;
            let mut intake = Intake::new("synthetic", None, sink).with_progress(progress);
            intake.expect(s.pairs);
            for index in 0..s.pairs as u64 {
                intake.add(synthetic::draw(seed, index, s.image_size, &drawable))?;
            }
            done.push(intake.finish());
        }
        Source::Openclipart(l) => {
            let mut intake = Intake::new("openclipart", l.limit, sink).with_progress(progress);
            openclipart::import(&dirs[0], &dirs[1], &mut intake)?;
            done.push(intake.finish());
        }
        Source::Emoji(e) => {
            for (&style, dir) in e.styles.iter().zip(&dirs) {
                let name = emoji::source_name(style);
                let mut intake = Intake::new(&name, e.limit, sink).with_progress(progress);
                emoji::import(dir, style, &mut intake)?;
                done.push(intake.finish());
            }
        }
        Source::Tuxpaint(l) => {
            let mut intake = Intake::new("tuxpaint", l.limit, sink).with_progress(progress);
            tuxpaint::import(&dirs[0], &mut intake)?;
            done.push(intake.finish());
        }
        Source::FashionMnist(l) => {
            let mut intake = Intake::new("fashion_mnist", l.limit, sink).with_progress(progress);
            fashion_mnist::import(&dirs[0], &mut intake)?;
            done.push(intake.finish());
        }
        Source::Mnist(l) => {
            let mut intake = Intake::new("mnist", l.limit, sink).with_progress(progress);
            mnist::import(&dirs[0], &mut intake)?;
            done.push(intake.finish());
        }
        Source::Parquet(p) => {
            let mut intake = Intake::new("parquet", None, sink).with_progress(progress);
            parquet::import(p, &mut intake)?;
            done.push(intake.finish());
        }
    }
    Ok(done)
}

/// A class caption: `template` with `{}` replaced by the class name, and `a {}` turned into
/// `an {}` before a vowel ("a photo of an ankle boot.").
pub fn class_caption(template: &str, name: &str) -> String {
    let starts_with_vowel = name
        .chars()
        .next()
        .is_some_and(|c| "aeiou".contains(c.to_ascii_lowercase()));
    if starts_with_vowel && template.contains("a {}") {
        template.replacen("a {}", &format!("an {name}"), 1)
    } else {
        template.replacen("{}", name, 1)
    }
}

/// Collapses runs of whitespace into single spaces and trims.
pub fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The top-level directory of a relative path, when the path is inside one.
pub fn top_dir(path: &Path) -> Option<String> {
    let mut parts = path.components();
    let first = parts.next()?;
    parts
        .next()
        .map(|_| first.as_os_str().to_string_lossy().into_owned())
}

/// The PNG at `path` re-encoded for a shard (alpha on white, longest side capped at
/// [`raster::MAX_SIDE`]); `None`, with the item counted as skipped for `reason`, when it
/// cannot be read or decoded.
pub(crate) fn read_png(path: &Path, intake: &mut Intake, reason: &str) -> Option<Vec<u8>> {
    match open(path).and_then(|f| raster::normalize_png(f, raster::MAX_SIDE)) {
        Ok(image) => Some(image),
        Err(e) => {
            tracing::debug!("{}: {e:#}", path.display());
            intake.skip(reason);
            None
        }
    }
}

/// Opens a file for buffered reading, naming it on failure.
pub(crate) fn open(path: &Path) -> anyhow::Result<BufReader<File>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(BufReader::new(file))
}
