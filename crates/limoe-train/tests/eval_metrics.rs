//! Evaluation metrics on constructed cases with hand-computable answers.

use limoe_core::logs::EvalRow;
use limoe_core::random::SplitMix64;
use limoe_core::spec::{Monitor, ZeroShot};
use limoe_train::embed::SplitEmbeddings;
use limoe_train::eval::Matrix;
use limoe_train::eval::cholesky::cholesky_solve;
use limoe_train::eval::few_shot::{L2Choice, ProbeConfig, few_shot_probe, sample_shots, select_l2};
use limoe_train::eval::retrieval::{Recall, retrieval, retrieval_from_scores};
use limoe_train::eval::ridge::RidgeProbe;
use limoe_train::eval::zero_shot::{
    class_weights, prompts, zero_shot_accuracy, zero_shot_from_scores,
};
use limoe_train::evaluate::retrieval_rows;

/// Deterministic Gaussian draws for synthetic features (SplitMix64 + Box-Muller).
struct Gauss(SplitMix64);

impl Gauss {
    fn new(seed: u64) -> Gauss {
        Gauss(SplitMix64::new(seed))
    }

    fn uniform(&mut self) -> f64 {
        self.0.next_f64()
    }

    fn normal(&mut self) -> f32 {
        let (u1, u2) = (1.0 - self.uniform(), self.uniform());
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    fn vector(&mut self, dim: usize, scale: f32) -> Vec<f32> {
        (0..dim).map(|_| scale * self.normal()).collect()
    }
}

/// `per_class` rows per class: `signal * mean_c + noise * N(0, I)`, labels `0, 1, ..` in turn.
fn blobs(
    means: &[Vec<f32>],
    per_class: usize,
    signal: f32,
    noise: f32,
    g: &mut Gauss,
) -> (Vec<f32>, Vec<usize>) {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for _ in 0..per_class {
        for (c, mean) in means.iter().enumerate() {
            x.extend(mean.iter().map(|m| signal * m + noise * g.normal()));
            y.push(c);
        }
    }
    (x, y)
}

fn m(data: &[f32], cols: usize) -> Matrix<'_> {
    Matrix::new(data, cols).unwrap()
}

fn err<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
    format!("{:#}", r.unwrap_err())
}

#[test]
fn matrix_rejects_bad_shapes_and_values() {
    assert!(err(Matrix::new(&[1.0; 5], 2)).contains("do not divide"));
    assert!(err(Matrix::new(&[1.0; 4], 0)).contains("0 columns"));
    assert!(err(Matrix::new(&[1.0, 2.0, f32::NAN, 4.0], 2)).contains("row 1, column 0"));
}

#[test]
fn prompts_are_class_major_with_every_placeholder_filled() {
    let p = prompts(&["cat", "dog"], &["a photo of a {}.", "{} or {}?"]).unwrap();
    assert_eq!(
        p,
        [
            "a photo of a cat.",
            "cat or cat?",
            "a photo of a dog.",
            "dog or dog?"
        ]
    );
    assert!(err(prompts(&["cat"], &["a photo"])).contains("\"a photo\""));
    assert!(prompts::<&str, &str>(&[], &["{}"]).is_err());
    assert!(prompts::<&str, &str>(&["cat"], &[]).is_err());
}

#[test]
fn class_weights_average_unit_prompts_and_renormalise() {
    // Class 0: [2, 0] and [0, 3] -> units [1, 0], [0, 1] -> mean [.5, .5] -> [1/sqrt2, 1/sqrt2].
    // Class 1: [0, -1] and [0, -5] -> [0, -1].
    let e = [2.0, 0.0, 0.0, 3.0, 0.0, -1.0, 0.0, -5.0];
    let w = class_weights(m(&e, 2), 2).unwrap();
    let h = std::f32::consts::FRAC_1_SQRT_2;
    let expected = [h, h, 0.0, -1.0];
    assert!(
        w.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-6),
        "{w:?}"
    );
    assert!(err(class_weights(m(&e, 2), 3)).contains("multiple of 3 classes"));
    let opposite = [1.0, 0.0, -1.0, 0.0];
    assert!(err(class_weights(m(&opposite, 2), 1)).contains("class 0"));
}

