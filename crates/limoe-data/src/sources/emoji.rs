//! Emoji (npm `emoji-datasource-<style>`): `emoji.json` lists every emoji with its Unicode name
//! and category; the 64 px drawing is `img/<style>/64/<image>`. Caption = the name lowercased
//! ("grinning face"); label = the Unicode category (one of [`CATEGORIES`]); source =
//! `emoji-<style>`. Skin-tone variants are not imported (one drawing per name).

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use limoe_core::spec::EmojiStyle;

use super::{Intake, open, read_png, squash};
use crate::shards::Pair;

/// The Unicode emoji categories, in Unicode's order; a label is an index into this list.
pub const CATEGORIES: [&str; 10] = [
    "Smileys & Emotion",
    "People & Body",
    "Component",
    "Animals & Nature",
    "Food & Drink",
    "Travel & Places",
    "Activities",
    "Objects",
    "Symbols",
    "Flags",
];

/// One entry of `emoji.json` (the fields used).
#[derive(Debug, Deserialize)]
struct Entry {
    name: Option<String>,
    unified: String,
    image: String,
    category: String,
    #[serde(default)]
    sort_order: u64,
    #[serde(default)]
    has_img_twitter: bool,
    #[serde(default)]
    has_img_google: bool,
}

/// The style's name in the package paths.
fn style_name(style: EmojiStyle) -> &'static str {
    match style {
        EmojiStyle::Twitter => "twitter",
        EmojiStyle::Google => "google",
    }
}

/// The `source` of a style's pairs: `emoji-twitter`, `emoji-google`.
pub fn source_name(style: EmojiStyle) -> String {
    format!("emoji-{}", style_name(style))
}

/// Imports one style from its unpacked npm package at `pkg`, in `sort_order`.
pub fn import(pkg: &Path, style: EmojiStyle, intake: &mut Intake) -> anyhow::Result<()> {
    let root = pkg.join("package");
    let list = root.join("emoji.json");
    let mut entries: Vec<Entry> = serde_json::from_reader(open(&list)?)
        .with_context(|| format!("{} is not an emoji-datasource list", list.display()))?;
    entries.sort_by(|a, b| (a.sort_order, &a.unified).cmp(&(b.sort_order, &b.unified)));
    let set = style_name(style);
    let images = root.join("img").join(set).join("64");
    intake.expect(entries.len());
    for entry in entries {
        if intake.full() {
            break;
        }
        let has_image = match style {
            EmojiStyle::Twitter => entry.has_img_twitter,
            EmojiStyle::Google => entry.has_img_google,
        };
        if !has_image {
            intake.skip("no drawing in this style");
            continue;
        }
        let caption = squash(&entry.name.unwrap_or_default()).to_lowercase();
        if caption.is_empty() {
            intake.skip("no name");
            continue;
        }
        let Some(label) = CATEGORIES.iter().position(|&c| c == entry.category) else {
            intake.skip("unknown category");
            continue;
        };
        let path = images.join(&entry.image);
        let Some(image) = read_png(&path, intake, "missing or undecodable png") else {
            continue;
        };
        intake.add(Pair {
            key: format!("{}-{}", intake.source(), entry.unified.to_lowercase()),
            image,
            caption,
            label: Some(label as i32),
            label_name: Some(entry.category.to_lowercase()),
            source: intake.source().to_owned(),
        })?;
    }
    Ok(())
}
