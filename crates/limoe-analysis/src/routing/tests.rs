use super::*;

/// One routing row: step, split, block, modality, expert, tokens, dropped, local and
/// global entropy.
pub(crate) type Row = (
    i64,
    &'static str,
    i32,
    &'static str,
    i32,
    i64,
    i64,
    f64,
    f64,
);

/// A routing log of two splits: train at steps 1 and 5 (blocks 1 and 3), val at step 7.
fn routing() -> DataFrame {
    let rows: [Row; 21] = [
        (1, "train", 1, "image", 0, 5, 2, 0.5, 0.6),
        (1, "train", 1, "image", 1, 5, 2, 0.5, 0.6),
        (1, "train", 1, "text", 0, 1, 0, 0.4, 0.3),
        (1, "train", 1, "text", 1, 1, 0, 0.4, 0.3),
        (5, "train", 1, "image", 0, 30, 4, 0.2, 0.9),
        (5, "train", 1, "image", 1, 0, 4, 0.2, 0.9),
        (5, "train", 1, "image", 2, 10, 4, 0.2, 0.9),
        (5, "train", 1, "text", 0, 10, 0, 0.1, 0.7),
        (5, "train", 1, "text", 1, 0, 0, 0.1, 0.7),
        (5, "train", 1, "text", 2, 90, 0, 0.1, 0.7),
        (5, "train", 3, "image", 0, 19, 0, 0.3, 0.8),
        (5, "train", 3, "image", 1, 1, 0, 0.3, 0.8),
        (5, "train", 3, "text", 0, 0, 5, 0.6, 0.5),
        (5, "train", 3, "text", 1, 20, 5, 0.6, 0.5),
        (7, "val", 1, "image", 0, 1, 0, 0.0, 0.0),
        (7, "val", 1, "image", 1, 1, 0, 0.0, 0.0),
        (7, "val", 1, "image", 2, 1, 0, 0.0, 0.0),
        (7, "val", 1, "text", 0, 3, 0, 0.0, 0.0),
        (7, "val", 1, "text", 1, 0, 0, 0.0, 0.0),
        (7, "val", 1, "text", 2, 0, 0, 0.0, 0.0),
        (3, "val", 1, "text", 2, 8, 0, 0.0, 0.0),
    ];
    routing_frame(&rows)
}

/// A routing log of `rows` (every mean gate 0.5).
pub(crate) fn routing_frame(rows: &[Row]) -> DataFrame {
    let column = |f: fn(&Row) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
    df!(
        "step" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        "split" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        "block" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        "modality" => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        "expert" => rows.iter().map(|r| r.4).collect::<Vec<_>>(),
        "tokens" => rows.iter().map(|r| r.5).collect::<Vec<_>>(),
        "dropped" => rows.iter().map(|r| r.6).collect::<Vec<_>>(),
        "mean_gate" => column(|_| 0.5),
        "local_entropy" => column(|r| r.7),
        "global_entropy" => column(|r| r.8),
    )
    .unwrap()
}

fn f64s(df: &DataFrame, name: &str) -> Vec<Option<f64>> {
    df.column(name).unwrap().f64().unwrap().iter().collect()
}

fn i64s(df: &DataFrame, name: &str) -> Vec<i64> {
    let c = df.column(name).unwrap().cast(&DataType::Int64).unwrap();
    c.i64().unwrap().iter().map(|v| v.unwrap()).collect()
}

fn strs(df: &DataFrame, name: &str) -> Vec<String> {
    let c = df.column(name).unwrap().str().unwrap().clone();
    c.iter().map(|v| v.unwrap().to_owned()).collect()
}

#[test]
fn image_share_is_image_over_all_tokens_at_the_final_step_sorted() {
    let shares = image_shares(&routing(), "train").unwrap();
    assert_eq!(i64s(&shares, "step"), [5; 5]);
    assert_eq!(i64s(&shares, "block"), [1, 1, 1, 3, 3]);
    assert_eq!(i64s(&shares, "expert"), [0, 2, 1, 0, 1]);
    assert_eq!(i64s(&shares, "image_tokens"), [30, 10, 0, 19, 1]);
    assert_eq!(i64s(&shares, "text_tokens"), [10, 90, 0, 0, 20]);
    assert_eq!(
        f64s(&shares, "image_share"),
        [Some(0.75), Some(0.1), None, Some(1.0), Some(1.0 / 21.0)]
    );
}

