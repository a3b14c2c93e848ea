//! Expert parallelism on a real two-rank job: this test binary starts itself under
//! `mpirun --oversubscribe -np 2`. Each rank checks the differentiable all-to-all against
//! finite differences, and a model whose 4 experts the two ranks share (2 each) against the
//! same model whole: the same embeddings, and the same gradients of every parameter.

#![cfg(feature = "mpi")]

#[path = "../../limoe-dist/tests/support/ranks.rs"]
mod ranks;
mod support;

use std::sync::Arc;

use candle_core::{Device, Tensor, Var};
use limoe_core::spec::{Arch, Pooling};
use limoe_dist::{Communicator, World};
use limoe_model::moe::experts::is_expert_param;
use limoe_model::moe::parallel::exchange;
use limoe_model::moe::{ExpertGroup, RouteMode};
use limoe_model::random::Stream;
use limoe_model::{Images, Model, Params, Texts};
use support::{BATCH, batch, config, examples};

const RANKS: usize = 2;

#[test]
fn two_ranks_sharing_experts_compute_what_one_process_does() {
    ranks::run_ranks(RANKS, "rank_checks_expert_parallelism");
}

/// One rank's side; ignored unless the parent test started it.
#[test]
#[ignore = "runs as a rank of `two_ranks_sharing_experts_compute_what_one_process_does`"]
fn rank_checks_expert_parallelism() {
    if !ranks::is_rank_of("rank_checks_expert_parallelism") {
        return;
    }
    let world = World::init().expect("joining the MPI job");
    let comm: Arc<dyn Communicator> = Arc::from(world.comm().split(0));
    assert_eq!(comm.size(), RANKS);
    all_to_all_gradient_matches_finite_differences(&comm);
    shared_experts_match_whole_experts(&comm);
    ranks::report_ok(comm.rank());
}

/// The sum over every rank of `weights * exchange(x)^2 / 2`: a loss that depends on every
/// rank's input through the all-to-all.
fn global_loss(comm: &Arc<dyn Communicator>, x: &Tensor, weights: &Tensor) -> (Tensor, f64) {
    let y = exchange(comm, x).unwrap();
    let local = (y.sqr().unwrap() * weights).unwrap().sum_all().unwrap();
    let mut total = [f64::from(local.to_scalar::<f32>().unwrap())];
    comm.all_reduce_sum_f64(&mut total);
    (local.affine(0.5, 0.0).unwrap(), total[0] / 2.0)
}

/// The gradient of the global loss with respect to this rank's input, which the backward
/// all-to-all brings back from the ranks it sent to, matches central differences (exact for
/// a quadratic but for f32 rounding) of every input value of every rank.
fn all_to_all_gradient_matches_finite_differences(comm: &Arc<dyn Communicator>) {
    let rank = comm.rank();
    let mut stream = Stream::new(7 + rank as u64);
    let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| stream.normal() as f32).collect() };
    let shape = (RANKS * 3, 2);
    let values = draw(RANKS * 6);
    let weights = Tensor::from_vec(draw(RANKS * 6), shape, &Device::Cpu).unwrap();
    let x = Var::from_vec(values.clone(), shape, &Device::Cpu).unwrap();
    let (local, _) = global_loss(comm, x.as_tensor(), &weights);
    let grads = local.backward().unwrap();
    let analytic: Vec<f32> = grads
        .get(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let h = 0.25;
    for owner in 0..RANKS {
        for i in 0..values.len() {
            let at = |delta: f32| {
                let mut moved = values.clone();
                if rank == owner {
                    moved[i] += delta;
                }
                let x = Tensor::from_vec(moved, shape, &Device::Cpu).unwrap();
                global_loss(comm, &x, &weights).1
            };
            let numeric = (at(h) - at(-h)) / (2.0 * f64::from(h));
            if rank == owner {
                let off = (numeric - f64::from(analytic[i])).abs();
                assert!(
                    off < 1e-4 * (1.0 + numeric.abs()),
                    "rank {rank} value {i}: all-to-all gradient {} against {numeric}",
                    analytic[i]
                );
            }
        }
    }
}

