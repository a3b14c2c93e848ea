//! The sweep report's V-MoE section: each setting's inference-capacity curves averaged over
//! its seeds (BPR on and off), dense settings as levels beside them, and per setting its
//! top-1, its finetune stages' top-1 and how far down in capacity its seed-mean curve keeps
//! its accuracy.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use limoe_core::logs::eval_metrics::{ALL_DATASETS, GFLOPS, TOP1, metric_key};
use limoe_core::records::EvalSummary;
use limoe_core::spec::AnalysisSpec;
use serde::Serialize;

use super::capacity::{accuracy_words, bpr_words};
use super::html::{escape, markdown_table, text_table};
use super::plots::draw_each;
use super::sweep::{TrialReport, spread_cell};
use super::{PLOTS, RunSummary};
use crate::capacity::{CapacityCurve, REFERENCE_FACTOR, WITHIN, capacity_curves};
use crate::claims::{mean, sample_variance};
use crate::plot::{CapacityFigure, CapacityLine, plot_capacity};

/// The section, as HTML and Markdown, with the seed-mean curves for `summary.json`.
pub(super) struct VmoeSection {
    pub(super) html: String,
    pub(super) markdown: String,
    pub(super) curves: Vec<SettingCurves>,
}

/// One setting's curves averaged over its seeds.
#[derive(Clone, Debug, Serialize)]
pub(super) struct SettingCurves {
    setting: String,
    curves: Vec<CapacityCurve>,
}

/// One setting's finished trials.
struct Setting<'a> {
    name: &'a str,
    summaries: Vec<&'a RunSummary>,
    /// Its recipe has no experts (a dense model, which has no capacity to vary).
    dense: bool,
    /// Each seed's curves.
    seeds: Vec<Vec<CapacityCurve>>,
    /// The curves of the seeds' mean scores.
    mean: Vec<CapacityCurve>,
}

impl Setting<'_> {
    fn mean_curve(&self, key: &str) -> Option<&CapacityCurve> {
        self.mean.iter().find(|c| c.key == key)
    }

    /// The finite values of `key` in each seed's eval.
    fn values(&self, key: &str) -> Vec<f64> {
        (self.summaries.iter())
            .filter_map(|s| s.eval.get(key).copied())
            .filter(|v| v.is_finite())
            .collect()
    }
}

/// The section for `trials`, `None` when no trial measured inference capacities. Figures go
/// to `out/plots/`.
pub(super) fn vmoe_section(
    trials: &[TrialReport],
    analysis: &AnalysisSpec,
    out: &Path,
) -> anyhow::Result<Option<VmoeSection>> {
    let settings = settings(trials);
    let mut keys: Vec<&str> = (settings.iter())
        .flat_map(|s| s.mean.iter().map(|c| c.key.as_str()))
        .collect();
    keys.sort();
    keys.dedup();
    if keys.is_empty() {
        return Ok(None);
    }
    let shown: Vec<&Setting> = (settings.iter())
        .filter(|s| !s.mean.is_empty() || s.dense)
        .collect();
    let (header, rows) = table(&shown, &keys);
    let mut html = String::from("<h2>V-MoE: inference capacity and transfer</h2>\n");
    let _ = writeln!(
        html,
        "<p>Each setting evaluated with every MoE block at each inference capacity factor, \
         with Batch Priority Routing and without: the lines are means over seeds (faint ± one \
         sample standard deviation), dense settings (no experts, so no capacity) dashed at \
         their mean. How far down a setting keeps its accuracy is read on its seed-mean curve: \
         the lowest factor from which every measured factor up to {REFERENCE_FACTOR} is at \
         most {WITHIN} below its accuracy at {REFERENCE_FACTOR} (with and without BPR each \
         against its own).</p>"
    );
    html.push_str(&text_table(&header, &rows));
    let mut markdown = String::from("## V-MoE: inference capacity and transfer\n\n");
    markdown.push_str(&markdown_table(&header, &rows));
    let plots = out.join(PLOTS);
    for key in &keys {
        let figure = figure(&settings, key);
        let stem: String = format!("inference_capacity_{key}")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        if let Some(file) = draw_each(analysis, &plots, &stem, |path, canvas| {
            plot_capacity(&figure, path, canvas)
        })? {
            let caption = format!(
                "{} against the inference capacity factor (left) and the GFLOPs per example \
                 it spends (right), per setting with BPR and without; mean over seeds, faint \
                 ± one standard deviation; dense settings dashed.",
                accuracy_words(key)
            );
            let _ = writeln!(
                html,
                "<figure>\n<img src=\"{PLOTS}/{}\" alt=\"{}\">\n<figcaption>{}</figcaption>\n\
                 </figure>",
                escape(&file),
                escape(&caption),
                escape(&caption)
            );
        }
    }
    let curves = (settings.iter())
        .filter(|s| !s.mean.is_empty())
        .map(|s| SettingCurves {
            setting: s.name.to_owned(),
            curves: s.mean.clone(),
        })
        .collect();
    Ok(Some(VmoeSection {
        html,
        markdown,
        curves,
    }))
}

