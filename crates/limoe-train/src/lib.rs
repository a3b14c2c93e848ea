//! Training loop, checkpoints and evaluation stages.
//!
//! The [`stages::TrainStage`] streams an ingest output through the model ([`trainer`]) with
//! AdamW ([`optim`]), the learning-rate [`schedule`], gradient clipping ([`clip`]), run
//! [`logs`] and [`checkpoint`]s it resumes from exactly, on one process or as
//! one rank of several ([`data_parallel`], with the experts shared by a group of ranks in
//! [`expert_parallel`]). One evaluation [`suite`] (metrics in
//! [`eval`], over the [`labelled`] sets of the training data and the held-out benchmarks, as
//! log rows by [`evaluate`] and as [`clip_benchmark`] files) serves both the periodic
//! evaluation and the [`stages::EvalStage`]. [`budget`] says what a spec costs before anything
//! is allocated; [`infer`] uses a trained model on a person's own images and captions.

pub mod budget;
pub mod capacity;
pub mod checkpoint;
pub mod classes;
pub mod clip;
pub mod clip_benchmark;
pub mod data_parallel;
pub mod embed;
pub mod eval;
pub mod evaluate;
pub mod expert_parallel;
pub mod finetune;
pub mod infer;
mod inputs;
pub mod labelled;
pub mod logs;
pub mod model_build;
pub mod optim;
pub mod placement;
mod probe_pool;
mod routing_log;
pub mod schedule;
pub mod stages;
pub mod suite;
pub mod trainer;
