//! The report's pictures: which plots a run gets, drawn in every format of the spec, with
//! the caption saying what is plotted and what this run's numbers show ([`super::captions`]).

use std::fmt::Write as _;
use std::path::Path;

use limoe_core::logs::routing as routing_log;
use limoe_core::records::ClassName;
use limoe_core::spec::AnalysisSpec;
use polars::prelude::DataFrame;

use super::html::escape;
use super::{PLOTS, RunSummary, captions};
use crate::capacity::capacity_curves;
use crate::columns::floats;
use crate::plot::{
    Canvas, plot_capacity, plot_class_routing, plot_eval, plot_losses, plot_routing_curves,
    plot_specialisation, plot_temperature, plot_utilisation,
};
use crate::routing::image_shares;
use crate::{AnalysisError, Result};

/// The logs a run's report draws from.
pub(crate) struct Logs {
    /// The train stage's metrics.
    pub metrics: DataFrame,
    /// The train stage's routing (train and val splits over training).
    pub routing: DataFrame,
    /// The train stage's periodic evaluation.
    pub eval: DataFrame,
    /// The eval stage's routing (test split, final checkpoint).
    pub test_routing: Option<DataFrame>,
    /// The eval stage's per-token assignments.
    pub assignments: Option<DataFrame>,
    /// Class names of the assignments' labels.
    pub classes: Vec<ClassName>,
}

impl Logs {
    /// The routing log and split the final routing numbers come from: the eval stage's test
    /// split when it has rows, else the train stage's validation split.
    pub fn final_routing(&self) -> (&DataFrame, &'static str) {
        match &self.test_routing {
            Some(test) if test.height() > 0 => (test, "test"),
            _ => (&self.routing, "val"),
        }
    }
}

/// Draws one plot to a path on a canvas.
type Draw = Box<dyn Fn(&Path, Canvas) -> Result<()>>;

/// One plot of the report.
struct Entry {
    /// File name without extension.
    stem: &'static str,
    /// Heading.
    title: &'static str,
    /// What is plotted and what this run shows.
    caption: String,
    /// Draws it to a path on a canvas.
    draw: Draw,
}

