//! Openclipart (Debian `openclipart-png` + `openclipart-svg`): the PNG of each clip, captioned
//! with its SVG's `dc:title` plus `dc:description` when present; label = top-level category
//! directory. Titles that more than [`MAX_TITLE_REPEATS`] clips share are collection templates
//! ("gramastar", "Part of the Flat Icon Collection (...)") and those clips are dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use quick_xml::Reader;
use quick_xml::events::Event;

use limoe_core::files::list_files;

use super::{Intake, open, read_png, squash, top_dir};
use crate::shards::Pair;

/// A title shared by more clips than this is a template, not a caption.
pub const MAX_TITLE_REPEATS: usize = 10;

/// Where the package puts its PNGs, relative to the unpacked `openclipart-png`.
pub const PNG_DIR: &str = "usr/share/openclipart/png";
/// Where the package puts its SVGs, relative to the unpacked `openclipart-svg`.
pub const SVG_DIR: &str = "usr/share/openclipart/svg";

/// The title and description in an SVG's metadata (`cc:Work`'s `dc:title` and
/// `dc:description`), whitespace squashed; empty when absent.
pub fn svg_metadata(path: &Path) -> anyhow::Result<(String, String)> {
    let mut reader = Reader::from_reader(open(path)?);
    let mut buf = Vec::new();
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let (mut title, mut description) = (String::new(), String::new());
    // Which field the text being read belongs to, and the depth of its element.
    let mut field: Option<(bool, usize)> = None;
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .with_context(|| format!("{} is not well-formed XML", path.display()))?;
        match event {
            Event::Start(e) => {
                let name = e.local_name().as_ref().to_vec();
                let in_work = stack.last().is_some_and(|p| p == b"Work");
                if field.is_none() && in_work && (name == b"title" || name == b"description") {
                    field = Some((name == b"title", stack.len()));
                }
                stack.push(name);
            }
            Event::End(e) => {
                stack.pop();
                if field.is_some_and(|(_, depth)| depth == stack.len()) {
                    field = None;
                }
                if e.local_name().as_ref() == b"metadata" {
                    break;
                }
            }
            Event::Text(t) => push(
                field,
                &mut title,
                &mut description,
                &String::from_utf8_lossy(&t),
            ),
            Event::CData(t) => push(
                field,
                &mut title,
                &mut description,
                &String::from_utf8_lossy(&t),
            ),
            Event::GeneralRef(r) => {
                let name = String::from_utf8_lossy(&r).into_owned();
                let text = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => quick_xml::escape::resolve_predefined_entity(&name)
                        .map_or_else(|| format!("&{name};"), str::to_owned),
                };
                push(field, &mut title, &mut description, &text);
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok((squash(&title), squash(&description)))
}

/// Appends text to the field being read, if any.
fn push(field: Option<(bool, usize)>, title: &mut String, description: &mut String, text: &str) {
    match field {
        Some((true, _)) => title.push_str(text),
        Some((false, _)) => description.push_str(text),
        None => {}
    }
}

/// The caption of a clip: its title, then its description when that adds something.
pub fn caption(title: &str, description: &str) -> String {
    if description.is_empty() || description.eq_ignore_ascii_case(title) {
        return title.to_owned();
    }
    let stop = if title.ends_with(['.', '!', '?']) {
        ""
    } else {
        "."
    };
    format!("{title}{stop} {description}")
}

/// Imports the clips of the unpacked packages at `png_pkg` and `svg_pkg`, in path order.
pub fn import(png_pkg: &Path, svg_pkg: &Path, intake: &mut Intake) -> anyhow::Result<()> {
    let png_root = png_pkg.join(PNG_DIR);
    let svg_root = svg_pkg.join(SVG_DIR);
    let listed = |root: &Path, ext: &str| -> anyhow::Result<BTreeSet<PathBuf>> {
        Ok(list_files(root)
            .with_context(|| format!("cannot list {}", root.display()))?
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .map(|p| p.with_extension(""))
            .collect())
    };
    // The packages hold each clip once as a file; other categories link to it (skipped).
    let pngs = listed(&png_root, "png")?;
    let svgs = listed(&svg_root, "svg")?;
    let clips: BTreeSet<&PathBuf> = pngs.union(&svgs).collect();
    let mut meta = BTreeMap::new();
    let mut uses: BTreeMap<String, usize> = BTreeMap::new();
    for &stem in &clips {
        let path = with_ext(&svg_root, stem, "svg");
        if !path.exists() {
            continue;
        }
        match svg_metadata(&path) {
            Ok((title, description)) => {
                *uses.entry(title.to_lowercase()).or_default() += 1;
                meta.insert(stem.clone(), (title, description));
            }
            Err(e) => tracing::debug!("{e:#}"),
        }
    }
    let categories: BTreeSet<String> = clips
        .iter()
        .filter_map(|s| top_dir(s).map(|c| c.replace('_', " ")))
        .collect();
    let categories: Vec<String> = categories.into_iter().collect();
    intake.expect(clips.len());
    for stem in clips {
        if intake.full() {
            break;
        }
        let png = with_ext(&png_root, stem, "png");
        if !pngs.contains(stem) && png.exists() {
            intake.skip("duplicate (png links to another clip)");
            continue;
        }
        let Some((title, description)) = meta.get(stem) else {
            intake.skip(if with_ext(&svg_root, stem, "svg").exists() {
                "svg metadata unreadable"
            } else {
                "png without svg (no title)"
            });
            continue;
        };
        if title.is_empty() {
            intake.skip("no title");
            continue;
        }
        if uses[&title.to_lowercase()] > MAX_TITLE_REPEATS {
            intake.skip("template title");
            continue;
        }
        if !png.exists() {
            intake.skip("svg only (not rasterised)");
            continue;
        }
        let Some(image) = read_png(&png, intake, "undecodable png") else {
            continue;
        };
        let label_name = top_dir(stem).map(|c| c.replace('_', " "));
        let label = label_name
            .as_ref()
            .and_then(|c| categories.binary_search(c).ok())
            .map(|i| i as i32);
        let key = format!("openclipart-{}", stem.to_string_lossy());
        intake.add(Pair {
            key,
            image,
            caption: caption(title, description),
            label,
            label_name,
            source: intake.source().to_owned(),
        })?;
    }
    Ok(())
}

/// `root/stem.ext` (stems may contain dots: `microchip_v.2_havok_redh_01`).
fn with_ext(root: &Path, stem: &Path, ext: &str) -> PathBuf {
    let mut path = root.join(stem).into_os_string();
    path.push(".");
    path.push(ext);
    PathBuf::from(path)
}
