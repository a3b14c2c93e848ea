use std::fs;
use std::io::BufReader;

use polars::prelude::*;
use quick_xml::events::Event;

use super::*;

const PNG: Canvas = Canvas {
    format: ImageFormat::Png,
    size: (640, 400),
};
const SVG: Canvas = Canvas {
    format: ImageFormat::Svg,
    size: (720, 300),
};

/// The width and height of a valid PNG file.
fn png_size(path: &Path) -> (u32, u32) {
    let file = BufReader::new(fs::File::open(path).unwrap());
    let reader = png::Decoder::new(file).read_info().unwrap();
    let info = reader.info();
    (info.width, info.height)
}

/// Checks the file is well-formed XML with an `<svg>` root of the canvas's size.
fn check_svg(path: &Path, (w, h): (u32, u32)) {
    let text = fs::read_to_string(path).unwrap();
    let mut reader = quick_xml::Reader::from_str(&text);
    let mut root = None;
    loop {
        match reader.read_event().unwrap() {
            Event::Eof => break,
            Event::Start(e) if root.is_none() => {
                let attr = |name: &str| {
                    let a = e.try_get_attribute(name).unwrap().unwrap();
                    String::from_utf8(a.value.to_vec()).unwrap()
                };
                root = Some((
                    String::from_utf8(e.name().as_ref().to_vec()).unwrap(),
                    attr("width"),
                    attr("height"),
                ));
            }
            _ => {}
        }
    }
    assert_eq!(root, Some(("svg".into(), w.to_string(), h.to_string())));
    assert!(text.contains("<text"), "no text in {text}");
}

fn shares() -> DataFrame {
    df!(
        "step" => [5i64; 5],
        "block" => [1i32, 1, 1, 3, 3],
        "expert" => [0i32, 2, 1, 0, 1],
        "image_tokens" => [30i64, 10, 0, 19, 1],
        "text_tokens" => [10i64, 90, 0, 0, 20],
        "image_share" => [Some(0.75), Some(0.1), None, Some(1.0), Some(1.0 / 21.0)],
    )
    .unwrap()
}

fn metrics() -> DataFrame {
    let mut columns = vec![Column::new("step".into(), [1i64, 10, 20])];
    for (i, name) in LOSS_TERMS.iter().enumerate() {
        let v = i as f64;
        columns.push(Column::new((*name).into(), [v + 3.0, v + 2.0, v + 1.0]));
    }
    DataFrame::new_infer_height(columns).unwrap()
}

#[test]
fn canvases_follow_the_spec() {
    let spec = AnalysisSpec::default();
    let canvases = Canvas::from_spec(&spec);
    assert_eq!(
        canvases,
        [
            Canvas {
                format: ImageFormat::Png,
                size: (800, 500)
            },
            Canvas {
                format: ImageFormat::Svg,
                size: (800, 500)
            }
        ]
    );
    let extensions: Vec<_> = canvases.iter().map(|c| c.extension()).collect();
    assert_eq!(extensions, ["png", "svg"]);
}

#[test]
fn specialisation_draws_a_png_and_an_svg_of_the_canvas_size() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("specialisation.png");
    plot_specialisation(&shares(), &png, PNG).unwrap();
    assert_eq!(png_size(&png), (640, 400));
    let svg = dir.path().join("specialisation.svg");
    plot_specialisation(&shares(), &svg, SVG).unwrap();
    check_svg(&svg, (720, 300));
    let text = fs::read_to_string(&svg).unwrap();
    assert!(text.contains("Expert specialisation by modality at step 5"));
    assert!(text.contains("MoE block 3"));
    assert!(text.contains("share of tokens"));
}

#[test]
fn loss_curves_draw_a_png_and_an_svg_of_the_canvas_size() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("losses.png");
    plot_losses(&metrics(), &png, PNG).unwrap();
    assert_eq!(png_size(&png), (640, 400));
    let svg = dir.path().join("losses.svg");
    plot_losses(&metrics(), &svg, SVG).unwrap();
    check_svg(&svg, (720, 300));
    let text = fs::read_to_string(&svg).unwrap();
    for label in ["Loss terms vs step", "step", "z_loss_text", "contrastive"] {
        assert!(text.contains(label), "{label}");
    }
}

#[test]
fn empty_frames_and_missing_columns_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.png");
    let empty = shares().head(Some(0));
    let err = plot_specialisation(&empty, &path, PNG).unwrap_err();
    assert_eq!(
        err.to_string(),
        "nothing to plot: the image-share frame has no rows"
    );
    let err = plot_losses(&metrics().head(Some(0)), &path, PNG).unwrap_err();
    assert_eq!(
        err.to_string(),
        "nothing to plot: the metrics log has no rows"
    );
    let err = plot_losses(&shares(), &path, PNG).unwrap_err();
    assert!(
        err.to_string().starts_with("reading column `loss`"),
        "{err}"
    );
    assert!(!path.exists());
}

