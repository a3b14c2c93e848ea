//! The report's pictures: which plots a run gets, drawn in every format of the spec, with
//! the caption saying what to look for.

use std::fmt::Write as _;
use std::path::Path;

use limoe_core::records::ClassName;
use limoe_core::spec::AnalysisSpec;
use polars::prelude::DataFrame;

use super::PLOTS;
use super::html::escape;
use crate::Result;
use crate::plot::{Canvas, plot_losses, plot_specialisation};
use crate::routing::image_shares;

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

/// One plot of the report.
struct Entry {
    /// File name without extension.
    stem: &'static str,
    /// Heading.
    title: &'static str,
    /// What to look for.
    caption: &'static str,
    /// Draws it to a path on a canvas.
    draw: Box<dyn Fn(&Path, Canvas) -> Result<()>>,
}

/// The drawn plots (with the files of each) and those skipped (with the reason).
pub(crate) struct Figures {
    drawn: Vec<(&'static str, &'static str, Vec<String>)>,
    skipped: Vec<(&'static str, String)>,
}

impl Figures {
    /// Draws every plot of the run into `dir` in each of the spec's formats.
    pub fn draw(logs: &Logs, analysis: &AnalysisSpec, dir: &Path) -> Figures {
        let canvases = Canvas::from_spec(analysis);
        let mut figures = Figures {
            drawn: Vec::new(),
            skipped: Vec::new(),
        };
        for entry in entries(logs) {
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
            let shown = files.iter().find(|f| f.ends_with(".png")).or(files.first());
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

/// The plots of a run, in page order.
fn entries(logs: &Logs) -> Vec<Entry> {
    let (routing, split) = logs.final_routing();
    let shares = image_shares(routing, split);
    let metrics = logs.metrics.clone();
    vec![
        Entry {
            stem: "specialisation",
            title: "Modality specialisation of the experts",
            caption: "Experts of each MoE block sorted by the share of image tokens they \
                      process: image and text specialists at the ends, mixed experts between.",
            draw: Box::new(move |path, canvas| match &shares {
                Ok(shares) => plot_specialisation(shares, path, canvas),
                Err(e) => Err(crate::AnalysisError::Draw {
                    path: path.to_owned(),
                    message: e.to_string(),
                }),
            }),
        },
        Entry {
            stem: "losses",
            title: "Loss terms over training",
            caption: "The contrastive loss should fall steadily; auxiliary terms stay small \
                      and flat when routing is healthy.",
            draw: Box::new(move |path, canvas| plot_losses(&metrics, path, canvas)),
        },
    ]
}