#[test]
fn zero_shot_on_orthogonal_classes_with_one_wrong_image() {
    // Four orthogonal classes; class 3 has no images. Images 0 and 1 sit near their class;
    // image 2 sits near class 0 but is labelled 2.
    let classes = [
        1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0,
    ];
    let images = [0.9, 0.1, 0.0, 0.0, 0.1, 0.9, 0.0, 0.0, 0.8, 0.0, 0.3, 0.1];
    let z = zero_shot_accuracy(m(&images, 4), m(&classes, 4), &[0, 1, 2]).unwrap();
    assert!((z.top1 - 2.0 / 3.0).abs() < 1e-12);
    // Fewer than 5 classes: top-5 is top-4 and always right.
    assert_eq!((z.top5_k, z.top5, z.images), (4, 1.0, 3));
    assert_eq!(z.per_class_top1, [Some(1.0), Some(1.0), Some(0.0), None]);
    assert!((z.mean_per_class_top1() - 2.0 / 3.0).abs() < 1e-12);
}

#[test]
fn zero_shot_top5_and_pessimistic_ties_from_scores() {
    // 6 classes; the true class ranks 1, 5 and 6.
    let scores = [
        9.0, 1.0, 2.0, 3.0, 4.0, 5.0, // label 0: rank 1
        5.0, 4.0, 3.0, 2.0, 1.0, 0.0, // label 4: rank 5
        5.0, 4.0, 3.0, 2.0, 1.0, 0.0, // label 5: rank 6
    ];
    let z = zero_shot_from_scores(m(&scores, 6), &[0, 4, 5]).unwrap();
    assert_eq!((z.top5_k, z.top1, z.top5), (5, 1.0 / 3.0, 2.0 / 3.0));
    // All scores tie: no credit at top-1, rank 3 of 3 at "top-5".
    let z = zero_shot_from_scores(m(&[0.5; 3], 3), &[1]).unwrap();
    assert_eq!((z.top1, z.top5), (0.0, 1.0));
}

#[test]
fn zero_shot_rejects_bad_input() {
    let classes = [1.0, 0.0, 0.0, 1.0];
    assert!(
        err(zero_shot_accuracy(m(&[1.0, 0.0], 2), m(&classes, 2), &[7]))
            .contains("label 7 of example 0")
    );
    assert!(err(zero_shot_accuracy(m(&[], 2), m(&classes, 2), &[])).contains("zero images"));
    assert!(
        err(zero_shot_accuracy(
            m(&[1.0, 0.0], 2),
            m(&classes, 2),
            &[0, 1]
        ))
        .contains("1 images but 2 labels")
    );
    assert!(
        err(zero_shot_accuracy(
            m(&[1.0, 0.0, 0.0], 3),
            m(&classes, 2),
            &[0]
        ))
        .contains("dimension")
    );
    assert!(
        err(zero_shot_accuracy(m(&[0.0, 0.0], 2), m(&classes, 2), &[0]))
            .contains("image 0 is the zero vector")
    );
}