#[test]
fn an_unwritable_path_is_a_draw_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("x.png");
    let err = plot_losses(&metrics(), &path, PNG).unwrap_err();
    assert!(matches!(err, AnalysisError::Draw { .. }), "{err}");
}

/// Draws with `plot` to a PNG and an SVG, checks both, and gives the SVG's text.
fn draw_both(plot: impl Fn(&Path, Canvas) -> Result<()>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("x.png");
    plot(&png, PNG).unwrap();
    assert_eq!(png_size(&png), (640, 400));
    assert!(fs::metadata(&png).unwrap().len() > 1000);
    let svg = dir.path().join("x.svg");
    plot(&svg, SVG).unwrap();
    check_svg(&svg, (720, 300));
    fs::read_to_string(&svg).unwrap()
}

/// The error message of `plot` on a file that must not be written.
fn error_of(plot: impl Fn(&Path, Canvas) -> Result<()>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.png");
    let err = plot(&path, PNG).unwrap_err();
    assert!(!path.exists());
    err.to_string()
}

/// A routing log: train steps 1 and 5, blocks 0 and 2, two experts; at step 5 expert 1
/// gets no image tokens of block 0 (dead). One val row.
fn routing() -> DataFrame {
    type Row = (i64, &'static str, i32, &'static str, i32, i64, i64);
    let rows: [Row; 17] = [
        (1, "train", 0, "image", 0, 5, 2),
        (1, "train", 0, "image", 1, 5, 2),
        (1, "train", 0, "text", 0, 1, 0),
        (1, "train", 0, "text", 1, 3, 0),
        (1, "train", 2, "image", 0, 4, 0),
        (1, "train", 2, "image", 1, 6, 0),
        (1, "train", 2, "text", 0, 2, 1),
        (1, "train", 2, "text", 1, 2, 1),
        (5, "train", 0, "image", 0, 10, 1),
        (5, "train", 0, "image", 1, 0, 1),
        (5, "train", 0, "text", 0, 2, 0),
        (5, "train", 0, "text", 1, 2, 0),
        (5, "train", 2, "image", 0, 3, 0),
        (5, "train", 2, "image", 1, 7, 0),
        (5, "train", 2, "text", 0, 1, 0),
        (5, "train", 2, "text", 1, 3, 0),
        (7, "val", 0, "image", 0, 1, 0),
    ];
    let rows = rows.map(|(step, split, block, modality, expert, tokens, dropped)| {
        let (local, global) = (0.1 * step as f64, 0.6 - 0.05 * step as f64);
        (
            step, split, block, modality, expert, tokens, dropped, local, global,
        )
    });
    crate::routing::tests::routing_frame(&rows)
}

fn eval() -> DataFrame {
    df!(
        "step" => [10i64, 10, 10, 10, 20, 20, 20],
        "dataset" => ["cifar10", "cifar10", "all", "all", "cifar10", "all", "all"],
        "metric" => ["zero_shot_top1", "chance_top1", "retrieval_i2t_r1", "retrieval_t2i_r1",
                     "zero_shot_top1", "retrieval_i2t_r1", "retrieval_t2i_r1"],
        "value" => [0.3, 0.1, 0.2, 0.25, 0.4, 0.3, 0.35],
    )
    .unwrap()
}

#[test]
fn utilisation_draws_a_heatmap_per_block_and_modality_flagging_dead_experts() {
    let text = draw_both(|p, c| plot_utilisation(&routing(), "train", 0.05, p, c));
    for label in [
        "Expert utilisation vs step (split train",
        "block 0, image (dead: 1)",
        "block 2, text",
        "1 dead",
        "expert (dead: final share &lt; 0.05)",
        "step",
    ] {
        assert!(text.contains(label), "{label}");
    }
    assert!(!text.contains("block 2, image (dead"));
    let err = error_of(|p, c| plot_utilisation(&routing(), "test", 0.05, p, c));
    assert_eq!(err, "nothing to plot: the routing log's split has no rows");
}

#[test]
fn routing_curves_draw_entropies_and_drop_rates_per_modality() {
    let text = draw_both(|p, c| plot_routing_curves(&routing(), "train", p, c));
    for label in [
        "Local router entropy",
        "Global router entropy",
        "Dropped-token rate",
        "image (mean over blocks)",
        "text (mean over blocks)",
    ] {
        assert!(text.contains(label), "{label}");
    }
    let err = error_of(|p, c| plot_routing_curves(&routing().head(Some(0)), "train", p, c));
    assert_eq!(err, "nothing to plot: the routing log's split has no rows");
}

