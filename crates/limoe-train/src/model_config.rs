//! The spec's `model` section as the model crate's plain configuration.

use limoe_core::spec::{self, ModelSpec};
use limoe_model::config::{Arch, ModelConfig, Pooling};
use limoe_model::device::DeviceKind;
use limoe_model::moe::{AuxWeights, LossTerms, MoeConfig};

/// The model configuration a (validated) spec describes.
pub fn model_config(model: &ModelSpec) -> ModelConfig {
    let pooling = |p: spec::Pooling| match p {
        spec::Pooling::Mean => Pooling::Mean,
        spec::Pooling::Map => Pooling::Map,
    };
    let aux = &model.aux;
    // The entropy losses have a weight per modality; the V-MoE losses one for both.
    let weights = |local_entropy, global_entropy| LossTerms {
        local_entropy,
        global_entropy,
        importance: aux.importance,
        load: aux.load,
        z_loss: aux.z_loss,
    };
    ModelConfig {
        arch: match model.arch {
            spec::Arch::Limoe => Arch::Limoe,
            spec::Arch::Dense => Arch::Dense,
            spec::Arch::TwoTower => Arch::TwoTower,
        },
        width: model.width,
        depth: model.depth,
        mlp_dim: model.mlp_dim,
        heads: model.heads,
        patch: model.patch,
        image_size: model.image_size,
        channels: model.channels,
        text_length: model.text_length,
        vocab_size: model.vocab_size,
        embed_dim: model.embed_dim.unwrap_or(model.width),
        image_pooling: pooling(model.pooling.image),
        text_pooling: pooling(model.pooling.text),
        moe_blocks: model.moe.moe_blocks(model.depth),
        moe: MoeConfig {
            width: model.width,
            mlp_dim: model.mlp_dim,
            experts: model.moe.experts,
            top_k: model.moe.top_k,
            capacity_train: model.moe.capacity.train,
            capacity_eval: model.moe.capacity.eval,
            bpr: model.moe.bpr,
            noise: model.moe.noise,
            group_size: model.moe.group_size,
            global_experts: [aux.global_experts.image, aux.global_experts.text],
        },
        aux: AuxWeights {
            image: weights(aux.local_entropy.image, aux.global_entropy.image),
            text: weights(aux.local_entropy.text, aux.global_entropy.text),
        },
        logit_scale_init: model.logit_scale.init,
    }
}

/// The device a spec asks for.
pub fn device_kind(device: spec::Device) -> DeviceKind {
    match device {
        spec::Device::Cpu => DeviceKind::Cpu,
        spec::Device::Cuda => DeviceKind::Cuda,
    }
}
