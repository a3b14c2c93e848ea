//! The comparison report of a sweep: every trial listed and linked, and the settings
//! compared over seeds (mean and standard deviation), as a table and as bar charts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use limoe_core::files::write_atomic;
use limoe_core::spec::AnalysisSpec;
use serde::Serialize;

use super::html::{escape, number, page, table};
use super::{INDEX, RunSummary, SUMMARY_JSON, SUMMARY_MD};
use limoe_core::records::write_record;

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

/// The numbers compared across settings, with what they are called in the report.
const COMPARED: [(&str, &str); 8] = [
    ("zero_shot_top1", "zero-shot top-1"),
    ("retrieval_i2t_r1", "image→text R@1"),
    ("retrieval_t2i_r1", "text→image R@1"),
    ("image_specialists", "image-specialist experts"),
    ("text_specialists", "text-specialist experts"),
    ("text_top_share", "top expert's share of text"),
    ("dropped_image", "dropped image tokens"),
    ("dropped_text", "dropped text tokens"),
];

/// Writes the sweep's `index.html`, `summary.md` and `summary.json` into `out`.
pub fn write_sweep_report(
    name: &str,
    trials: &[TrialReport],
    _analysis: &AnalysisSpec,
    out: &Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let comparison = compare(trials);
    let mut body = format!("<h1>Sweep {}</h1>\n", escape(name));
    let _ = writeln!(
        body,
        "<p>{} trials; each setting's numbers are the mean ± standard deviation over its \
         seeds (n = finished trials).</p>",
        trials.len()
    );
    body.push_str("<h2>Settings compared</h2>\n");
    let (header, rows) = comparison_table(&comparison);
    body.push_str(&table(&header, &rows));
    body.push_str("<h2>Trials</h2>\n");
    let trial_rows: Vec<Vec<String>> = trials
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
            row.extend(COMPARED.iter().map(|(m, _)| number(find(&metrics, m))));
            row
        })
        .collect();
    let mut header = vec!["trial".to_owned(), "state".to_owned()];
    header.extend(COMPARED.iter().map(|(_, label)| escape(label)));
    body.push_str(&table(&header, &trial_rows));
    write_atomic(
        &out.join(INDEX),
        page(&format!("Sweep {name}"), &body).as_bytes(),
    )?;
    write_atomic(
        &out.join(SUMMARY_MD),
        sweep_markdown(name, &comparison).as_bytes(),
    )?;
    write_record(
        out,
        SUMMARY_JSON,
        &SweepSummary {
            name,
            trials,
            settings: &comparison,
        },
    )
}

/// `summary.json` of a sweep.
#[derive(Serialize)]
struct SweepSummary<'a> {
    name: &'a str,
    trials: &'a [TrialReport],
    settings: &'a [SettingStats],
}

/// One setting's numbers over its seeds.
#[derive(Clone, Debug, Serialize)]
struct SettingStats {
    setting: String,
    /// metric -> (mean, standard deviation (n-1; 0 for one trial), n).
    metrics: BTreeMap<String, (f64, f64, usize)>,
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

/// Mean, standard deviation and count per setting (in first-appearance order) and metric.
fn compare(trials: &[TrialReport]) -> Vec<SettingStats> {
    let mut order: Vec<&str> = Vec::new();
    for t in trials {
        if !order.contains(&t.setting.as_str()) {
            order.push(&t.setting);
        }
    }
    order
        .into_iter()
        .map(|setting| {
            let numbers: Vec<BTreeMap<String, f64>> = trials
                .iter()
                .filter(|t| t.setting == setting)
                .filter_map(|t| t.summary.as_ref().map(RunSummary::metrics))
                .collect();
            let metrics = COMPARED
                .iter()
                .filter_map(|(metric, _)| {
                    let values: Vec<f64> = numbers.iter().filter_map(|m| find(m, metric)).collect();
                    let n = values.len();
                    (n > 0).then(|| {
                        let mean = values.iter().sum::<f64>() / n as f64;
                        let var = if n > 1 {
                            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
                        } else {
                            0.0
                        };
                        ((*metric).to_owned(), (mean, var.sqrt(), n))
                    })
                })
                .collect();
            SettingStats {
                setting: setting.to_owned(),
                metrics,
            }
        })
        .collect()
}

fn comparison_table(settings: &[SettingStats]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header = vec!["setting".to_owned()];
    header.extend(COMPARED.iter().map(|(_, label)| escape(label)));
    let rows = settings
        .iter()
        .map(|s| {
            let mut row = vec![escape(&s.setting)];
            row.extend(
                COMPARED
                    .iter()
                    .map(|(metric, _)| match s.metrics.get(*metric) {
                        Some((mean, std, n)) => {
                            format!("{} ± {} (n={n})", number(Some(*mean)), number(Some(*std)))
                        }
                        None => "–".to_owned(),
                    }),
            );
            row
        })
        .collect();
    (header, rows)
}

fn sweep_markdown(name: &str, settings: &[SettingStats]) -> String {
    let (header, rows) = comparison_table(settings);
    let mut out = format!(
        "# Sweep {name}\n\nMean ± standard deviation over seeds.\n\n| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out
}