#[test]
fn retrieval_on_a_hand_made_score_matrix() {
    #[rustfmt::skip]
    let s = [
        9.0, 1.0, 1.0, 1.0, 1.0, 1.0, // image 0: rank 1
        5.0, 4.0, 1.0, 1.0, 1.0, 1.0, // image 1: 5 >= 4, rank 2
        1.0, 1.0, 2.0, 3.0, 3.0, 3.0, // image 2: three 3s, rank 4
        0.0, 0.0, 0.0, 0.0, 0.0, 0.0, // image 3: all tie, 3 before it, rank 4
        1.0, 1.0, 1.0, 1.0, 8.0, 1.0, // image 4: rank 1
        7.0, 7.0, 7.0, 7.0, 7.0, 6.0, // image 5: rank 6
    ];
    // Ranks as a stable descending argsort gives them: equal scores in index order.
    // Text ranks (columns): 1, 2 (7 > 4), 2 (7 > 2), 6 (five > 0), 1, 1.
    let r = retrieval_from_scores(m(&s, 6)).unwrap();
    let i2t = Recall {
        r1: 2.0 / 6.0,
        r5: 5.0 / 6.0,
        r10: 1.0,
        median_rank: 3.0,
    };
    let t2i = Recall {
        r1: 0.5,
        r5: 5.0 / 6.0,
        r10: 1.0,
        median_rank: 1.5,
    };
    assert_eq!((r.image_to_text, r.text_to_image, r.pairs), (i2t, t2i, 6));
    assert!(err(retrieval_from_scores(m(&s[..12], 6))).contains("2x6"));
}

#[test]
fn retrieval_by_cosine_and_argsort_ties() {
    // Paired orthogonal directions of different lengths: perfect retrieval, median rank 1.
    let images = [2.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 3.0];
    let texts = [1.0, 0.1, 0.0, 0.0, 5.0, 0.0, 0.1, 0.0, 1.0];
    let r = retrieval(m(&images, 3), m(&texts, 3)).unwrap();
    let perfect = Recall {
        r1: 1.0,
        r5: 1.0,
        r10: 1.0,
        median_rank: 1.0,
    };
    assert_eq!((&r.image_to_text, &r.text_to_image), (&perfect, &perfect));
    // A collapsed model (every embedding equal) ranks as a stable argsort does: in index
    // order, so match i has rank i + 1.
    let same = [1.0f32; 9];
    let r = retrieval(m(&same, 3), m(&same, 3)).unwrap();
    assert_eq!(
        (r.image_to_text.r1, r.image_to_text.median_rank),
        (1.0 / 3.0, 2.0)
    );
    assert!(err(retrieval(m(&images, 3), m(&texts[..6], 3))).contains("3 images but 2 texts"));
    assert!(err(retrieval(m(&[], 3), m(&[], 3))).contains("zero pairs"));
    // Templated captions: two classes of two pairs, each class's captions identical and its
    // images pointing the same way. open_clip's `argsort(descending)` puts the first of
    // each tied class first, so half of the matches rank 1 and the other half rank 2.
    let images = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0];
    let texts = images;
    let r = retrieval(m(&images, 2), m(&texts, 2)).unwrap();
    let half = Recall {
        r1: 0.5,
        r5: 1.0,
        r10: 1.0,
        median_rank: 1.5,
    };
    assert_eq!((&r.image_to_text, &r.text_to_image), (&half, &half));
}

#[test]
fn cholesky_solves_known_systems() {
    // [[4, 2], [2, 3]] x = [2, 1] -> x = [0.5, 0].
    let x = cholesky_solve(&[4.0, 2.0, 2.0, 3.0], 2, &[2.0, 1.0]).unwrap();
    assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12, "{x:?}");
    // L = [[2,0,0],[6,1,0],[-8,5,3]]; two right-hand sides with solutions [1,2,3] and [0,0,1].
    let a = [4.0, 12.0, -16.0, 12.0, 37.0, -43.0, -16.0, -43.0, 98.0];
    let b = [-20.0, -16.0, -43.0, -43.0, 192.0, 98.0];
    let x = cholesky_solve(&a, 3, &b).unwrap();
    let expected = [1.0, 0.0, 2.0, 0.0, 3.0, 1.0];
    assert!(
        x.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-9),
        "{x:?}"
    );
    assert!(err(cholesky_solve(&[1.0, 2.0, 2.0, 1.0], 2, &[1.0, 1.0])).contains("pivot 1"));
    assert!(cholesky_solve(&a, 2, &b).is_err());
    assert!(cholesky_solve(&a, 3, &b[..5]).is_err());
}

