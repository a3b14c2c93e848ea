use limoe_core::spec::AnalysisSpec;
use polars::prelude::DataFrame;

use super::*;

/// A test-split routing log of one MoE block with 3 experts at step 5 (and an earlier step
/// that must be ignored): expert 0 gets 30 image + 10 text tokens, expert 1 0 image + 60 text,
/// expert 2 10 image + 0 text; 8 image and 2 text tokens were dropped.
fn routing() -> DataFrame {
    let rows: [(i64, i32, &'static str, i64, i64); 7] = [
        (1, 0, "image", 0, 0),
        (5, 0, "image", 30, 8),
        (5, 1, "image", 0, 8),
        (5, 2, "image", 10, 8),
        (5, 0, "text", 10, 2),
        (5, 1, "text", 60, 2),
        (5, 2, "text", 0, 2),
    ];
    let rows = rows.map(|(step, expert, modality, tokens, dropped)| {
        (step, "test", 1, modality, expert, tokens, dropped, 0.1, 1.0)
    });
    crate::routing::tests::routing_frame(&rows)
}

#[test]
fn block_numbers_of_a_hand_built_routing_log_are_exact() {
    let mut summary = RunSummary::default();
    summary.add_routing(&routing(), "test", 0.01).unwrap();
    assert_eq!(summary.routing_split.as_deref(), Some("test"));
    let [block] = summary.blocks.as_slice() else {
        panic!("one block expected: {:?}", summary.blocks);
    };
    assert_eq!(block.block, 1);
    assert_eq!(block.experts, 3);
    // Expert 0: 30 / 40 = 0.75 image (mixed); expert 1: 0 (text); expert 2: 1 (image).
    assert_eq!((block.image_specialists, block.text_specialists), (1, 1));
    assert_eq!(block.text_top_share, Some(60.0 / 70.0));
    assert_eq!(block.image_top_share, Some(30.0 / 40.0));
    assert_eq!(block.dead.get("image"), Some(&1));
    assert_eq!(block.dead.get("text"), Some(&1));
    assert_eq!(block.dropped_rate.get("image"), Some(&(8.0 / 48.0)));
    assert_eq!(block.dropped_rate.get("text"), Some(&(2.0 / 72.0)));
    let metrics = summary.metrics();
    assert_eq!(metrics["text_specialists"], 1.0);
    assert_eq!(metrics["dead_experts"], 2.0);
}

fn trial(id: &str, setting: &str, seed: u64, top1: Option<f64>) -> TrialReport {
    TrialReport {
        id: id.to_owned(),
        setting: setting.to_owned(),
        seed: Some(seed),
        state: if top1.is_some() { "done" } else { "failed" }.to_owned(),
        href: top1.map(|_| format!("trials/{id}/index.html")),
        summary: top1.map(|v| RunSummary {
            eval: [("synthetic/zero_shot_top1".to_owned(), v)].into(),
            ..RunSummary::default()
        }),
        recipe: None,
        text_top_share_curve: Vec::new(),
    }
}

#[test]
fn the_sweep_report_lists_every_trial_and_compares_settings_over_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let trials = [
        trial("aux=none,seed=0", "aux=none", 0, Some(0.1)),
        trial("aux=none,seed=1", "aux=none", 1, Some(0.3)),
        trial("aux=limoe,seed=0", "aux=limoe", 0, Some(0.5)),
        trial("aux=limoe,seed=1", "aux=limoe", 1, None),
    ];
    let analysis = AnalysisSpec::default();
    write_sweep_report(
        "ablation",
        &trials,
        &ClaimInputs::default(),
        &analysis,
        dir.path(),
    )
    .unwrap();
    let html = std::fs::read_to_string(dir.path().join(INDEX)).unwrap();
    for t in &trials {
        assert!(html.contains(&t.id), "{} missing from the page", t.id);
    }
    assert!(html.contains("href=\"trials/aux=none,seed=0/index.html\""));
    assert!(
        html.contains("0.2000 ± 0.1414 (n=2)"),
        "mean and sample std of none"
    );
    assert!(html.contains("0.5000 (n=1)"), "one finished seed of limoe");
    let markdown = std::fs::read_to_string(dir.path().join(SUMMARY_MD)).unwrap();
    assert!(
        markdown.contains("| aux=none | 0.2000 ± 0.1414 (n=2)"),
        "{markdown}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(SUMMARY_JSON)).unwrap())
            .unwrap();
    assert_eq!(json["trials"].as_array().unwrap().len(), 4);
    assert_eq!(verify_pictures(dir.path()).unwrap(), 1);
    std::fs::write(dir.path().join("plots/comparison.png"), "not a png").unwrap();
    let err = verify_pictures(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("comparison.png is not a valid picture"),
        "{err}"
    );
}

#[test]
fn publishing_replaces_the_files_and_keeps_trial_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (new, to) = (dir.path().join("new"), dir.path().join("reports/x"));
    std::fs::create_dir_all(to.join("trials/a")).unwrap();
    std::fs::write(to.join("trials/a/index.html"), "trial").unwrap();
    std::fs::write(to.join(INDEX), "old").unwrap();
    std::fs::create_dir_all(new.join(PLOTS)).unwrap();
    std::fs::write(new.join(INDEX), "new").unwrap();
    std::fs::write(new.join("manifest.json"), "{}").unwrap();
    publish(&new, &to).unwrap();
    assert_eq!(std::fs::read_to_string(to.join(INDEX)).unwrap(), "new");
    assert_eq!(
        std::fs::read_to_string(to.join("trials/a/index.html")).unwrap(),
        "trial"
    );
    assert!(!to.join("manifest.json").exists());
    let leftovers: Vec<_> = std::fs::read_dir(to.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["x"], "no temporary folders left behind");
}

