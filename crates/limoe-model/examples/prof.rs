//! Temporary profiling loop (not committed).
use candle_core::Device;
use limoe_model::config::{Arch, ModelConfig, Pooling};
use limoe_model::moe::{AuxWeights, LossTerms, MoeConfig, RouteMode};
use limoe_model::random::Stream;
use limoe_model::{Images, Model, Params, Texts};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let steps: usize = args.get(1).map_or(20, |s| s.parse().unwrap());
    let dense = args.get(2).is_some_and(|s| s == "dense");
    let w = |l, g| LossTerms {
        local_entropy: l,
        global_entropy: g,
        importance: 0.0,
        load: 0.0,
        z_loss: 0.0,
    };
    let config = ModelConfig {
        arch: if dense { Arch::Dense } else { Arch::Limoe },
        width: 128,
        depth: 4,
        mlp_dim: 512,
        heads: 4,
        patch: 8,
        image_size: 48,
        channels: 3,
        text_length: 28,
        vocab_size: 4096,
        embed_dim: 128,
        image_pooling: Pooling::Mean,
        text_pooling: Pooling::Mean,
        moe_blocks: vec![1, 3],
        moe: MoeConfig {
            width: 128,
            mlp_dim: 512,
            experts: 4,
            top_k: 1,
            capacity_train: 1.25,
            capacity_eval: 1.0,
            bpr: true,
            noise: 1.0,
            group_size: None,
            global_experts: [2.0, 2.0],
        },
        aux: AuxWeights {
            image: w(0.01, 0.01),
            text: w(0.01, 0.01),
        },
        logit_scale_init: 1.0 / 0.07,
        logit_scale_max: 100.0,
    };
    let dev = Device::Cpu;
    let model = Model::new(&config, &Params::new(0), &dev).unwrap();
    let b = 32;
    let mut s = Stream::new(0);
    let vals = (0..b * config.patches() * config.patch_dim())
        .map(|_| (2.0 * s.uniform() - 1.0) as f32)
        .collect();
    let images = Images::new(vals, b, config.patches(), config.patch_dim(), &dev).unwrap();
    let len = 28;
    let ids = (0..b * len)
        .map(|_| (s.uniform() * 4096.0) as u32)
        .collect();
    let mask: Vec<bool> = (0..b * len)
        .map(|i| i % len < len - (i / len) % len.div_ceil(2))
        .collect();
    let texts = Texts::new(ids, &mask, b, len, 4096, &dev).unwrap();
    let mut times = vec![];
    for i in 0..steps {
        let t = Instant::now();
        let out = model
            .forward(
                &images,
                &texts,
                RouteMode::Train {
                    noise_seed: i as u64,
                },
            )
            .unwrap();
        let f = t.elapsed().as_secs_f64();
        drop(out.loss.backward().unwrap());
        times.push((f * 1e3, t.elapsed().as_secs_f64() * 1e3));
    }
    let mut st: Vec<f64> = times.iter().map(|t| t.1).collect();
    st.sort_by(f64::total_cmp);
    let mut ft: Vec<f64> = times.iter().map(|t| t.0).collect();
    ft.sort_by(f64::total_cmp);
    println!(
        "fwd {:.1} step {:.1} (min {:.1})",
        ft[ft.len() / 2],
        st[st.len() / 2],
        st[0]
    );
}
