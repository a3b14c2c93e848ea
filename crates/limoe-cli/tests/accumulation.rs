//! Gradient accumulation contrasts the whole batch: 64 pairs in 4 micro-batches train as 64
//! pairs in one pass (within the tolerance of summing in another order), LIMoE routing and
//! all, as open_clip's `accum_freq` does for the contrastive loss.

mod support;

use limoe_core::logs::MetricsRow;
use limoe_train::logs::read_log;
use support::equivalence::{
    STEPS, assert_ok, assert_same_losses, assert_same_weights, run_args, train_output,
};
use support::limoe;

#[test]
fn four_micro_batches_train_as_one_batch() {
    let args = run_args("limoe");
    let one = tempfile::tempdir().unwrap();
    assert_ok(&limoe(&args, one.path()), "one pass per step");
    let mut accumulated = args.clone();
    accumulated.extend(["--set".to_owned(), "train.accumulation=4".to_owned()]);
    let four = tempfile::tempdir().unwrap();
    assert_ok(
        &limoe(&accumulated, four.path()),
        "four micro-batches per step",
    );

    let (one, four) = (train_output(one.path()), train_output(four.path()));
    let (a, b) = (
        read_log::<MetricsRow>(&one).unwrap(),
        read_log::<MetricsRow>(&four).unwrap(),
    );
    assert_eq!((a.len(), b.len()), (STEPS as usize, STEPS as usize));
    assert_same_losses(&a, &b);
    assert_same_weights(&one, &four, STEPS);
}
