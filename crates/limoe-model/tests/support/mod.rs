//! A tiny model spec and batches of it, shared by the model's tests.

use candle_core::Device;
use limoe_core::spec::{
    Arch, AuxSpec, BalanceScopes, Capacity, LogitScale, MIN_VOCAB_SIZE, ModelSpec, MoeSpec,
    PerModality, Pooling, Scope, Size,
};
use limoe_model::random::Stream;
use limoe_model::{Images, Texts};

/// Examples per batch.
pub const BATCH: usize = 8;

pub fn config(arch: Arch, pooling: Pooling) -> ModelSpec {
    ModelSpec {
        arch,
        size: Size::Tiny,
        width: 32,
        depth: 2,
        mlp_dim: 64,
        heads: 2,
        patch: 4,
        image_size: 8,
        channels: 3,
        text_length: 6,
        vocab_size: MIN_VOCAB_SIZE,
        embed_dim: Some(16),
        pooling: PerModality::both(pooling),
        moe: MoeSpec {
            experts: 4,
            top_k: 2,
            every: Some(2),
            last: None,
            capacity: Capacity {
                train: 1.0,
                eval: Some(1.0),
            },
            bpr: true,
            noise: 1.0,
            group_size: None,
        },
        aux: AuxSpec {
            local_entropy: PerModality {
                image: 0.01,
                text: 0.02,
            },
            global_entropy: PerModality {
                image: 0.01,
                text: 0.02,
            },
            global_experts: PerModality::both(2.0),
            importance: 0.01,
            load: 0.01,
            z_loss: 0.001,
            scope: BalanceScopes {
                importance: Scope::Joint,
                load: Scope::PerModality,
            },
        },
        logit_scale: LogitScale::default(),
        classifier: None,
    }
}

/// A batch of distinct random images and captions; caption i has 2 + i % 4 real tokens.
pub fn batch(config: &ModelSpec, seed: u64) -> (Images, Texts) {
    let mut stream = Stream::new(seed);
    let values = (0..BATCH * config.patches() * config.patch_dim())
        .map(|_| stream.normal() as f32)
        .collect();
    let len = config.text_length;
    let mask = text_mask(config, 0..BATCH);
    let ids = (0..BATCH * len)
        .map(|i| {
            if mask[i] {
                (stream.uniform() * config.vocab_size as f64) as u32
            } else {
                0
            }
        })
        .collect();
    let device = Device::Cpu;
    let images =
        Images::new(values, BATCH, config.patches(), config.patch_dim(), &device).expect("images");
    let texts = Texts::new(ids, &mask, BATCH, len, config.vocab_size, &device).expect("texts");
    (images, texts)
}

/// The padding mask of captions `rows` of [`batch`]: caption i has 2 + i % 4 real tokens.
pub fn text_mask(config: &ModelSpec, rows: std::ops::Range<usize>) -> Vec<bool> {
    let len = config.text_length;
    (rows.start * len..rows.end * len)
        .map(|i| i % len < 2 + (i / len) % 4)
        .collect()
}

/// Examples `rows` of a batch.
pub fn examples(
    config: &ModelSpec,
    (images, texts): &(Images, Texts),
    rows: std::ops::Range<usize>,
) -> (Images, Texts) {
    let n = rows.len();
    let images = Images {
        patches: images.patches.narrow(0, rows.start, n).expect("narrow"),
    };
    let ids = texts.tokens.narrow(0, rows.start, n).expect("narrow");
    let ids = ids.flatten_all().and_then(|t| t.to_vec1()).expect("ids");
    let mask = text_mask(config, rows);
    let texts = Texts::new(
        ids,
        &mask,
        n,
        config.text_length,
        config.vocab_size,
        &Device::Cpu,
    )
    .expect("texts");
    (images, texts)
}
