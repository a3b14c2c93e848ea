//! A run's inference-capacity curves in its report: the figure's lines and the table of
//! every (factor, BPR) setting with its accuracy, dropped assignments and GFLOPs.

use crate::capacity::CapacityCurve;
use crate::names::metric_name;
use crate::plot::{CapacityFigure, CapacityLine};

use super::html::number;

/// "with BPR" or "without BPR".
pub(super) fn bpr_words(bpr: bool) -> &'static str {
    if bpr { "with BPR" } else { "without BPR" }
}

/// An accuracy key in words, `top-1 (own classification head), all pairs`.
pub(super) fn accuracy_words(key: &str) -> String {
    let name = metric_name(key);
    format!("{}, {}", name.label, name.group)
}

/// The figure of one run's curves: a line per curve with BPR on and off (named by the curve
/// when there are several).
pub(super) fn run_figure(curves: &[CapacityCurve]) -> CapacityFigure {
    let mut lines = Vec::new();
    for curve in curves {
        for bpr in [true, false] {
            let points: Vec<_> = (curve.points.iter()).filter(|p| p.bpr == bpr).collect();
            if points.is_empty() {
                continue;
            }
            let name = match curves.len() {
                1 => bpr_words(bpr).to_owned(),
                _ => format!("{} {}", accuracy_words(&curve.key), bpr_words(bpr)),
            };
            lines.push(CapacityLine {
                name,
                by_factor: points.iter().map(|p| (p.factor, p.accuracy)).collect(),
                by_gflops: (points.iter())
                    .filter_map(|p| Some((p.gflops?, p.accuracy)))
                    .collect(),
            });
        }
    }
    let y_desc = match curves {
        [curve] => metric_name(&curve.key).label,
        _ => "top-1 accuracy".to_owned(),
    };
    CapacityFigure {
        y_desc,
        lines,
        references: Vec::new(),
    }
}

/// The header and (plain text) rows of the capacity table: one row per (BPR, factor) that
/// any curve measured, BPR on first; its accuracy on each curve, the share of assignments
/// dropped and the GFLOPs per example (measured over all datasets, so shared by the curves).
pub(super) fn capacity_table(curves: &[CapacityCurve]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut settings: Vec<(bool, f64)> = (curves.iter())
        .flat_map(|c| c.points.iter().map(|p| (p.bpr, p.factor)))
        .collect();
    settings.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.total_cmp(&b.1)));
    settings.dedup();
    let mut header = vec!["capacity factor".to_owned(), "BPR".to_owned()];
    header.extend(curves.iter().map(|c| accuracy_words(&c.key)));
    header.extend([
        "assignments dropped".to_owned(),
        "GFLOPs per example".to_owned(),
    ]);
    let rows = (settings.iter())
        .map(|&(bpr, factor)| {
            let points: Vec<_> = curves.iter().map(|c| c.at(factor, bpr)).collect();
            let measured = points.iter().flatten().next();
            let mut row = vec![
                factor.to_string(),
                if bpr { "on" } else { "off" }.to_owned(),
            ];
            row.extend(points.iter().map(|p| number(p.map(|p| p.accuracy))));
            row.push(match measured.and_then(|p| p.dropped) {
                Some(dropped) => format!("{:.1}%", 100.0 * dropped),
                None => "–".to_owned(),
            });
            row.push(number(measured.and_then(|p| p.gflops)));
            row
        })
        .collect();
    (header, rows)
}
