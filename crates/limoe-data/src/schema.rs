//! The canonical shard schema.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};

/// Column names of a canonical shard.
pub mod column {
    /// Unique key of a pair (utf8).
    pub const KEY: &str = "key";
    /// PNG or JPEG bytes (binary).
    pub const IMAGE: &str = "image";
    /// Caption (utf8).
    pub const CAPTION: &str = "caption";
    /// Class label (int32, nullable).
    pub const LABEL: &str = "label";
    /// Class name (utf8, nullable).
    pub const LABEL_NAME: &str = "label_name";
    /// Which source the pair came from (utf8).
    pub const SOURCE: &str = "source";
}

/// `key`, `image`, `caption`, `label`, `label_name`, `source`.
pub fn shard_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new(column::KEY, DataType::Utf8, false),
        Field::new(column::IMAGE, DataType::Binary, false),
        Field::new(column::CAPTION, DataType::Utf8, false),
        Field::new(column::LABEL, DataType::Int32, true),
        Field::new(column::LABEL_NAME, DataType::Utf8, true),
        Field::new(column::SOURCE, DataType::Utf8, false),
    ]))
}
