//! TensorBoard event files, as TensorBoard, W&B and Aim read them: the TFRecord framing
//! ([`record`]), the `Event` and `Summary` messages of TensorBoard's `event.proto` and
//! `summary.proto` that limoe writes ([`proto`]), a writer of scalars, histograms and images
//! ([`EventWriter`]), a reader ([`read_events`]) and the truncation a resumed run needs
//! ([`truncate_after`]).

pub mod proto;
mod reader;
pub mod record;
mod truncate;
mod writer;

pub use reader::{event_files, read_dir, read_events};
pub use truncate::truncate_after;
pub use writer::{EventWriter, Histogram};

/// What every event file's name contains: TensorBoard reads the files whose name does.
pub const EVENT_FILE_MARK: &str = "tfevents";
