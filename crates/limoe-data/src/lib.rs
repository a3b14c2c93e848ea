//! Parquet shards of image-text pairs, from the sources a spec names to the batches the
//! trainer consumes: the canonical [`schema`], the [`shards`] writer with `index.json`,
//! key-hash [`split`]s, the [`synthetic`] scene generator, [`fetch`]ing of real data sets and
//! their importers ([`sources`]), the `ingest` stage, the streaming [`loader::Loader`]
//! (seeded order, shuffle buffer, exact resume) and the [`batch`]er (decode, patchify,
//! tokenize); for using a trained model, [`named_images`] and single [`shard_file`]s.

pub mod batch;
pub mod benchmarks;
pub mod decode;
pub mod fetch;
mod ingest;
pub mod loader;
pub mod named_images;
pub mod patches;
pub mod schema;
mod shard_check;
pub mod shard_file;
pub mod shards;
pub mod sources;
pub mod split;
pub mod synthetic;
pub mod tokenizer;

pub use benchmarks::BenchmarksStage;
pub use ingest::IngestStage;
