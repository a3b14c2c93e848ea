//! Checking a written report: every picture its page refers to exists and is a valid PNG or
//! SVG.

use std::path::Path;

use anyhow::{Context, bail};

use super::{INDEX, PLOTS};

/// Checks every `plots/...` file that `dir/index.html` refers to: a PNG must start with the
/// PNG signature and hold more than a header, an SVG must be an `<svg>` document. Returns how
/// many references were checked.
pub fn verify_pictures(dir: &Path) -> anyhow::Result<usize> {
    let page = dir.join(INDEX);
    let html = std::fs::read_to_string(&page)
        .with_context(|| format!("cannot read {}", page.display()))?;
    let marker = format!("=\"{PLOTS}/");
    let mut checked = 0;
    for (i, _) in html.match_indices(&marker) {
        let rest = &html[i + 2..];
        let file = &rest[..rest.find('"').unwrap_or(rest.len())];
        let path = dir.join(file);
        let bytes = std::fs::read(&path).with_context(|| {
            format!("{} refers to {file}, which cannot be read", page.display())
        })?;
        let valid = if file.ends_with(".png") {
            bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 100
        } else {
            let text = String::from_utf8_lossy(&bytes);
            text.contains("<svg") && text.trim_end().ends_with("</svg>")
        };
        if !valid {
            bail!("{} is not a valid picture", path.display());
        }
        checked += 1;
    }
    Ok(checked)
}
