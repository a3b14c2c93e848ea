//! The LIMoE model on candle: shared MoE encoder, routing, auxiliary losses, heads.

pub mod moe;