#[test]
fn class_routing_names_classes_when_given_else_numbers_them() {
    let assignments = crate::assignments::tests::assignments();
    let names = ["cat".to_owned(), "dog".to_owned()];
    let text = draw_both(|p, c| plot_class_routing(&assignments, 2, Some(&names), p, c));
    for label in [
        "MoE block 1",
        "MoE block 2",
        "cat",
        "dog",
        "expert",
        "class",
    ] {
        assert!(text.contains(label), "{label}");
    }
    let text = draw_both(|p, c| plot_class_routing(&assignments, 2, None, p, c));
    assert!(!text.contains("cat"));
    let err = error_of(|p, c| plot_class_routing(&assignments.head(Some(0)), 2, None, p, c));
    assert!(err.starts_with("nothing to plot"), "{err}");
}

#[test]
fn loss_panels_leave_out_all_zero_terms() {
    let mut frame = metrics();
    frame
        .with_column(Column::new("z_loss_image".into(), [0.0; 3]))
        .unwrap();
    let text = draw_both(|p, c| plot_losses(&frame, p, c));
    for label in [
        "Total loss and its parts",
        "Auxiliary losses",
        "z_loss_text",
    ] {
        assert!(text.contains(label), "{label}");
    }
    assert!(!text.contains("z_loss_image"));
}

#[test]
fn temperature_is_drawn_with_the_learning_rate() {
    let mut frame = metrics();
    frame
        .with_column(Column::new("logit_scale".into(), [10.0, 20.0, 0.0]))
        .unwrap();
    frame
        .with_column(Column::new("lr".into(), [1e-4, 2e-4, 1e-4]))
        .unwrap();
    let text = draw_both(|p, c| plot_temperature(&frame, p, c));
    for label in [
        "Contrastive temperature (1 / logit scale)",
        "Learning rate",
        "step",
    ] {
        assert!(text.contains(label), "{label}");
    }
    let err = error_of(|p, c| plot_temperature(&frame.head(Some(0)), p, c));
    assert_eq!(err, "nothing to plot: the metrics log has no rows");
}

#[test]
fn eval_curves_draw_a_line_per_dataset_and_metric() {
    let text = draw_both(|p, c| plot_eval(&eval(), p, c));
    for label in [
        "Zero-shot classification",
        "Image-text retrieval",
        "cifar10 zero_shot_top1",
        "all retrieval_i2t_r1",
        "all retrieval_t2i_r1",
    ] {
        assert!(text.contains(label), "{label}");
    }
    assert!(!text.contains("chance_top1"));
    assert!(!text.contains("Few-shot"));
    let err = error_of(|p, c| plot_eval(&eval().head(Some(0)), p, c));
    assert!(err.starts_with("nothing to plot"), "{err}");
}

#[test]
fn comparison_draws_a_panel_per_metric_with_bars_per_setting() {
    let runs = crate::compare::tests::runs();
    let text = draw_both(|p, c| plot_comparison(&runs, p, c));
    for label in [
        "Comparison across runs",
        "acc",
        "loss",
        "moe (n = 3)",
        "dense (n = 1)",
    ] {
        assert!(text.contains(label), "{label}");
    }
    let err = error_of(|p, c| plot_comparison(&runs.head(Some(0)), p, c));
    assert_eq!(err, "nothing to plot: the comparison frame has no rows");
}

/// An assignments log of `classes` classes in MoE blocks 1 and 3 with two experts: class `l`
/// has `l + 1` image tokens per block, all on expert `l % 2`.
fn many_classes(classes: i32) -> DataFrame {
    let rows: Vec<(i32, i32)> = (1..=3)
        .step_by(2)
        .flat_map(|block| (0..classes).flat_map(move |l| (0..=l).map(move |_| (block, l))))
        .collect();
    let n = rows.len();
    df!(
        "step" => vec![1i64; n],
        "key" => vec!["k"; n],
        "label" => rows.iter().map(|r| Some(r.1)).collect::<Vec<_>>(),
        "modality" => vec!["image"; n],
        "block" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        "position" => vec![0i32; n],
        "choice" => vec![0i32; n],
        "expert" => rows.iter().map(|r| r.1 % 2).collect::<Vec<_>>(),
    )
    .unwrap()
}

/// The `<text>` elements (attributes and content) of an SVG whose content is `label`.
fn svg_texts<'a>(svg: &'a str, label: &str) -> Vec<&'a str> {
    svg.split("<text")
        .filter(|t| {
            t.split_once('>')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(&format!("{label}\n")))
        })
        .collect()
}