/// The drawn plots (with the files of each) and those skipped (with the reason).
pub(crate) struct Figures {
    drawn: Vec<(&'static str, String, Vec<String>)>,
    skipped: Vec<(&'static str, String)>,
}

impl Figures {
    /// Draws every plot of the run into `dir` in each of the spec's formats.
    pub fn draw(logs: &Logs, summary: &RunSummary, analysis: &AnalysisSpec, dir: &Path) -> Figures {
        let canvases = Canvas::from_spec(analysis);
        let mut figures = Figures {
            drawn: Vec::new(),
            skipped: Vec::new(),
        };
        for entry in entries(logs, summary, analysis.dead_expert_threshold) {
            let mut files = Vec::new();
            let mut failure = None;
            for canvas in &canvases {
                let file = format!("{}.{}", entry.stem, canvas.extension());
                match (entry.draw)(&dir.join(&file), *canvas) {
                    Ok(()) => files.push(file),
                    Err(e) => failure = Some(e.to_string()),
                }
            }
            match failure {
                None => figures.drawn.push((entry.title, entry.caption, files)),
                Some(reason) => figures.skipped.push((entry.title, reason)),
            }
        }
        figures
    }

    /// The figures as HTML: the PNG (else SVG) shown, every format linked.
    pub fn html(&self) -> String {
        let mut out = String::new();
        for (title, caption, files) in &self.drawn {
            let shown = shown_file(files);
            let _ = writeln!(out, "<figure>\n<h3>{}</h3>", escape(title));
            if let Some(shown) = shown {
                let _ = writeln!(
                    out,
                    "<img src=\"{PLOTS}/{}\" alt=\"{}\">",
                    escape(shown),
                    escape(title)
                );
            }
            let links: Vec<String> = files
                .iter()
                .map(|f| format!("<a href=\"{PLOTS}/{0}\">{0}</a>", escape(f)))
                .collect();
            let _ = writeln!(
                out,
                "<figcaption>{} ({})</figcaption>\n</figure>",
                escape(caption),
                links.join(", ")
            );
        }
        if !self.skipped.is_empty() {
            out.push_str("<h3>Not drawn</h3>\n<ul class=\"note\">\n");
            for (title, reason) in &self.skipped {
                let _ = writeln!(out, "<li>{}: {}</li>", escape(title), escape(reason));
            }
            out.push_str("</ul>\n");
        }
        out
    }
}

/// An error for a plot whose input could not be computed.
fn unavailable(path: &Path, e: &AnalysisError) -> AnalysisError {
    AnalysisError::Draw {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// The experts per MoE block: one more than the largest expert id in the routing log.
pub(super) fn expert_count(routing: &DataFrame) -> Option<usize> {
    let ids = floats(routing, routing_log::EXPERT).ok()?;
    ids.into_iter()
        .flatten()
        .fold(None, |max: Option<f64>, e| {
            Some(max.map_or(e, |m| m.max(e)))
        })
        .map(|m| m as usize + 1)
}

/// Class names indexed by label (of the first dataset that has names; gaps by number).
pub(super) fn names_by_label(classes: &[ClassName]) -> Option<Vec<String>> {
    let dataset = &classes.first()?.dataset;
    let of_dataset: Vec<&ClassName> = classes.iter().filter(|c| &c.dataset == dataset).collect();
    let max = of_dataset.iter().map(|c| c.label).max()?;
    let mut names: Vec<String> = (0..=max.max(0)).map(|l| l.to_string()).collect();
    for class in of_dataset {
        if let Ok(i) = usize::try_from(class.label) {
            names[i] = class.name.clone();
        }
    }
    Some(names)
}

/// The plots of a run, in page order; the inference-capacity figure only for a run whose
/// eval measured capacities (most runs do not, and need no note saying so).
fn entries(logs: &Logs, summary: &RunSummary, dead_threshold: f64) -> Vec<Entry> {
    let (routing, split) = logs.final_routing();
    let shares = image_shares(routing, split);
    let train_routing = logs.routing.clone();
    let curves_routing = logs.routing.clone();
    let metrics = logs.metrics.clone();
    let temperature_metrics = logs.metrics.clone();
    let eval = logs.eval.clone();
    let assignments = logs.assignments.clone();
    let experts = expert_count(&logs.routing);
    let class_names = names_by_label(&logs.classes);
    let curves = capacity_curves(&summary.eval);
    let capacity = super::capacity::run_figure(&curves);
    let temperature_title = match captions::has_temperature(&logs.metrics) {
        true => "Temperature and learning rate",
        false => "Learning rate",
    };
    let mut entries = vec![
        Entry {
            stem: "specialisation",
            title: "Modality specialisation of the experts",
            caption: captions::specialisation(summary),
            draw: Box::new(move |path, canvas| match &shares {
                Ok(shares) => plot_specialisation(shares, path, canvas),
                Err(e) => Err(unavailable(path, e)),
            }),
        },
        Entry {
            stem: "utilisation",
            title: "Expert utilisation over training",
            caption: captions::utilisation(summary, dead_threshold),
            draw: Box::new(move |path, canvas| {
                plot_utilisation(&train_routing, "train", dead_threshold, path, canvas)
            }),
        },
        Entry {
            stem: "routing",
            title: "Router entropy and dropped tokens over training",
            caption: captions::routing_curves(summary),
            draw: Box::new(move |path, canvas| {
                plot_routing_curves(&curves_routing, "train", path, canvas)
            }),
        },
        Entry {
            stem: "classes",
            title: "Per-class routing of image tokens",
            caption: captions::classes(),
            draw: Box::new(move |path, canvas| match (&assignments, experts) {
                (Some(assignments), Some(experts)) => {
                    plot_class_routing(assignments, experts, class_names.as_deref(), path, canvas)
                }
                _ => Err(AnalysisError::NoData {
                    what: "the eval stage's assignments",
                }),
            }),
        },
        Entry {
            stem: "losses",
            title: "Loss terms over training",
            caption: captions::losses(&logs.metrics),
            draw: Box::new(move |path, canvas| plot_losses(&metrics, path, canvas)),
        },
        Entry {
            stem: "temperature",
            title: temperature_title,
            caption: captions::temperature(&logs.metrics),
            draw: Box::new(move |path, canvas| {
                plot_temperature(&temperature_metrics, path, canvas)
            }),
        },
        Entry {
            stem: "eval",
            title: "Zero-shot and retrieval during training",
            caption: captions::eval(&logs.eval),
            draw: Box::new(move |path, canvas| plot_eval(&eval, path, canvas)),
        },
    ];
    if !curves.is_empty() {
        entries.push(Entry {
            stem: "capacity",
            title: "Accuracy against inference capacity",
            caption: captions::capacity(&curves),
            draw: Box::new(move |path, canvas| plot_capacity(&capacity, path, canvas)),
        });
    }
    entries
}

/// The file a page shows among one picture's formats: the PNG, else the first.
pub(super) fn shown_file(files: &[String]) -> Option<&String> {
    files.iter().find(|f| f.ends_with(".png")).or(files.first())
}

/// Draws one picture per format of `analysis` as `plots/<stem>.<format>`; the file shown
/// ([`shown_file`]), or `None` when there was nothing to draw.
pub(super) fn draw_each(
    analysis: &AnalysisSpec,
    plots: &Path,
    stem: &str,
    draw: impl Fn(&Path, Canvas) -> crate::Result<()>,
) -> anyhow::Result<Option<String>> {
    let mut drawn = Vec::new();
    for canvas in Canvas::from_spec(analysis) {
        let file = format!("{stem}.{}", canvas.extension());
        match draw(&plots.join(&file), canvas) {
            Ok(()) => drawn.push(file),
            Err(AnalysisError::NoData { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(shown_file(&drawn).cloned())
}
