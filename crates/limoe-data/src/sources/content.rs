//! What of a source's content the ingest cache key covers beyond the spec: the size and hash
//! of each foreign Parquet file, and the archive and hash of each fetched package. Synthetic
//! data is all in the spec.

use std::path::Path;

use anyhow::Context;
use limoe_core::content_hashes::ContentHashes;
use limoe_core::spec::Source;

use super::parquet;
use crate::fetch;

/// The [`content`] of each named source that has one, by name, for a stage's fingerprint;
/// `what` names a source in errors (e.g. `data.sources[0]`).
pub fn contents<'a>(
    named: impl IntoIterator<Item = (String, &'a Source)>,
    data_root: &Path,
    what: impl Fn(&str) -> String,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let raw = fetch::raw_dir(data_root);
    let mut hashes = ContentHashes::user();
    let contents = named
        .into_iter()
        .filter_map(|(name, source)| {
            let content = content(source, &raw, &mut hashes)
                .with_context(|| format!("{} ({})", what(&name), source.name()));
            content.transpose().map(|c| c.map(|c| (name, c)))
        })
        .collect();
    hashes.save();
    contents
}

/// The content of `source`, or `None` when the spec says it all. A package not fetched yet
/// is named by its fetch command; `limoe run` fetches before it plans
/// (`IngestStage::prepare`), so the key a run writes under is the key it is found by.
pub fn content(
    source: &Source,
    raw: &Path,
    hashes: &mut ContentHashes,
) -> anyhow::Result<Option<serde_json::Value>> {
    if let Source::Parquet(p) = source {
        // Data not there yet (a plan on another machine) is keyed as such; ingest, when
        // run, says what is missing.
        let files = match parquet::files(&p.path) {
            Ok(files) => files,
            Err(e) => return Ok(Some(serde_json::json!({ "unavailable": format!("{e:#}") }))),
        };
        let files = files
            .iter()
            .map(|file| hashes.content(file))
            .collect::<anyhow::Result<Vec<_>>>()?;
        return Ok(Some(serde_json::to_value(files)?));
    }
    let packages: Vec<serde_json::Value> = fetch::packages(source)
        .into_iter()
        .map(|package| match package.fetched(raw) {
            Some(fetched) => serde_json::json!({
                "package": package.name,
                "archive": fetched.archive,
                "sha256": fetched.sha256,
            }),
            None => serde_json::json!({ "package": package.command(), "fetched": false }),
        })
        .collect();
    Ok((!packages.is_empty()).then(|| packages.into()))
}
