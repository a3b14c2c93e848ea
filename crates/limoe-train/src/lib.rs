//! Training loop, checkpoints and evaluation stages.
