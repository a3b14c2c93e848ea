//! The comparison report of a sweep: every trial listed and linked, and the settings
//! compared over seeds (mean and standard deviation), as a table and as bar charts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use limoe_core::files::write_atomic;
use limoe_core::records::write_record;
use limoe_core::spec::AnalysisSpec;
use polars::prelude::{DataFrame, df};
use serde::Serialize;

use super::html::{escape, markdown_table, number, page, table};
use super::{INDEX, PLOTS, RunSummary, SUMMARY_JSON, SUMMARY_MD};
use crate::AnalysisError;
use crate::columns::{floats, ints, strings};
use crate::compare::compare_table;
use crate::names::metric_name;
use crate::plot::{Canvas, plot_comparison};

/// One trial as the sweep report shows it.
#[derive(Clone, Debug, Serialize)]
pub struct TrialReport {
    /// The trial id (`setting=none,seed=1`).
    pub id: String,
    /// The trial's setting: its id without the `seed=` part (trials differing only in seed
    /// are compared as one setting).
    pub setting: String,
    /// The seed, when the sweep repeats over seeds.
    pub seed: Option<u64>,
    /// How the trial ended (`done`, `cached`, `failed`, `pending`).
    pub state: String,
    /// Relative link to the trial's own report, when it has one.
    pub href: Option<String>,
    /// Its key numbers, when it finished.
    pub summary: Option<RunSummary>,
}

/// The numbers compared across settings (eval scores by metric, whatever their dataset),
/// named as everywhere else ([`metric_name`]).
const COMPARED: [&str; 10] = [
    "zero_shot_top1",
    "retrieval_i2t_r1",
    "retrieval_t2i_r1",
    "image_specialists",
    "text_specialists",
    "text_top_share",
    "dropped_image",
    "dropped_text",
    "train_dropped_image",
    "train_dropped_text",
];