#[test]
fn shot_sampling_is_seeded_nested_and_checked() {
    let labels: Vec<usize> = (0..30).map(|i| i % 3).collect();
    let five = sample_shots(&labels, 3, 5, 7).unwrap();
    assert_eq!(five, sample_shots(&labels, 3, 5, 7).unwrap());
    assert_ne!(five, sample_shots(&labels, 3, 5, 8).unwrap());
    for (c, group) in five.chunks(5).enumerate() {
        assert!(group.iter().all(|&i| labels[i] == c));
    }
    let two = sample_shots(&labels, 3, 2, 7).unwrap();
    assert_eq!(two, [&five[0..2], &five[5..7], &five[10..12]].concat());
    assert!(err(sample_shots(&labels, 4, 1, 0)).contains("class 3 has 0 examples"));
    assert!(err(sample_shots(&labels, 3, 11, 0)).contains("fewer than 11"));
}

#[test]
fn probe_separates_separable_features_at_every_shot_count() {
    let mut g = Gauss::new(1);
    let means: Vec<Vec<f32>> = (0..4).map(|_| g.vector(16, 1.0)).collect();
    let (pool, pool_y) = blobs(&means, 30, 3.0, 0.05, &mut g);
    let (test, test_y) = blobs(&means, 20, 3.0, 0.05, &mut g);
    let config = ProbeConfig::default();
    let results = few_shot_probe(m(&pool, 16), &pool_y, m(&test, 16), &test_y, 4, &config).unwrap();
    assert_eq!(
        results.iter().map(|r| r.shots).collect::<Vec<_>>(),
        [1, 5, 10, 25]
    );
    assert!(results.iter().all(|r| r.accuracy == 1.0), "{results:?}");
    assert_eq!(results[0].l2_choice, L2Choice::Borrowed { shots: 5 });
    assert_eq!(results[0].l2, results[1].l2);
    assert!(
        results[1..]
            .iter()
            .all(|r| r.l2_choice == L2Choice::HeldOut)
    );
    // Deterministic.
    assert_eq!(
        results,
        few_shot_probe(m(&pool, 16), &pool_y, m(&test, 16), &test_y, 4, &config).unwrap()
    );
    // One-shot only: nothing to select on, the fallback.
    let one = ProbeConfig {
        shots: vec![1],
        ..ProbeConfig::default()
    };
    let r = few_shot_probe(m(&pool, 16), &pool_y, m(&test, 16), &test_y, 4, &one).unwrap();
    assert_eq!(
        (r[0].l2, r[0].l2_choice, r[0].accuracy),
        (1.0, L2Choice::Fallback, 1.0)
    );
}

#[test]
fn probe_on_random_labels_is_near_chance() {
    let mut g = Gauss::new(2);
    let pool = g.vector(200 * 8, 1.0);
    let pool_y: Vec<usize> = (0..200).map(|i| i % 4).collect();
    let test = g.vector(2000 * 8, 1.0);
    let test_y: Vec<usize> = (0..2000).map(|i| i % 4).collect();
    let results = few_shot_probe(
        m(&pool, 8),
        &pool_y,
        m(&test, 8),
        &test_y,
        4,
        &ProbeConfig::default(),
    )
    .unwrap();
    for r in results {
        assert!((0.18..0.32).contains(&r.accuracy), "{r:?}");
    }
}