/// The finished trials by setting, in first-appearance order, with their curves.
fn settings(trials: &[TrialReport]) -> Vec<Setting<'_>> {
    let mut settings: Vec<Setting> = Vec::new();
    for trial in trials {
        let Some(summary) = &trial.summary else {
            continue;
        };
        let index = match settings.iter().position(|s| s.name == trial.setting) {
            Some(i) => i,
            None => {
                settings.push(Setting {
                    name: &trial.setting,
                    summaries: Vec::new(),
                    dense: false,
                    seeds: Vec::new(),
                    mean: Vec::new(),
                });
                settings.len() - 1
            }
        };
        let setting = &mut settings[index];
        setting.summaries.push(summary);
        setting.seeds.push(capacity_curves(&summary.eval));
        setting.dense |= trial.recipe.is_some_and(|r| !r.arch.is_sparse());
    }
    for setting in &mut settings {
        let evals: Vec<&EvalSummary> = setting.summaries.iter().map(|s| &s.eval).collect();
        setting.mean = capacity_curves(&seed_mean(&evals));
    }
    settings
}

/// Each key's mean over the seeds that have a finite value of it.
fn seed_mean(evals: &[&EvalSummary]) -> EvalSummary {
    let mut values: BTreeMap<&String, Vec<f64>> = BTreeMap::new();
    for eval in evals {
        for (key, value) in eval.iter().filter(|(_, v)| v.is_finite()) {
            values.entry(key).or_default().push(*value);
        }
    }
    (values.into_iter())
        .map(|(key, values)| (key.clone(), mean(&values)))
        .collect()
}

/// The figure of one accuracy: per setting that measured it a line with BPR and one without
/// (every seed's points; against GFLOPs at the seed-mean GFLOPs of each factor), and each
/// dense setting that scored it as a level at its mean.
fn figure(settings: &[Setting], key: &str) -> CapacityFigure {
    let mut lines = Vec::new();
    for setting in settings {
        let Some(mean_curve) = setting.mean_curve(key) else {
            continue;
        };
        for bpr in [true, false] {
            let by_factor: Vec<(f64, f64)> = (setting.seeds.iter())
                .flat_map(|curves| curves.iter().filter(|c| c.key == key))
                .flat_map(|curve| curve.line(bpr))
                .collect();
            if by_factor.is_empty() {
                continue;
            }
            let by_gflops = (by_factor.iter())
                .filter_map(|&(factor, accuracy)| {
                    Some((mean_curve.at(factor, bpr)?.gflops?, accuracy))
                })
                .collect();
            lines.push(CapacityLine {
                name: format!("{} {}", setting.name, bpr_words(bpr)),
                by_factor,
                by_gflops,
            });
        }
    }
    let dense: Vec<&Setting> = (settings.iter())
        .filter(|s| s.dense && s.mean.is_empty() && !s.values(key).is_empty())
        .collect();
    let references = (dense.iter())
        .map(|s| (format!("dense ({})", s.name), mean(&s.values(key))))
        .collect();
    // A dense model spends one amount of compute: its seeds are points on the GFLOPs axis.
    let gflops_key = metric_key(ALL_DATASETS, GFLOPS);
    for setting in dense {
        let by_gflops: Vec<(f64, f64)> = (setting.summaries.iter())
            .filter_map(|s| Some((*s.eval.get(&gflops_key)?, *s.eval.get(key)?)))
            .filter(|(gflops, accuracy)| gflops.is_finite() && accuracy.is_finite())
            .collect();
        if !by_gflops.is_empty() {
            lines.push(CapacityLine {
                name: format!("dense ({})", setting.name),
                by_factor: Vec::new(),
                by_gflops,
            });
        }
    }
    CapacityFigure {
        y_desc: accuracy_words(key),
        lines,
        references,
    }
}

/// Mean ± sample standard deviation (n) of `values`.
fn spread(values: &[f64]) -> String {
    let n = values.len();
    let std = (n > 1).then(|| sample_variance(values).sqrt());
    spread_cell((n > 0).then(|| mean(values)), std, n as i64)
}

/// The header and plain-text rows of the settings table: each accuracy at the model's own
/// eval routing, each finetune stage's top-1 per benchmark (over seeds), and how far down
/// each seed-mean curve keeps its accuracy with BPR and without.
fn table(settings: &[&Setting], keys: &[&str]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut transfers: Vec<(&str, &str)> = (settings.iter())
        .flat_map(|s| s.summaries.iter())
        .flat_map(|summary| summary.transfer.iter())
        .flat_map(|(stage, scores)| {
            (scores.keys())
                .filter_map(|key| key.strip_suffix(&format!("/{TOP1}")))
                .map(move |benchmark| (stage.as_str(), benchmark))
        })
        .collect();
    transfers.sort();
    transfers.dedup();
    let mut header = vec!["setting".to_owned()];
    header.extend(keys.iter().map(|key| accuracy_words(key)));
    header.extend(
        (transfers.iter()).map(|(stage, benchmark)| format!("{stage}: top-1 on {benchmark}")),
    );
    for key in keys {
        for bpr in [true, false] {
            header.push(format!(
                "{}: within {WITHIN} of capacity {REFERENCE_FACTOR}, {}",
                accuracy_words(key),
                bpr_words(bpr)
            ));
        }
    }
    let rows = (settings.iter())
        .map(|setting| {
            let mut row = vec![setting.name.to_owned()];
            row.extend(keys.iter().map(|key| spread(&setting.values(key))));
            row.extend(transfers.iter().map(|(stage, benchmark)| {
                let values: Vec<f64> = (setting.summaries.iter())
                    .filter_map(|s| s.transfer.get(*stage)?.get(&format!("{benchmark}/{TOP1}")))
                    .copied()
                    .filter(|v| v.is_finite())
                    .collect();
                spread(&values)
            }));
            for key in keys {
                for bpr in [true, false] {
                    row.push(match setting.mean_curve(key) {
                        Some(curve) if !curve.line(bpr).is_empty() => curve.kept(bpr).describe(),
                        _ => "–".to_owned(),
                    });
                }
            }
            row
        })
        .collect();
    (header, rows)
}