/// Each rank embeds its half of a batch with 2 of the 4 experts; one process embeds the
/// whole batch with all 4 (here, on every rank). Routing groups of 2 examples make each
/// half route as it does in the whole batch. The embeddings agree, and so does the gradient
/// of a loss over both halves: dense gradients summed over the ranks, each expert share's
/// gradient as it is (it already sums over the tokens both ranks sent it).
fn shared_experts_match_whole_experts(comm: &Arc<dyn Communicator>) {
    let mut spec = config(Arch::Limoe, Pooling::Mean);
    spec.moe.group_size = Some(2 * (spec.patches() + spec.text_length));
    let whole_params = Params::new(3);
    let whole = Model::new(&spec, &whole_params, &Device::Cpu).unwrap();
    let group = ExpertGroup::new(Arc::clone(comm));
    let shared_params = Params::new(3);
    let shared = Model::with_experts_of(&spec, &shared_params, &Device::Cpu, Some(&group)).unwrap();

    let all = batch(&spec, 5);
    let half = BATCH / RANKS;
    let rows = comm.rank() * half..(comm.rank() + 1) * half;
    let mine = examples(&spec, &all, rows.clone());
    let mut stream = Stream::new(11);
    let dim = spec.embed_dim();
    let mut draw = || -> Tensor {
        let values: Vec<f32> = (0..BATCH * dim).map(|_| stream.normal() as f32).collect();
        Tensor::from_vec(values, (BATCH, dim), &Device::Cpu).unwrap()
    };
    let (image_weights, text_weights) = (draw(), draw());
    let loss = |model: &Model, (images, texts): &(Images, Texts), first: usize, n: usize| {
        let mode = RouteMode::Train {
            noise_seed: 9,
            first_example: first as u64,
        };
        let encoded = model.encode(Some(images), Some(texts), mode).unwrap();
        let (image, text) = (encoded.image.unwrap(), encoded.text.unwrap());
        let score = |embedded: &Tensor, weights: &Tensor| {
            (embedded * weights.narrow(0, first, n).unwrap())
                .unwrap()
                .sum_all()
                .unwrap()
        };
        let loss = (score(&image, &image_weights) + score(&text, &text_weights)).unwrap();
        (loss, image)
    };
    let (whole_loss, whole_image) = loss(&whole, &all, 0, BATCH);
    let (shared_loss, shared_image) = loss(&shared, &mine, rows.start, half);
    let expected = whole_image.narrow(0, rows.start, half).unwrap();
    assert_close("image embeddings", &shared_image, &expected, 1e-5);

    let whole_grads = whole_loss.backward().unwrap();
    let shared_grads = shared_loss.backward().unwrap();
    let vars = shared_params.vars();
    assert_eq!(vars.len(), whole_params.vars().len());
    for ((name, var), (whole_name, whole_var)) in vars.iter().zip(whole_params.vars()) {
        assert_eq!(name, &whole_name);
        let (grad, expected) = match (
            shared_grads.get(var.as_tensor()),
            whole_grads.get(whole_var.as_tensor()),
        ) {
            (Some(grad), Some(expected)) => (grad, expected),
            // The logit scale acts only in the contrastive loss, which this one is not.
            (None, None) => continue,
            (grad, expected) => panic!("{name}: gradient {grad:?}, one process's {expected:?}"),
        };
        let mut grad: Vec<f32> = grad.flatten_all().unwrap().to_vec1().unwrap();
        if !is_expert_param(name) {
            comm.all_reduce_sum(&mut grad);
        }
        let grad = Tensor::from_vec(grad, var.dims(), &Device::Cpu).unwrap();
        let expected = group.share(name, expected).unwrap();
        assert_close(name, &grad, &expected, 1e-4);
    }
}

/// `a` and `b` agree within `tolerance` times (1 + the largest magnitude of `b`).
fn assert_close(what: &str, a: &Tensor, b: &Tensor, tolerance: f32) {
    assert_eq!(a.dims(), b.dims(), "{what}");
    let (a, b): (Vec<f32>, Vec<f32>) = (
        a.flatten_all().unwrap().to_vec1().unwrap(),
        b.flatten_all().unwrap().to_vec1().unwrap(),
    );
    let scale = 1.0 + b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(
        worst <= tolerance * scale,
        "{what}: differs by {worst} (scale {scale})"
    );
}
