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
