//! The run logs (schemas in [`limoe_core::logs`]): buffered writers that flush one Parquet
//! part per flush, truncation for resume, and a reader back into row structs; and the same
//! rows as TensorBoard events while training runs ([`LiveLog`]).
//!
//! Layout: `<out_dir>/<log>/part-<first step, 12 digits>.parquet`, zstd-compressed, each
//! written under a hidden temporary name and renamed; readers load the parts
//! [`limoe_core::logs::part_files`] lists.

mod batch;
mod live;
mod reader;
mod run;
mod writer;

pub use batch::{arrow_schema, arrow_type};
pub use live::{LiveLog, TENSORBOARD, tensorboard_dir};
pub use reader::{read_log, read_part};
pub use run::RunLogs;
pub use writer::{LogWriter, truncate_after};
