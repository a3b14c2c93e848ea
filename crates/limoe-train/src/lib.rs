//! Training loop, checkpoints and evaluation stages.

pub mod checkpoint;
pub mod clip;
pub mod eval;
pub mod logs;
pub mod optim;
pub mod schedule;