/// Writes the sweep's `index.html` (comparison table and bar charts over seeds, every trial
/// linked), `summary.md` and `summary.json` into `out`.
pub fn write_sweep_report(
    name: &str,
    trials: &[TrialReport],
    analysis: &AnalysisSpec,
    out: &Path,
) -> anyhow::Result<()> {
    let plots = out.join(PLOTS);
    std::fs::create_dir_all(&plots)
        .with_context(|| format!("cannot create {}", plots.display()))?;
    let tidy = tidy_frame(trials)?;
    let settings = settings_table(&tidy)?;
    let mut body = format!("<h1>Sweep {}</h1>\n", escape(name));
    let _ = writeln!(
        body,
        "<p>{} trials. Each setting's numbers are the mean ± sample standard deviation over \
         its finished seeds (n); a single seed has no spread.</p>",
        trials.len()
    );
    body.push_str("<h2>Settings compared</h2>\n");
    let header: Vec<String> = settings.header.iter().map(|h| escape(h)).collect();
    body.push_str(&table(&header, &settings.html_rows()));
    let mut drawn = Vec::new();
    for canvas in Canvas::from_spec(analysis) {
        // Three panels a row, each tall enough for its rotated setting labels.
        let rows = COMPARED.len().div_ceil(3) as u32;
        let canvas = Canvas {
            size: (canvas.size.0.max(1200), canvas.size.1.max(rows * 380)),
            ..canvas
        };
        let file = format!("comparison.{}", canvas.extension());
        match plot_comparison(&tidy, &plots.join(&file), canvas) {
            Ok(()) => drawn.push(file),
            Err(AnalysisError::NoData { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(shown) = drawn.iter().find(|f| f.ends_with(".png")).or(drawn.first()) {
        let _ = writeln!(
            body,
            "<figure>\n<img src=\"{PLOTS}/{shown}\" alt=\"settings compared\">\n<figcaption>\
             Each bar is a setting's mean over its finished seeds (n under the bar), the error \
             bar ± one sample standard deviation.</figcaption>\n\
             </figure>"
        );
    }
    body.push_str("<h2>Trials</h2>\n");
    let (header, rows) = trial_table(trials);
    body.push_str(&table(&header, &rows));
    write_atomic(
        &out.join(INDEX),
        page(&format!("Sweep {name}"), &body).as_bytes(),
    )?;
    let mut markdown =
        format!("# Sweep {name}\n\nMean ± sample standard deviation over seeds (n).\n\n");
    markdown.push_str(&settings.markdown());
    write_atomic(&out.join(SUMMARY_MD), markdown.as_bytes())?;
    write_record(
        out,
        SUMMARY_JSON,
        &SweepSummary {
            name,
            trials,
            settings: &settings.records,
        },
    )
}

/// `summary.json` of a sweep.
#[derive(Serialize)]
struct SweepSummary<'a> {
    name: &'a str,
    trials: &'a [TrialReport],
    settings: &'a [SettingMetric],
}

/// One setting's statistics of one metric over its seeds.
#[derive(Clone, Debug, Serialize)]
struct SettingMetric {
    setting: String,
    metric: String,
    mean: Option<f64>,
    /// Sample standard deviation; `None` for a single seed.
    std: Option<f64>,
    n: i64,
}

/// The value of `metric` in a trial's numbers: the exact key, else the first
/// `<dataset>/<metric>` key (eval scores are keyed by dataset).
fn find(metrics: &BTreeMap<String, f64>, metric: &str) -> Option<f64> {
    metrics.get(metric).copied().or_else(|| {
        metrics
            .iter()
            .find(|(k, _)| k.rsplit_once('/').is_some_and(|(_, m)| m == metric))
            .map(|(_, v)| *v)
    })
}

/// The finished trials' compared numbers as a tidy frame: setting, seed, metric, value.
fn tidy_frame(trials: &[TrialReport]) -> anyhow::Result<DataFrame> {
    let (mut settings, mut seeds, mut metrics, mut values) = (vec![], vec![], vec![], vec![]);
    for metric in COMPARED {
        let label = metric_name(metric).label;
        for trial in trials {
            let Some(summary) = &trial.summary else {
                continue;
            };
            if let Some(value) = find(&summary.metrics(), metric) {
                settings.push(trial.setting.clone());
                seeds.push(trial.seed.map(|s| s as i64));
                metrics.push(label.clone());
                values.push(value);
            }
        }
    }
    Ok(df!("setting" => settings, "seed" => seeds, "metric" => metrics, "value" => values)?)
}

/// The per-setting statistics, as a table with one column per metric.
struct SettingsTable {
    header: Vec<String>,
    settings: Vec<String>,
    cells: Vec<Vec<String>>,
    records: Vec<SettingMetric>,
}

impl SettingsTable {
    fn html_rows(&self) -> Vec<Vec<String>> {
        self.settings
            .iter()
            .zip(&self.cells)
            .map(|(s, cells)| {
                let mut row = vec![escape(s)];
                row.extend(cells.iter().map(|c| escape(c)));
                row
            })
            .collect()
    }

    fn markdown(&self) -> String {
        let rows: Vec<Vec<String>> = (self.settings.iter().zip(&self.cells))
            .map(|(s, cells)| std::iter::once(s.clone()).chain(cells.clone()).collect())
            .collect();
        markdown_table(&self.header, &rows)
    }
}

/// Mean, spread and count per setting and metric ([`compare_table`]), settings in
/// first-appearance order.
fn settings_table(tidy: &DataFrame) -> anyhow::Result<SettingsTable> {
    let stats = compare_table(tidy)?;
    let (settings, metrics) = (strings(&stats, "setting")?, strings(&stats, "metric")?);
    let (means, stds, ns) = (
        floats(&stats, "mean")?,
        floats(&stats, "std")?,
        ints(&stats, "n")?,
    );
    let records: Vec<SettingMetric> = (0..stats.height())
        .map(|i| SettingMetric {
            setting: settings[i].clone().unwrap_or_default(),
            metric: metrics[i].clone().unwrap_or_default(),
            mean: means[i],
            std: stds[i],
            n: ns[i].unwrap_or_default(),
        })
        .collect();
    let mut order: Vec<String> = Vec::new();
    for r in &records {
        if !order.contains(&r.setting) {
            order.push(r.setting.clone());
        }
    }
    let cells = order
        .iter()
        .map(|setting| {
            COMPARED
                .iter()
                .map(|metric| {
                    let label = metric_name(metric).label;
                    records
                        .iter()
                        .find(|r| &r.setting == setting && r.metric == label)
                        .map_or("–".to_owned(), |r| match r.std {
                            Some(std) => {
                                format!("{} ± {} (n={})", number(r.mean), number(Some(std)), r.n)
                            }
                            None => format!("{} (n={})", number(r.mean), r.n),
                        })
                })
                .collect()
        })
        .collect();
    let mut header = vec!["setting".to_owned()];
    header.extend(COMPARED.iter().map(|m| metric_name(m).label));
    Ok(SettingsTable {
        header,
        settings: order,
        cells,
        records,
    })
}

/// Every trial with its state, link and numbers.
fn trial_table(trials: &[TrialReport]) -> (Vec<String>, Vec<Vec<String>>) {
    let rows = trials
        .iter()
        .map(|t| {
            let link = match &t.href {
                Some(href) => format!("<a href=\"{}\">{}</a>", escape(href), escape(&t.id)),
                None => escape(&t.id),
            };
            let metrics = t
                .summary
                .as_ref()
                .map(RunSummary::metrics)
                .unwrap_or_default();
            let mut row = vec![link, escape(&t.state)];
            row.extend(COMPARED.iter().map(|m| number(find(&metrics, m))));
            row
        })
        .collect();
    let mut header = vec!["trial".to_owned(), "state".to_owned()];
    header.extend(COMPARED.iter().map(|m| escape(&metric_name(m).label)));
    (header, rows)
}
