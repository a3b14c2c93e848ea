//! Few-shot linear probe as in vmoe/big_vision: for each shot count `k`, `k` seeded examples
//! per class from a pool, a ridge probe ([`RidgeProbe`]) with its L2 strength chosen on a
//! held-out part of those shots, refitted on all of them, scored on a test set.
//!
//! Hold-out: the last `max(1, k / 5)` of each class's `k` shots (1 of 5, 2 of 10, 5 of 25).
//! With `k = 1` nothing can be held out: the shot count borrows the L2 strength selected at the
//! smallest shot count of the same call that has a hold-out, or, when there is none, uses
//! [`ProbeConfig::fallback_l2`].

use anyhow::{Result, anyhow, bail};
use limoe_core::random::{SplitMix64, splitmix64_next};

use super::Matrix;
use super::check_labels;
use super::ridge::{Ridge, RidgeProbe};

/// Few-shot probe settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeConfig {
    /// Shot counts (examples per class) to evaluate.
    pub shots: Vec<usize>,
    /// Candidate L2 strengths, tried in order.
    pub l2_grid: Vec<f64>,
    /// The L2 strength for shot counts with no hold-out when no other shot count has one.
    pub fallback_l2: f64,
    /// Seed of the shot sampling.
    pub seed: u64,
}

impl Default for ProbeConfig {
    /// vmoe/big_vision's settings: shots 1, 5, 10, 25; L2 grid `2^-10 ..= 2^19`; fallback 1.
    fn default() -> ProbeConfig {
        ProbeConfig {
            shots: vec![1, 5, 10, 25],
            l2_grid: (-10..20).map(|e| 2f64.powi(e)).collect(),
            fallback_l2: 1.0,
            seed: 0,
        }
    }
}

/// Where a shot count's L2 strength came from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum L2Choice {
    /// Selected on this shot count's own hold-out.
    HeldOut,
    /// Too few shots to hold out: taken from the selection at this shot count.
    Borrowed {
        /// The shot count whose selection was used.
        shots: usize,
    },
    /// No shot count could hold out: [`ProbeConfig::fallback_l2`].
    Fallback,
}

/// The probe's result at one shot count.
#[derive(Clone, Debug, PartialEq)]
pub struct ShotAccuracy {
    /// Examples per class used for fitting.
    pub shots: usize,
    /// The L2 strength of the final fit.
    pub l2: f64,
    /// How `l2` was chosen.
    pub l2_choice: L2Choice,
    /// Test accuracy (true class strictly highest).
    pub accuracy: f64,
}

/// Indices into the pool of `shots` examples per class, grouped by class (class 0's first),
/// each class's in a seeded random order. Deterministic for a seed, and nested: the `k`-shot
/// sample of a class is the first `k` of its `k' > k`-shot sample. Errors when `shots` is 0, a
/// label is out of range, or a class has fewer than `shots` examples (naming it).
pub fn sample_shots(
    labels: &[usize],
    num_classes: usize,
    shots: usize,
    seed: u64,
) -> Result<Vec<usize>> {
    if shots == 0 {
        bail!("a few-shot sample needs at least 1 shot per class");
    }
    check_labels(labels, num_classes)?;
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); num_classes];
    for (i, &label) in labels.iter().enumerate() {
        by_class[label].push(i);
    }
    let mut picked = Vec::with_capacity(num_classes * shots);
    for (class, mut members) in by_class.into_iter().enumerate() {
        if members.len() < shots {
            bail!(
                "class {class} has {} examples in the pool, fewer than {shots} shots",
                members.len()
            );
        }
        let stream = splitmix64_next(seed ^ (class as u64).rotate_left(32));
        SplitMix64::new(stream).shuffle(&mut members);
        picked.extend_from_slice(&members[..shots]);
    }
    Ok(picked)
}

