//! Training loop, checkpoints and evaluation stages.

pub mod logs;
