use super::*;

/// Settings `dense` then `moe`; metric `loss` appears before `acc`; one null value.
pub(crate) fn runs() -> DataFrame {
    df!(
        "setting" => ["dense", "moe", "moe", "moe", "dense", "moe", "moe"],
        "seed" => [0i64, 0, 1, 2, 0, 0, 1],
        "metric" => ["loss", "acc", "acc", "acc", "acc", "loss", "loss"],
        "value" => [Some(0.5), Some(1.0), Some(2.0), Some(4.0), Some(3.0), Some(0.25), None],
    )
    .unwrap()
}

#[test]
fn the_table_has_mean_sample_std_and_count_in_first_appearance_order() {
    let table = compare_table(&runs()).unwrap();
    let strs = |name: &str| -> Vec<String> {
        let c = table.column(name).unwrap().str().unwrap().clone();
        c.iter().map(|v| v.unwrap().to_owned()).collect()
    };
    let f64s = |name: &str| -> Vec<Option<f64>> {
        table.column(name).unwrap().f64().unwrap().iter().collect()
    };
    assert_eq!(strs("setting"), ["dense", "moe", "dense", "moe"]);
    assert_eq!(strs("metric"), ["loss", "loss", "acc", "acc"]);
    assert_eq!(
        f64s("mean"),
        [Some(0.5), Some(0.25), Some(3.0), Some(7.0 / 3.0)]
    );
    let n: Vec<_> = table.column("n").unwrap().i64().unwrap().iter().collect();
    assert_eq!(n, [Some(1), Some(1), Some(1), Some(3)]);
    let std = f64s("std");
    assert_eq!(std[..3], [None, None, None]);
    // Deviations -4/3, -1/3, 5/3: squares sum to 42/9, over n - 1 = 2 gives 7/3.
    assert!(
        (std[3].unwrap() - (7.0f64 / 3.0).sqrt()).abs() < 1e-12,
        "{std:?}"
    );
}

#[test]
fn an_empty_frame_gives_an_empty_table_and_a_missing_column_an_error() {
    assert_eq!(compare_table(&runs().head(Some(0))).unwrap().height(), 0);
    let no_seed = runs().drop("seed").unwrap();
    let err = compare_table(&no_seed).unwrap_err();
    assert!(err.to_string().contains("seed"), "{err}");
}
