//! Tux Paint stamps (Debian `tuxpaint-stamps-default`): every stamp is a `.txt` description
//! next to a `.png` (or only an `.svg`, skipped: not rasterised). Caption = the first line of
//! the `.txt`; label = the top-level category directory ("animals", "food", ...).

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;

use limoe_core::files::list_files;

use super::{Intake, read_png, squash, top_dir};
use crate::shards::Pair;

/// Where the package puts the stamps, relative to the unpacked package.
pub const STAMPS_DIR: &str = "usr/share/tuxpaint/stamps";

/// Imports the stamps of the unpacked package at `pkg`, in path order.
pub fn import(pkg: &Path, intake: &mut Intake) -> anyhow::Result<()> {
    let root = pkg.join(STAMPS_DIR);
    let files = list_files(&root).with_context(|| format!("cannot list {}", root.display()))?;
    let texts: Vec<_> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    let categories: BTreeSet<String> = texts.iter().filter_map(|p| top_dir(p)).collect();
    let categories: Vec<String> = categories.into_iter().collect();
    intake.expect(texts.len());
    for text in texts {
        if intake.full() {
            break;
        }
        let path = root.join(text);
        let description =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let description = String::from_utf8_lossy(&description);
        let first = description.lines().next().unwrap_or_default();
        let caption = squash(first.trim_start_matches('\u{feff}'));
        if caption.is_empty() {
            intake.skip("empty description");
            continue;
        }
        let png = path.with_extension("png");
        if !png.is_file() {
            intake.skip(if path.with_extension("svg").is_file() {
                "svg only (not rasterised)"
            } else {
                "no image"
            });
            continue;
        }
        let Some(image) = read_png(&png, intake, "undecodable png") else {
            continue;
        };
        let label_name = top_dir(text);
        let label = label_name
            .as_ref()
            .and_then(|c| categories.binary_search(c).ok())
            .map(|i| i as i32);
        intake.add(Pair {
            key: format!("tuxpaint-{}", text.with_extension("").to_string_lossy()),
            image,
            caption,
            label,
            label_name,
            source: intake.source().to_owned(),
        })?;
    }
    Ok(())
}
