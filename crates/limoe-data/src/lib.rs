//! Parquet shards of image-text pairs: schema, writer, streaming loader, importers.
//!
//! Built so far: the canonical schema, the shard writer with `index.json`, key-hash splits,
//! the synthetic scene generator, fetching of real data sets ([`fetch`]) and their
//! importers ([`sources`]), the `ingest` stage for every source kind, and the
//! streaming [`loader::Loader`] (seeded per-epoch order, shuffle buffer).

pub mod batch;
pub mod decode;
pub mod fetch;
mod ingest;
pub mod loader;
pub mod patches;
pub mod schema;
pub mod shards;
pub mod sources;
pub mod split;
pub mod synthetic;
pub mod tokenizer;

pub use ingest::IngestStage;