#[test]
fn l2_selection_prefers_small_strengths_on_clean_data_and_larger_on_noisy() {
    let grid: Vec<f64> = (-10..20).map(|e| 2f64.powi(e)).collect();
    let mut g = Gauss::new(3);
    let means: Vec<Vec<f32>> = (0..3).map(|_| g.vector(32, 1.0)).collect();
    let (fit, fit_y) = blobs(&means, 5, 1.0, 0.01, &mut g);
    let (held, held_y) = blobs(&means, 20, 1.0, 0.01, &mut g);
    let clean = select_l2(m(&fit, 32), &fit_y, m(&held, 32), &held_y, 3, &grid).unwrap();
    let (fit, fit_y) = blobs(&means, 5, 0.3, 1.0, &mut g);
    let (held, held_y) = blobs(&means, 20, 0.3, 1.0, &mut g);
    let noisy = select_l2(m(&fit, 32), &fit_y, m(&held, 32), &held_y, 3, &grid).unwrap();
    assert!(
        clean <= 1.0 && noisy > clean,
        "clean {clean}, noisy {noisy}"
    );
    assert_eq!(
        noisy,
        select_l2(m(&fit, 32), &fit_y, m(&held, 32), &held_y, 3, &grid).unwrap()
    );
    assert!(
        err(select_l2(
            m(&fit, 32),
            &fit_y,
            m(&held, 32),
            &held_y,
            3,
            &[]
        ))
        .contains("empty")
    );
}

#[test]
fn probe_rejects_bad_input() {
    let x = [0.0, 1.0, 1.0, 0.0];
    assert!(err(RidgeProbe::fit(m(&x, 2), &[0], 2, 1.0)).contains("2 examples but 1 labels"));
    assert!(err(RidgeProbe::fit(m(&x, 2), &[0, 2], 2, 1.0)).contains("label 2 of example 1"));
    assert!(err(RidgeProbe::fit(m(&x, 2), &[0, 1], 2, 0.0)).contains("positive"));
    let probe = RidgeProbe::fit(m(&x, 2), &[0, 1], 2, 1.0).unwrap();
    assert_eq!(probe.accuracy(m(&x, 2), &[0, 1]).unwrap(), 1.0);
    assert!(err(probe.accuracy(m(&[1.0, 2.0, 3.0], 3), &[0])).contains("dimension 2"));
    let config = ProbeConfig::default();
    let pool = vec![0.0f32; 50 * 2];
    let pool_y: Vec<usize> = (0..50).map(|i| i % 2).collect();
    assert!(
        err(few_shot_probe(
            m(&pool, 2),
            &pool_y[..49],
            m(&x, 2),
            &[0, 1],
            2,
            &config
        ))
        .contains("50 pool examples but 49")
    );
    assert!(
        err(few_shot_probe(
            m(&pool, 2),
            &pool_y,
            m(&x[..3], 1),
            &[0, 1, 0],
            2,
            &config
        ))
        .contains("dimension")
    );
    let bad = ProbeConfig {
        l2_grid: vec![1.0, -1.0],
        ..ProbeConfig::default()
    };
    assert!(
        err(few_shot_probe(
            m(&pool, 2),
            &pool_y,
            m(&x, 2),
            &[0, 1],
            2,
            &bad
        ))
        .contains("-1")
    );
}

#[test]
fn retrieval_rows_are_named_as_validation_expects_of_the_periodic_evaluation() {
    let unit = vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8];
    let emb = SplitEmbeddings {
        dim: 2,
        image: unit.clone(),
        text: unit,
        keys: ["a", "b", "c"].map(String::from).to_vec(),
        labels: vec![None; 3],
        label_names: vec![None; 3],
        ..SplitEmbeddings::default()
    };
    let (rows, task) = retrieval_rows(&emb, "pairs", 0).unwrap().unwrap();
    let written: Vec<String> = rows.iter().map(EvalRow::key).collect();
    assert_eq!(task.metrics["image_retrieval_recall@1"], 1.0);
    let monitor = Monitor {
        zero_shot: ZeroShot {
            datasets: Vec::new(),
            ..ZeroShot::default()
        },
        ..Monitor::default()
    };
    assert_eq!(written, monitor.metric_keys(false));
}
