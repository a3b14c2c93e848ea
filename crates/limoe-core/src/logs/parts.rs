//! The part files of a log directory: how the writer names them and which ones readers take.

use std::path::{Path, PathBuf};

/// The file name of the part whose first row is at step `first_step` (`first_step >= 0`):
/// `part-<step, 12 digits>.parquet`.
pub fn part_name(first_step: i64) -> String {
    format!("part-{first_step:012}.parquet")
}

/// The first step a part's name carries, if it is named like [`part_name`]'s parts.
pub fn part_step(path: &Path) -> Option<i64> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix("part-")?
        .strip_suffix(".parquet")?
        .parse()
        .ok()
}

/// The part files of the log directory `log_dir`: every regular `*.parquet` file that is not
/// hidden (temporary files of unfinished writes are hidden), in step order (by
/// [`part_step`], so also past 12 digits; other names first, by name).
pub fn part_files(log_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(log_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with('.') && name.ends_with(".parquet") && entry.path().is_file() {
            parts.push(entry.path());
        }
    }
    parts.sort_by_cached_key(|path| (part_step(path), path.clone()));
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_listed_in_step_order_without_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            part_name(30),
            part_name(1_000_000_000_000),
            part_name(4),
            "foreign.parquet".into(),
            ".tmpXk3a9Q".into(),
            ".part-000000000007.parquet".into(),
            "notes.txt".into(),
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        std::fs::create_dir(dir.path().join("nested.parquet")).unwrap();
        let names: Vec<String> = part_files(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "foreign.parquet",
                "part-000000000004.parquet",
                "part-000000000030.parquet",
                "part-1000000000000.parquet"
            ]
        );
        assert_eq!(
            part_step(Path::new("x/part-000000000030.parquet")),
            Some(30)
        );
        assert_eq!(part_step(Path::new("foreign.parquet")), None);
    }
}