/// The L2 strength of `grid` whose probe, fitted on `fit`, scores best on `held_out`: highest
/// accuracy, then lowest mean squared error against the `+-1` targets, then earliest in the
/// grid. Errors on an empty grid, a non-positive strength, or bad inputs (see
/// [`RidgeProbe::fit`]).
pub fn select_l2(
    fit: Matrix,
    fit_labels: &[usize],
    held_out: Matrix,
    held_out_labels: &[usize],
    num_classes: usize,
    grid: &[f64],
) -> Result<f64> {
    let ridge = Ridge::new(fit, fit_labels, num_classes)?;
    let mut best: Option<(f64, f64, f64)> = None;
    for &l2 in grid {
        let probe = ridge.solve(l2)?;
        let accuracy = probe.accuracy(held_out, held_out_labels)?;
        let mse = probe.mse(held_out, held_out_labels)?;
        let better = match best {
            None => true,
            Some((_, a, m)) => accuracy > a || (accuracy == a && mse < m),
        };
        if better {
            best = Some((l2, accuracy, mse));
        }
    }
    best.map(|(l2, _, _)| l2)
        .ok_or_else(|| anyhow!("the L2 grid is empty"))
}

/// Few-shot probe accuracy at each of `config.shots`, in that order: shots sampled from
/// `pool` (with `pool_labels`), accuracy on `test` (with `test_labels`). Errors on bad
/// settings, mismatched dimensions or counts, labels out of range, or a class with too few
/// pool examples.
pub fn few_shot_probe(
    pool: Matrix,
    pool_labels: &[usize],
    test: Matrix,
    test_labels: &[usize],
    num_classes: usize,
    config: &ProbeConfig,
) -> Result<Vec<ShotAccuracy>> {
    check_config(config)?;
    if pool_labels.len() != pool.rows() {
        bail!(
            "{} pool examples but {} labels",
            pool.rows(),
            pool_labels.len()
        );
    }
    if pool.cols() != test.cols() {
        bail!(
            "pool embeddings have dimension {} but test embeddings have {}",
            pool.cols(),
            test.cols()
        );
    }
    let mut samples = Vec::with_capacity(config.shots.len());
    for &k in &config.shots {
        let picked = sample_shots(pool_labels, num_classes, k, config.seed)?;
        let selected = if k >= 2 {
            let held = (k / 5).max(1);
            let (mut fit, mut held_out) = (Vec::new(), Vec::new());
            for (i, &p) in picked.iter().enumerate() {
                if i % k < k - held {
                    fit.push(p);
                } else {
                    held_out.push(p);
                }
            }
            let (fx, fy) = gather(pool, pool_labels, &fit);
            let (hx, hy) = gather(pool, pool_labels, &held_out);
            let (fx, hx) = (
                Matrix::new(&fx, pool.cols())?,
                Matrix::new(&hx, pool.cols())?,
            );
            Some(select_l2(fx, &fy, hx, &hy, num_classes, &config.l2_grid)?)
        } else {
            None
        };
        samples.push((k, picked, selected));
    }
    let borrowed = samples
        .iter()
        .filter_map(|&(k, _, l2)| l2.map(|l2| (k, l2)))
        .min_by_key(|&(k, _)| k);
    samples
        .into_iter()
        .map(|(shots, picked, selected)| {
            let (l2, l2_choice) = match (selected, borrowed) {
                (Some(l2), _) => (l2, L2Choice::HeldOut),
                (None, Some((k, l2))) => (l2, L2Choice::Borrowed { shots: k }),
                (None, None) => (config.fallback_l2, L2Choice::Fallback),
            };
            let (x, y) = gather(pool, pool_labels, &picked);
            let probe = RidgeProbe::fit(Matrix::new(&x, pool.cols())?, &y, num_classes, l2)?;
            Ok(ShotAccuracy {
                shots,
                l2,
                l2_choice,
                accuracy: probe.accuracy(test, test_labels)?,
            })
        })
        .collect()
}

fn check_config(config: &ProbeConfig) -> Result<()> {
    if config.shots.is_empty() {
        bail!("few-shot probe with no shot counts");
    }
    if config.l2_grid.is_empty() {
        bail!("few-shot probe with an empty L2 grid");
    }
    let bad = |l2: f64| !(l2 > 0.0 && l2.is_finite());
    if let Some(l2) = config
        .l2_grid
        .iter()
        .copied()
        .chain([config.fallback_l2])
        .find(|&l2| bad(l2))
    {
        bail!("L2 strengths must be positive and finite, got {l2}");
    }
    Ok(())
}

/// The rows and labels at `indices`.
fn gather(x: Matrix, labels: &[usize], indices: &[usize]) -> (Vec<f32>, Vec<usize>) {
    let rows = indices
        .iter()
        .flat_map(|&i| x.row(i).iter().copied())
        .collect();
    (rows, indices.iter().map(|&i| labels[i]).collect())
}
