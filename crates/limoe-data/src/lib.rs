//! Parquet shards of image-text pairs: schema, writer, streaming loader, importers.