#[test]
fn class_routing_labels_every_class_inside_the_picture() {
    let names: Vec<String> = (0..24)
        .map(|l| format!("orange triangle number {l}"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("x.svg");
    plot_class_routing(&many_classes(24), 2, Some(&names), &svg, SVG).unwrap();
    let text = fs::read_to_string(&svg).unwrap();
    for name in &names {
        let texts = svg_texts(&text, name);
        assert_eq!(texts.len(), 2, "{name} labelled once per block");
        for t in texts {
            let x: f64 = t
                .split("x=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let width = f64::from(super::text_width(name, 10));
            assert!(t.contains("text-anchor=\"end\""), "{t}");
            assert!(
                x - width >= 0.0,
                "{name} starts left of its panel: x {x}, width {width}"
            );
        }
    }
    assert!(super::heatmap::y_label_area(&names) > super::text_width(&names[0], 10));
}

#[test]
fn class_routing_pools_the_least_frequent_classes_beyond_the_limit_and_grows_to_fit() {
    let classes = MAX_CLASSES as i32 + 10;
    let assignments = many_classes(classes);
    let dir = tempfile::tempdir().unwrap();
    let (png, svg) = (dir.path().join("x.png"), dir.path().join("x.svg"));
    plot_class_routing(&assignments, 2, None, &png, PNG).unwrap();
    let (w, h) = png_size(&png);
    assert_eq!(w, 640);
    assert!(
        h >= MAX_CLASSES as u32 * 14,
        "tall enough for every row: {h}"
    );
    plot_class_routing(&assignments, 2, None, &svg, SVG).unwrap();
    let text = fs::read_to_string(&svg).unwrap();
    // Classes 0..=10 have the fewest tokens: pooled.
    assert_eq!(svg_texts(&text, "other (11 classes)").len(), 2);
    assert!(svg_texts(&text, "10").is_empty(), "class 10 is pooled");
    assert_eq!(svg_texts(&text, &(classes - 1).to_string()).len(), 2);
}

/// The lines of a capacity figure: with BPR flat at 0.8, without falling below 1; GFLOPs
/// twice the factor.
fn capacity_figure() -> CapacityFigure {
    let factors = [0.25, 0.5, 1.0, 1.5];
    let line = |name: &str, accuracies: [f64; 4]| CapacityLine {
        name: name.to_owned(),
        by_factor: factors.into_iter().zip(accuracies).collect(),
        by_gflops: factors
            .map(|f| f * 2.0)
            .into_iter()
            .zip(accuracies)
            .collect(),
    };
    CapacityFigure {
        y_desc: "top-1".into(),
        lines: vec![
            line("with BPR", [0.8; 4]),
            line("without BPR", [0.3, 0.6, 0.8, 0.8]),
        ],
        references: vec![("dense (vit)".into(), 0.7)],
    }
}

#[test]
fn capacity_draws_accuracy_against_factor_and_gflops_with_dense_levels_dashed() {
    let text = draw_both(|p, c| plot_capacity(&capacity_figure(), p, c));
    for label in [
        "Accuracy against inference capacity",
        "Accuracy vs inference capacity factor",
        "Accuracy vs GFLOPs per example",
        "with BPR",
        "without BPR",
        "dense (vit)",
        "top-1",
    ] {
        assert!(text.contains(label), "{label}");
    }
    // The level (the third colour) is drawn in dashes: many short pieces, not one line.
    let RGBColor(r, g, b) = super::palette(2);
    let level = format!("stroke=\"#{r:02X}{g:02X}{b:02X}\"");
    assert!(text.matches(&level).count() > 10, "dashed level");
    let empty = CapacityFigure {
        lines: Vec::new(),
        ..capacity_figure()
    };
    let err = error_of(|p, c| plot_capacity(&empty, p, c));
    assert!(
        err.starts_with("nothing to plot"),
        "a level alone is nothing: {err}"
    );
}

#[test]
fn a_classifier_s_nan_contrastive_loss_and_logit_scale_are_left_out() {
    let mut frame = metrics();
    for name in ["contrastive", "logit_scale"] {
        frame
            .with_column(Column::new(name.into(), [f64::NAN; 3]))
            .unwrap();
    }
    frame
        .with_column(Column::new("lr".into(), [1e-4, 2e-4, 1e-4]))
        .unwrap();
    let text = draw_both(|p, c| plot_losses(&frame, p, c));
    assert!(text.contains("classification") && !text.contains("contrastive"));
    let text = draw_both(|p, c| plot_temperature(&frame, p, c));
    assert!(text.contains("Learning rate vs step"));
    assert!(!text.contains("Contrastive temperature"));
    // Logs from before the classifiers have no label loss column.
    let old = metrics().drop("classification").unwrap();
    let text = draw_both(|p, c| plot_losses(&old, p, c));
    assert!(text.contains("contrastive") && !text.contains("classification"));
}
