//! The comparison report of a sweep: every trial listed and linked, and the settings
//! compared over seeds (mean and standard deviation), as a table and as bar charts; the
//! paper's claims and, when trials measured inference capacities, the V-MoE section.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use limoe_core::files::write_atomic;
use limoe_core::records::write_record;
use limoe_core::spec::AnalysisSpec;
use polars::prelude::{DataFrame, df};
use serde::Serialize;

use super::claims_section::{ClaimInputs, claims_section};
use super::html::{escape, markdown_table, number, page, table};
use super::plots::draw_each;
use super::vmoe_section::{SettingCurves, vmoe_section};
use super::{INDEX, PLOTS, RunSummary, SUMMARY_JSON, SUMMARY_MD};
use crate::capacity::CAPACITY_ACCURACIES;
use crate::claims::{Claim, Recipe};
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
    /// What it trained, as the claims read it.
    pub recipe: Option<Recipe>,
    /// The largest share of text tokens one expert takes at each validation step (mean over
    /// MoE blocks), `(step, share)`.
    pub text_top_share_curve: Vec<(i64, f64)>,
}

/// The numbers compared across settings, named as everywhere else ([`metric_name`]):
/// zero-shot top-1 of each dataset, then these (eval scores whatever their dataset).
const COMPARED: [&str; 9] = [
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
    claims: &ClaimInputs,
    analysis: &AnalysisSpec,
    out: &Path,
) -> anyhow::Result<()> {
    let plots = out.join(PLOTS);
    std::fs::create_dir_all(&plots)
        .with_context(|| format!("cannot create {}", plots.display()))?;
    let compared = compared(trials);
    let tidy = tidy_frame(trials, &compared)?;
    let settings = settings_table(&tidy, &compared)?;
    let mut body = format!("<h1>Sweep {}</h1>\n", escape(name));
    let _ = writeln!(
        body,
        "<p>{} trials. Each setting's numbers are the mean ± sample standard deviation over \
         its finished seeds (n); a single seed has no spread.</p>",
        trials.len()
    );
    let claims = claims_section(trials, claims, analysis, out)?;
    if let Some(claims) = &claims {
        body.push_str(&claims.html);
    }
    let vmoe = vmoe_section(trials, analysis, out)?;
    if let Some(vmoe) = &vmoe {
        body.push_str(&vmoe.html);
    }
    body.push_str("<h2>Settings compared</h2>\n");
    let header: Vec<String> = settings.header.iter().map(|h| escape(h)).collect();
    body.push_str(&table(&header, &settings.html_rows()));
    // Three panels a row, each tall enough for its rotated setting labels.
    let rows = compared.len().div_ceil(3) as u32;
    let shown = draw_each(analysis, &plots, "comparison", |path, canvas| {
        let canvas = Canvas {
            size: (canvas.size.0.max(1200), canvas.size.1.max(rows * 380)),
            ..canvas
        };
        plot_comparison(&tidy, path, canvas)
    })?;
    if let Some(shown) = shown {
        let _ = writeln!(
            body,
            "<figure>\n<img src=\"{PLOTS}/{shown}\" alt=\"settings compared\">\n<figcaption>\
             Each bar is a setting's mean over its finished seeds (n under the bar), the error \
             bar ± one sample standard deviation.</figcaption>\n\
             </figure>"
        );
    }
    body.push_str("<h2>Trials</h2>\n");
    let (header, rows) = trial_table(trials, &compared);
    body.push_str(&table(&header, &rows));
    write_atomic(
        &out.join(INDEX),
        page(&format!("Sweep {name}"), &body).as_bytes(),
    )?;
    let mut markdown =
        format!("# Sweep {name}\n\nMean ± sample standard deviation over seeds (n).\n\n");
    if let Some(claims) = &claims {
        markdown.push_str(&claims.markdown);
        markdown.push('\n');
    }
    if let Some(vmoe) = &vmoe {
        markdown.push_str(&vmoe.markdown);
        markdown.push('\n');
    }
    markdown.push_str(&settings.markdown());
    write_atomic(&out.join(SUMMARY_MD), markdown.as_bytes())?;
    write_record(
        out,
        SUMMARY_JSON,
        &SweepSummary {
            name,
            claims: claims.as_ref().map(|c| c.claims.as_slice()),
            capacity: vmoe.as_ref().map(|v| v.curves.as_slice()),
            trials,
            settings: &settings.records,
        },
    )
}

