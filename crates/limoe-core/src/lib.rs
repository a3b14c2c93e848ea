//! limoe-core: experiment specs (YAML -> typed, validated, overridable), the [`Stage`]
//! trait and [`Registry`], and the [`runner`] that executes a spec's stage graph with a
//! content-addressed cache of outputs. Knows no ML.

pub mod command;
pub mod content_hashes;
pub mod files;
pub mod interrupt;
pub mod kinds;
mod load;
pub mod logs;
pub mod pipeline;
pub mod random;
pub mod records;
pub mod runner;
pub mod shell;
pub mod spec;
mod stage;
pub mod sweep;

pub use load::{LoadedSpec, load_spec};
pub use spec::Spec;
pub use stage::{Artifact, Progress, Registry, Stage, StageContext};

/// The limoe version; part of every cache key.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
