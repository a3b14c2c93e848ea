//! `limoe data`: fetches the raw packages that real data sources need into `<data.root>/raw/`
//! and reports what is there. The `ingest` stage fetches on demand too; this command does it
//! ahead of time (e.g. before going offline).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use limoe_core::Registry;
use limoe_core::spec::{DataSpec, Emoji, Limit, Source};
use limoe_data::fetch::{self, Manager};

use crate::load::load;

/// Every source kind that has packages to fetch, with default settings.
fn fetchable() -> Vec<Source> {
    vec![
        Source::Openclipart(Limit::default()),
        Source::Emoji(Emoji::default()),
        Source::Tuxpaint(Limit::default()),
        Source::FashionMnist(Limit::default()),
        Source::Mnist(Limit::default()),
    ]
}

/// `limoe data`: with a spec, the packages of its sources and benchmarks; without, those of
/// every fetchable source (under the default data root). `only` keeps the sources of these kinds.
pub fn data(
    registry: &Registry,
    spec: Option<&Path>,
    sets: &[String],
    only: &[String],
) -> anyhow::Result<ExitCode> {
    let (sources, root): (Vec<Source>, PathBuf) = match spec {
        Some(spec) => match load(registry, spec, sets) {
            Ok(loaded) => {
                let spec = loaded.spec;
                let benchmarks = spec.eval.benchmarks.into_values().map(|b| b.source);
                let sources = spec.data.sources.into_iter().chain(benchmarks).collect();
                (sources, spec.data.root)
            }
            Err(code) => return Ok(code),
        },
        None => (fetchable(), DataSpec::default().root),
    };
    let kinds: Vec<&str> = sources.iter().map(Source::name).collect();
    if let Some(unknown) = only.iter().find(|o| !kinds.contains(&o.as_str())) {
        bail!(
            "--only {unknown}: no such source here; the sources are: {}",
            kinds.join(", ")
        );
    }
    let mut packages: Vec<_> = sources
        .iter()
        .filter(|s| only.is_empty() || only.iter().any(|o| o == s.name()))
        .flat_map(fetch::packages)
        .collect();
    packages.sort();
    packages.dedup();
    let raw = fetch::raw_dir(&root);
    if packages.is_empty() {
        println!(
            "nothing to fetch: the sources ({}) need no packages",
            kinds.join(", ")
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("raw packages under {}", raw.display());
    for package in packages {
        let (dir, fetched, now) = fetch::fetch(&raw, package)?;
        let manager = match package.manager {
            Manager::Apt => "apt",
            Manager::Npm => "npm",
        };
        let state = if now {
            format!("fetched in {:.1}s", fetched.seconds)
        } else {
            "already there".to_owned()
        };
        println!(
            "{:<26} {manager}  {:>7.1} MB  {:<18} {}  ({})",
            package.name,
            fetched.bytes as f64 / 1e6,
            state,
            dir.display(),
            fetched.archive
        );
    }
    Ok(ExitCode::SUCCESS)
}
