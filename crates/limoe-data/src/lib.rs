//! Parquet shards of image-text pairs: schema, writer, streaming loader, importers.
//!
//! Built so far: the synthetic scene generator ([`synthetic`]).

pub mod synthetic;
