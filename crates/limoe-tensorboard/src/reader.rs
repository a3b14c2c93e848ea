//! Reading event files back: every event, each record's checksums checked.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use prost::Message;

use crate::EVENT_FILE_MARK;
use crate::proto::Event;
use crate::record::split;

/// The events of one file, in order. A last record cut short (a writer killed mid-record)
/// is left out; a corrupt record is an error naming the file and its byte offset.
pub fn read_events(path: &Path) -> anyhow::Result<Vec<Event>> {
    Ok(read_file(path)?.0)
}

/// The events of a file, and whether its last record was torn.
pub(crate) fn read_file(path: &Path) -> anyhow::Result<(Vec<Event>, bool)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let records = split(&bytes).with_context(|| format!("{}", path.display()))?;
    let events = (records.records.iter())
        .map(|&(at, data)| {
            Event::decode(data).with_context(|| {
                format!(
                    "{}: the record at byte {at} is not an Event",
                    path.display()
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((events, records.torn_at.is_some()))
}

/// The event files directly in `dir`, in name order (the order they were written).
pub fn event_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if path.is_file()
            && name.is_some_and(|n| n.contains(EVENT_FILE_MARK) && !n.starts_with('.'))
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The events of every event file in `dir`, file after file.
pub fn read_dir(dir: &Path) -> anyhow::Result<Vec<Event>> {
    let files = event_files(dir)?;
    if files.is_empty() {
        bail!("no event file ({EVENT_FILE_MARK}) in {}", dir.display());
    }
    let mut events = Vec::new();
    for file in files {
        events.extend(read_events(&file)?);
    }
    Ok(events)
}