/// `summary.json` of a sweep.
#[derive(Serialize)]
struct SweepSummary<'a> {
    name: &'a str,
    /// The paper's claims and their verdicts, when the sweep tests any.
    #[serde(skip_serializing_if = "Option::is_none")]
    claims: Option<&'a [Claim]>,
    /// Each setting's inference-capacity curves averaged over its seeds, when any has them.
    #[serde(skip_serializing_if = "Option::is_none")]
    capacity: Option<&'a [SettingCurves]>,
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

/// The metrics compared, `(key, label)`: a classifier's top-1 and zero-shot top-1 per
/// dataset ([`CAPACITY_ACCURACIES`]), then [`COMPARED`].
fn compared(trials: &[TrialReport]) -> Vec<(String, String)> {
    let mut accuracies = std::collections::BTreeSet::new();
    for summary in trials.iter().filter_map(|t| t.summary.as_ref()) {
        for key in summary.eval.keys() {
            if let Some((dataset, metric)) = key.rsplit_once('/')
                && let Some(i) = CAPACITY_ACCURACIES.iter().position(|m| *m == metric)
            {
                accuracies.insert((i, dataset.to_owned()));
            }
        }
    }
    let accuracy = (accuracies.into_iter()).map(|(i, d)| {
        let metric = CAPACITY_ACCURACIES[i];
        let label = metric_name(metric).label;
        (format!("{d}/{metric}"), format!("{label} ({d})"))
    });
    accuracy
        .chain(
            COMPARED
                .iter()
                .map(|m| (m.to_string(), metric_name(m).label)),
        )
        .collect()
}

/// The value of `metric` in a trial's numbers: the exact key, else the first
/// `<dataset>/<metric>` key (eval scores are keyed by dataset).
pub(crate) fn find_metric(metrics: &BTreeMap<String, f64>, metric: &str) -> Option<f64> {
    metrics.get(metric).copied().or_else(|| {
        metrics
            .iter()
            .find(|(k, _)| k.rsplit_once('/').is_some_and(|(_, m)| m == metric))
            .map(|(_, v)| *v)
    })
}

/// The finished trials' compared numbers as a tidy frame: setting, seed, metric, value.
fn tidy_frame(trials: &[TrialReport], compared: &[(String, String)]) -> anyhow::Result<DataFrame> {
    let (mut settings, mut seeds, mut metrics, mut values) = (vec![], vec![], vec![], vec![]);
    for (metric, label) in compared {
        for trial in trials {
            let Some(summary) = &trial.summary else {
                continue;
            };
            if let Some(value) = find_metric(&summary.metrics(), metric) {
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
fn settings_table(
    tidy: &DataFrame,
    compared: &[(String, String)],
) -> anyhow::Result<SettingsTable> {
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
            compared
                .iter()
                .map(|(_, label)| {
                    records
                        .iter()
                        .find(|r| &r.setting == setting && &r.metric == label)
                        .map_or("–".to_owned(), |r| spread_cell(r.mean, r.std, r.n))
                })
                .collect()
        })
        .collect();
    let mut header = vec!["setting".to_owned()];
    header.extend(compared.iter().map(|(_, label)| label.clone()));
    Ok(SettingsTable {
        header,
        settings: order,
        cells,
        records,
    })
}

/// "mean ± std (n=3)", or "mean (n=1)" without a spread, or "–" without values.
pub(super) fn spread_cell(mean: Option<f64>, std: Option<f64>, n: i64) -> String {
    match (n, std) {
        (0, _) => "–".to_owned(),
        (_, Some(std)) => format!("{} ± {} (n={n})", number(mean), number(Some(std))),
        (_, None) => format!("{} (n={n})", number(mean)),
    }
}

/// Every trial with its state, link and numbers.
fn trial_table(
    trials: &[TrialReport],
    compared: &[(String, String)],
) -> (Vec<String>, Vec<Vec<String>>) {
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
            row.extend(
                compared
                    .iter()
                    .map(|(m, _)| number(find_metric(&metrics, m))),
            );
            row
        })
        .collect();
    let mut header = vec!["trial".to_owned(), "state".to_owned()];
    header.extend(compared.iter().map(|(_, label)| escape(label)));
    (header, rows)
}
