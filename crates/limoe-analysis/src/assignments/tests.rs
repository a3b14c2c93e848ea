use super::*;

/// One assignment: step, label, modality, block, expert.
type Row = (i64, Option<i32>, &'static str, i32, i32);

/// Two experts; at the last step (2) in block 1: class 0's image choices go to experts 0,
/// 0, 1 and class 1's to expert 1 and one is dropped (expert 2); unlabelled, text and
/// step-1 rows are to be ignored. Block 2: class 0 to expert 1.
pub(crate) fn assignments() -> DataFrame {
    let rows: [Row; 9] = [
        (1, Some(0), "image", 1, 1),
        (2, Some(0), "image", 1, 0),
        (2, Some(0), "image", 1, 0),
        (2, Some(0), "image", 1, 1),
        (2, Some(1), "image", 1, 1),
        (2, Some(1), "image", 1, 2),
        (2, None, "image", 1, 0),
        (2, Some(0), "text", 1, 1),
        (2, Some(0), "image", 2, 1),
    ];
    df!(
        "step" => rows.map(|r| r.0),
        "key" => rows.map(|_| "k"),
        "label" => rows.map(|r| r.1),
        "modality" => rows.map(|r| r.2),
        "block" => rows.map(|r| r.3),
        "position" => rows.map(|_| 0i32),
        "choice" => rows.map(|_| 0i32),
        "expert" => rows.map(|r| r.4),
    )
    .unwrap()
}

fn i64s(df: &DataFrame, name: &str) -> Vec<i64> {
    let column = df.column(name).unwrap().cast(&DataType::Int64).unwrap();
    column.i64().unwrap().iter().map(Option::unwrap).collect()
}

fn f64s(df: &DataFrame, name: &str) -> Vec<f64> {
    df.column(name)
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .map(Option::unwrap)
        .collect()
}

#[test]
fn class_shares_are_per_class_and_block_over_kept_labelled_image_choices() {
    let shares = class_shares(&assignments(), 2).unwrap();
    assert_eq!(i64s(&shares, "block"), [1, 1, 1, 2]);
    assert_eq!(i64s(&shares, "label"), [0, 0, 1, 0]);
    assert_eq!(i64s(&shares, "expert"), [0, 1, 1, 1]);
    assert_eq!(i64s(&shares, "tokens"), [2, 1, 1, 1]);
    assert_eq!(f64s(&shares, "share"), [2.0 / 3.0, 1.0 / 3.0, 1.0, 1.0]);
}

#[test]
fn class_shares_sum_to_one_per_class_and_block() {
    let sums = class_shares(&assignments(), 2)
        .unwrap()
        .lazy()
        .group_by([col("block"), col("label")])
        .agg([col("share").sum()])
        .collect()
        .unwrap();
    for sum in f64s(&sums, "share") {
        assert!((sum - 1.0).abs() < 1e-12, "{sum}");
    }
}

#[test]
fn top_classes_rank_each_expert_s_classes_ties_to_the_lower_label() {
    let top = top_classes_per_expert(&assignments(), 2, 1, 1).unwrap();
    assert_eq!(i64s(&top, "expert"), [0, 1]);
    assert_eq!(i64s(&top, "rank"), [1, 1]);
    assert_eq!(i64s(&top, "label"), [0, 0]);
    assert_eq!(i64s(&top, "tokens"), [2, 1]);
    assert_eq!(f64s(&top, "share"), [1.0, 0.5]);

    let top = top_classes_per_expert(&assignments(), 2, 1, 5).unwrap();
    assert_eq!(i64s(&top, "expert"), [0, 1, 1]);
    assert_eq!(i64s(&top, "rank"), [1, 1, 2]);
    assert_eq!(i64s(&top, "label"), [0, 0, 1]);
    assert_eq!(f64s(&top, "share"), [1.0, 0.5, 0.5]);

    assert_eq!(
        top_classes_per_expert(&assignments(), 2, 1, 0)
            .unwrap()
            .height(),
        0
    );
    assert_eq!(
        top_classes_per_expert(&assignments(), 2, 7, 3)
            .unwrap()
            .height(),
        0
    );
}

#[test]
fn empty_assignments_give_empty_frames() {
    let empty = assignments().head(Some(0));
    assert_eq!(class_shares(&empty, 2).unwrap().height(), 0);
    assert_eq!(top_classes_per_expert(&empty, 2, 1, 3).unwrap().height(), 0);
}
