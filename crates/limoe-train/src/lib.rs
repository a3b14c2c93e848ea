//! Training loop, checkpoints and evaluation stages.
//!
//! The [`stages::TrainStage`] streams an ingest output through the model ([`trainer`]) with
//! AdamW ([`optim`]), the learning-rate [`schedule`], gradient clipping ([`clip`]), run
//! [`logs`] and [`checkpoint`]s it resumes from exactly. The [`stages::EvalStage`] scores the
//! last checkpoint with the metrics of [`eval`] ([`evaluate`]). [`budget`] says what a spec
//! costs before anything is allocated.

pub mod budget;
pub mod checkpoint;
pub mod clip;
pub mod embed;
pub mod eval;
pub mod evaluate;
mod inputs;
pub mod logs;
mod model_config;
pub mod optim;
mod routing_log;
pub mod schedule;
pub mod stages;
pub mod trainer;

pub use model_config::{device_kind, model_config};