#[test]
fn the_final_step_is_the_split_s_own() {
    let shares = image_shares(&routing(), "val").unwrap();
    assert_eq!(i64s(&shares, "step"), [7; 3]);
    assert_eq!(i64s(&shares, "expert"), [1, 2, 0]);
    assert_eq!(
        f64s(&shares, "image_share"),
        [Some(1.0), Some(1.0), Some(0.25)]
    );
    assert_eq!(image_shares(&routing(), "test").unwrap().height(), 0);
}

#[test]
fn specialists_are_counted_per_block_with_inclusive_thresholds() {
    let shares = image_shares(&routing(), "train").unwrap();
    let counts = specialisation_counts(&shares, Thresholds::default()).unwrap();
    assert_eq!(i64s(&counts, "block"), [1, 3]);
    assert_eq!(i64s(&counts, "experts"), [3, 2]);
    assert_eq!(i64s(&counts, "image_specialists"), [0, 1]);
    assert_eq!(i64s(&counts, "text_specialists"), [1, 1]);
    assert_eq!(i64s(&counts, "mixed"), [1, 0]);
    let loose = Thresholds {
        image: 0.75,
        text: 0.0,
    };
    let counts = specialisation_counts(&shares, loose).unwrap();
    assert_eq!(i64s(&counts, "image_specialists"), [1, 1]);
    assert_eq!(i64s(&counts, "text_specialists"), [0, 0]);
    assert_eq!(i64s(&counts, "mixed"), [1, 1]);
}

#[test]
fn expert_shares_divide_by_the_modality_s_tokens_in_the_block_and_step() {
    let shares = expert_shares(&routing(), "train").unwrap();
    assert_eq!(shares.height(), 14);
    let step5 = shares
        .lazy()
        .filter(col("step").eq(lit(5)).and(col("block").eq(lit(1))))
        .collect()
        .unwrap();
    assert_eq!(
        strs(&step5, "modality"),
        ["image", "image", "image", "text", "text", "text"]
    );
    assert_eq!(i64s(&step5, "expert"), [0, 1, 2, 0, 1, 2]);
    assert_eq!(
        f64s(&step5, "share"),
        [
            Some(0.75),
            Some(0.0),
            Some(0.25),
            Some(0.1),
            Some(0.0),
            Some(0.9)
        ]
    );
}

#[test]
fn dead_experts_are_below_the_threshold_at_the_final_step() {
    let dead = dead_experts(&routing(), "train", 0.06).unwrap();
    assert_eq!(i64s(&dead, "block"), [1, 1, 3, 3]);
    assert_eq!(strs(&dead, "modality"), ["image", "text", "image", "text"]);
    assert_eq!(i64s(&dead, "expert"), [1, 1, 1, 0]);
    assert_eq!(i64s(&dead, "tokens"), [0, 0, 1, 0]);
    assert_eq!(
        f64s(&dead, "share"),
        [Some(0.0), Some(0.0), Some(0.05), Some(0.0)]
    );
    assert_eq!(dead_experts(&routing(), "train", 0.0).unwrap().height(), 0);
}

#[test]
fn drop_rate_and_entropies_are_taken_once_per_modality() {
    let stats = modality_stats(&routing(), "train").unwrap();
    assert_eq!(i64s(&stats, "step"), [1, 1, 5, 5, 5, 5]);
    assert_eq!(i64s(&stats, "block"), [1, 1, 1, 1, 3, 3]);
    assert_eq!(
        strs(&stats, "modality"),
        ["image", "text", "image", "text", "image", "text"]
    );
    assert_eq!(i64s(&stats, "kept"), [10, 2, 40, 100, 20, 20]);
    assert_eq!(i64s(&stats, "dropped"), [2, 0, 4, 0, 0, 5]);
    assert_eq!(
        f64s(&stats, "dropped_rate"),
        [
            Some(2.0 / 12.0),
            Some(0.0),
            Some(4.0 / 44.0),
            Some(0.0),
            Some(0.0),
            Some(0.2)
        ]
    );
    assert_eq!(
        f64s(&stats, "local_entropy"),
        [
            Some(0.5),
            Some(0.4),
            Some(0.2),
            Some(0.1),
            Some(0.3),
            Some(0.6)
        ]
    );
    assert_eq!(
        f64s(&stats, "global_entropy"),
        [
            Some(0.6),
            Some(0.3),
            Some(0.9),
            Some(0.7),
            Some(0.8),
            Some(0.5)
        ]
    );
}