#[test]
fn a_missing_run_or_log_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = format!("{:#}", RunDirs::from_record(dir.path()).unwrap_err());
    assert!(err.contains("last-run.json"), "{err}");
    let dirs = RunDirs {
        spec_file: dir.path().join("spec.yaml"),
        train: dir.path().join("train-0"),
        eval: None,
    };
    let err = write_run_report(
        "x",
        &dirs,
        &AnalysisSpec::default(),
        &[],
        &dir.path().join("out"),
    )
    .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("train-0/metrics"), "{err}");
}

#[test]
fn run_numbers_come_from_the_last_metrics_row() {
    let metrics = polars::prelude::df!(
        "step" => [1i64, 2],
        "loss" => [3.0, 2.5],
        "contrastive" => [2.9, 2.4],
        "logit_scale" => [10.0, 20.0],
        "wall_seconds" => [1.0, 2.0],
    )
    .unwrap();
    let mut summary = RunSummary::default();
    summary.add_metrics(&metrics).unwrap();
    assert_eq!(summary.steps, Some(2));
    assert_eq!(summary.final_loss, Some(2.5));
    assert_eq!(summary.temperature, Some(0.05));
    assert_eq!(summary.metrics()["final_loss"], 2.5);
    let err = summary
        .add_metrics(&metrics.drop("loss").unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("`loss`"), "{err}");
}

/// A run whose eval scored zero-shot top-1 0.5 on `synthetic` (4 classes, chance 0.25) and
/// retrieval over 20 pairs, with the hand-built routing log's block.
fn scored_summary() -> RunSummary {
    let mut summary = RunSummary {
        name: "scored".into(),
        eval: [
            ("synthetic/zero_shot_top1", 0.5),
            ("synthetic/chance_top1", 0.25),
            ("all/retrieval_i2t_r1", 0.3),
            ("all/retrieval_i2t_r5", 0.6),
            ("all/retrieval_t2i_r1", 0.2),
            ("all/retrieval_pairs", 20.0),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .into(),
        ..RunSummary::default()
    };
    summary.add_routing(&routing(), "test", 0.01).unwrap();
    summary
}

#[test]
fn the_headline_comes_first_with_scores_against_chance_and_specialists_per_block() {
    let logs = Logs {
        metrics: DataFrame::empty(),
        routing: DataFrame::empty(),
        eval: DataFrame::empty(),
        test_routing: None,
        assignments: None,
        classes: Vec::new(),
    };
    let figures = Figures::draw(
        &logs,
        &scored_summary(),
        &AnalysisSpec::default(),
        tempfile::tempdir().unwrap().path(),
    );
    let body = run_page_body(&scored_summary(), &figures, "", "", &[]);
    let headline = body.find("<h2>At a glance</h2>").expect("a headline");
    assert!(
        body.find("<h2>").unwrap() == headline,
        "the headline is the first section"
    );
    let rows: Vec<&str> = body[headline..body.find("</section>").unwrap()]
        .lines()
        .filter(|l| l.starts_with("<tr><td>"))
        .collect();
    assert_eq!(
        rows[..4],
        [
            "<tr><td>zero-shot top-1, synthetic</td><td>0.5000</td><td>0.2500</td><td>2.0×</td></tr>",
            // Chance of R@K over 20 pairs is K / 20.
            "<tr><td>image→text R@1</td><td>0.3000</td><td>0.0500</td><td>6.0×</td></tr>",
            "<tr><td>image→text R@5</td><td>0.6000</td><td>0.2500</td><td>2.4×</td></tr>",
            "<tr><td>text→image R@1</td><td>0.2000</td><td>0.0500</td><td>4.0×</td></tr>",
        ]
    );
    // Block 1: expert 2 is an image specialist, expert 1 a text one, expert 0 mixed.
    assert_eq!(
        rows[4],
        "<tr><td>1</td><td>3</td><td>1</td><td>1</td><td>1</td><td>0.1667</td><td>0.0278</td></tr>"
    );
    assert!(body.contains("at least 90% of the tokens it processes are image tokens"));
}

#[test]
fn the_metric_tables_name_each_metric_in_words_grouped_by_dataset_then_routing_and_training() {
    let table = metric_table(&scored_summary());
    let groups: Vec<&str> = table.groups.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(groups, ["synthetic", "all pairs", "routing"]);
    let all_pairs: Vec<&str> = table.groups[1]
        .rows
        .iter()
        .map(|r| r.metric.as_str())
        .collect();
    assert_eq!(
        all_pairs,
        [
            "pairs ranked (candidates per query)",
            "image→text R@1",
            "image→text R@5",
            "text→image R@1"
        ]
    );
    let html = table.html();
    assert!(
        html.contains("<tr><th>synthetic</th><th>value</th></tr>"),
        "{html}"
    );
    assert!(!html.contains("retrieval_"), "no raw keys: {html}");
    let text = table.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["synthetic", "value"]
    );
    assert!(
        lines[1].starts_with("zero-shot top-1  ") && lines[1].ends_with(" 0.5000"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&table.json().unwrap()).unwrap();
    assert_eq!(
        json["groups"][0]["rows"][0]["key"],
        "synthetic/zero_shot_top1"
    );
}

#[test]
fn captions_say_what_this_run_shows_from_its_numbers() {
    let mut summary = scored_summary();
    let caption = captions::specialisation(&summary);
    assert!(
        caption.contains("Block 1: 1 image and 1 text specialists, 1 mixed of 3 experts"),
        "{caption}"
    );
    // Expert 1 takes 60 of 70 text tokens: busiest, not collapsed.
    assert!(
        caption.contains("the busiest text expert (1) takes 0.86 of text tokens"),
        "{caption}"
    );
    summary.blocks[0].text_top_share = Some(0.94);
    summary.blocks[0].text_top_expert = Some(3);
    let caption = captions::specialisation(&summary);
    assert!(
        caption.contains("text collapsed onto expert 3 in block 1 (0.94 of text tokens)"),
        "{caption}"
    );
    assert!(!caption.contains("entropy"), "no general claim: {caption}");
    let caption = captions::utilisation(&summary, 0.01);
    assert!(
        caption.contains("dead experts: 1 of 3 for image in block 1, 1 of 3 for text in block 1"),
        "{caption}"
    );
    let metrics = polars::prelude::df!(
        "step" => [1i64, 2, 3],
        "loss" => [3.0, 2.5, 2.0],
        "logit_scale" => [10.0, 12.0, 20.0],
    )
    .unwrap();
    let caption = captions::losses(&metrics);
    assert!(
        caption.contains("went from 3 at step 1 to 2 at step 3"),
        "{caption}"
    );
    let caption = captions::temperature(&metrics);
    assert!(
        caption.contains("went from 0.1000 at step 1 to 0.0500 at step 3"),
        "{caption}"
    );
}
