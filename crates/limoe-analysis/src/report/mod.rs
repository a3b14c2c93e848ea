//! One run's report: `index.html` opening with the headline block (scores against chance,
//! specialists per block, dropped tokens), then the metrics grouped and named in words (with
//! the inference-capacity scores and the finetune stages' Transfer scores in tables of their
//! own), every plot in the spec's formats with captions drawn from the run's numbers, the
//! plan and the resolved spec; and `summary.md` / `summary.json` with the key numbers for
//! scripts.

mod capacity;
mod captions;
mod claims_section;
mod classes;
mod headline;
mod html;
mod metric_table;
mod plain;
mod plots;
mod publish;
mod summary;
mod sweep;
mod transfer;
mod verify;
mod vmoe_section;

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use limoe_core::files::write_atomic;
use limoe_core::logs::{ASSIGNMENTS, EVAL, METRICS, ROUTING};
use limoe_core::records::{CLASSES_FILE, PLAN_FILE, SUMMARY_FILE, read_record, write_record};
use limoe_core::spec::AnalysisSpec;

pub use claims_section::ClaimInputs;
pub use metric_table::{MetricGroup, MetricRow, MetricTable};
pub use plain::plain_table;
pub use publish::publish;
pub use summary::{BlockSummary, RunSummary};
pub(crate) use sweep::find_metric;
pub use sweep::{TrialReport, write_sweep_report};
pub use verify::verify_pictures;

use crate::capacity::{capacity_curves, is_capacity_key};
use crate::read_log;
use crate::run_dirs::RunDirs;
use capacity::capacity_table;
use headline::{headline_html, headline_markdown};
use html::{escape, markdown_table, number, page, table, text_table};
use plots::{Figures, Logs, expert_count, names_by_label};
use transfer::transfer_table;

/// The report's page.
pub const INDEX: &str = "index.html";
/// The key numbers as Markdown.
pub const SUMMARY_MD: &str = "summary.md";
/// The key numbers as JSON ([`RunSummary`]).
pub const SUMMARY_JSON: &str = "summary.json";
/// The folder of pictures, beside the page.
pub const PLOTS: &str = "plots";

/// A table's header and plain-text rows.
type TextTable = (Vec<String>, Vec<Vec<String>>);

/// Links shown at the top of a page (e.g. back to the sweep), as (text, relative href).
pub type Links<'a> = &'a [(String, String)];

/// Writes the report of the run `dirs` into `out` (created if missing) and returns its key
/// numbers. Plots whose data the run does not have (e.g. routing of a dense model) are
/// listed as skipped, with the reason.
pub fn write_run_report(
    name: &str,
    dirs: &RunDirs,
    analysis: &AnalysisSpec,
    links: Links,
    out: &Path,
) -> anyhow::Result<RunSummary> {
    let plots_dir = out.join(PLOTS);
    std::fs::create_dir_all(&plots_dir)
        .with_context(|| format!("cannot create {}", plots_dir.display()))?;
    let logs = Logs::read(dirs)?;
    let summary = summarise(name, &logs, dirs, analysis.dead_expert_threshold)?;
    let figures = Figures::draw(&logs, &summary, analysis, &plots_dir);
    let classes = match (&logs.assignments, expert_count(&logs.routing)) {
        (Some(assignments), Some(experts)) => classes::top_classes_table(
            assignments,
            experts,
            names_by_label(&logs.classes).as_deref(),
        )?,
        _ => String::new(),
    };
    let spec_text = std::fs::read_to_string(&dirs.spec_file)
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", dirs.spec_file.display()));
    let body = run_page_body(&summary, &figures, &classes, &spec_text, links);
    write_atomic(&out.join(INDEX), page(name, &body).as_bytes())?;
    write_atomic(&out.join(SUMMARY_MD), summary_markdown(&summary).as_bytes())?;
    write_record(out, SUMMARY_JSON, &summary)?;
    Ok(summary)
}

/// The key numbers of the run `dirs` (what its report shows), without drawing anything;
/// experts under `dead_threshold` of a modality's tokens count as dead.
pub fn read_run_summary(
    name: &str,
    dirs: &RunDirs,
    dead_threshold: f64,
) -> anyhow::Result<RunSummary> {
    summarise(name, &Logs::read(dirs)?, dirs, dead_threshold)
}

/// The key numbers of a run from its logs, eval summary and plan.
fn summarise(
    name: &str,
    logs: &Logs,
    dirs: &RunDirs,
    dead_threshold: f64,
) -> anyhow::Result<RunSummary> {
    let mut summary = RunSummary {
        name: name.to_owned(),
        ..RunSummary::default()
    };
    summary.add_metrics(&logs.metrics)?;
    let (routing, split) = logs.final_routing();
    summary.add_routing(routing, split, dead_threshold)?;
    summary.add_train_dropped(&logs.routing)?;
    if let Some(eval) = &dirs.eval {
        summary.eval = read_record(eval, SUMMARY_FILE)?.unwrap_or_default();
    }
    for (stage, dir) in &dirs.finetune {
        let scores = read_record(dir, SUMMARY_FILE)?.unwrap_or_default();
        summary.transfer.insert(stage.clone(), scores);
    }
    summary.plan = read_record(&dirs.train, PLAN_FILE)?;
    Ok(summary)
}

/// Reads the logs of a run: the train stage's metrics, routing and periodic eval; the eval
/// stage's routing, eval and assignments (with class names) when it ran.
impl Logs {
    fn read(dirs: &RunDirs) -> anyhow::Result<Logs> {
        let train = &dirs.train;
        let mut logs = Logs {
            metrics: read_log(train, &METRICS)?,
            routing: read_log(train, &ROUTING)?,
            eval: read_log(train, &EVAL)?,
            test_routing: None,
            assignments: None,
            classes: Vec::new(),
        };
        if let Some(eval) = &dirs.eval {
            logs.test_routing = Some(read_log(eval, &ROUTING)?);
            logs.assignments = Some(read_log(eval, &ASSIGNMENTS)?);
            logs.classes = read_record(eval, CLASSES_FILE)?.unwrap_or_default();
        }
        Ok(logs)
    }
}

fn run_page_body(
    summary: &RunSummary,
    figures: &Figures,
    classes: &str,
    spec_text: &str,
    links: Links,
) -> String {
    let mut body = String::new();
    let _ = writeln!(body, "<h1>{}</h1>", escape(&summary.name));
    if !links.is_empty() {
        let links: Vec<String> = links
            .iter()
            .map(|(text, href)| format!("<a href=\"{}\">{}</a>", escape(href), escape(text)))
            .collect();
        let _ = writeln!(body, "<p>{}</p>", links.join(" · "));
    }
    body.push_str(&headline_html(summary));
    body.push_str("<h2>Metrics</h2>\n");
    body.push_str(&metric_table(summary).html());
    if !summary.blocks.is_empty() {
        let _ = writeln!(
            body,
            "<h3>Routing per MoE block ({} split, last step)</h3>",
            escape(summary.routing_split.as_deref().unwrap_or("?"))
        );
        let (header, rows) = block_table(summary);
        body.push_str(&table(&header, &rows));
    }
    for (heading, (header, rows)) in extra_tables(summary) {
        let _ = writeln!(body, "<h2>{heading}</h2>");
        body.push_str(&text_table(&header, &rows));
    }
    if let Some(plan) = &summary.plan {
        body.push_str("<h2>Plan</h2>\n<pre>");
        body.push_str(&escape(&plan.lines.join("\n")));
        body.push_str("</pre>\n");
    }
    body.push_str("<h2>Plots</h2>\n");
    body.push_str(&figures.html());
    if !classes.is_empty() {
        body.push_str("<h2>Top classes per expert</h2>\n");
        body.push_str(classes);
    }
    body.push_str("<h2>Resolved spec</h2>\n<details><summary>spec.yaml</summary><pre>");
    body.push_str(&escape(spec_text));
    body.push_str("</pre></details>\n");
    body
}

/// The run's metrics in one column, grouped and named in words; the inference-capacity
/// scores are left to their own table.
fn metric_table(summary: &RunSummary) -> MetricTable {
    let mut metrics = summary.metrics();
    metrics.retain(|key, _| !is_capacity_key(key));
    MetricTable::new(&[("value".to_owned(), metrics)])
}

/// The tables a run has beyond its metrics, `(heading, (header, rows))`: its scores at each
/// inference capacity, and its finetune stages' scores.
fn extra_tables(summary: &RunSummary) -> Vec<(&'static str, TextTable)> {
    let mut out = Vec::new();
    let curves = capacity_curves(&summary.eval);
    if !curves.is_empty() {
        out.push(("Inference capacity", capacity_table(&curves)));
    }
    if !summary.transfer.is_empty() {
        out.push(("Transfer", transfer_table(&summary.transfer)));
    }
    out
}

/// The per-block routing table's header and rows.
fn block_table(summary: &RunSummary) -> (Vec<String>, Vec<Vec<String>>) {
    let header = [
        "block",
        "experts",
        "image specialists",
        "text specialists",
        "busiest text expert: its share of text",
        "busiest image expert: its share of image",
        "dead (image / text)",
        "dropped image (train / eval capacity)",
        "dropped text (train / eval capacity)",
    ]
    .map(String::from)
    .to_vec();
    let rows = summary
        .blocks
        .iter()
        .map(|b| {
            let dead = |m: &str| b.dead.get(m).copied().unwrap_or_default();
            let dropped = |m: &str| {
                let (train, eval) = (b.train_dropped_rate.get(m), b.dropped_rate.get(m));
                format!("{} / {}", number(train.copied()), number(eval.copied()))
            };
            vec![
                b.block.to_string(),
                b.experts.to_string(),
                b.image_specialists.to_string(),
                b.text_specialists.to_string(),
                top(b.text_top_expert, b.text_top_share),
                top(b.image_top_expert, b.image_top_share),
                format!("{} / {}", dead("image"), dead("text")),
                dropped("image"),
                dropped("text"),
            ]
        })
        .collect();
    (header, rows)
}

/// "3: 0.9400", an expert and its share.
fn top(expert: Option<i64>, share: Option<f64>) -> String {
    match expert {
        Some(e) => format!("{e}: {}", number(share)),
        None => number(share),
    }
}

/// The key numbers as a Markdown document: the headline, the metrics, the routing per block.
fn summary_markdown(summary: &RunSummary) -> String {
    let mut out = format!("# {}\n\n", summary.name);
    out.push_str(&headline_markdown(summary));
    out.push_str("## Metrics\n\n");
    out.push_str(&metric_table(summary).markdown());
    if !summary.blocks.is_empty() {
        let (header, rows) = block_table(summary);
        let _ = writeln!(
            out,
            "Routing per MoE block ({} split, last step):\n",
            summary.routing_split.as_deref().unwrap_or("?"),
        );
        out.push_str(&markdown_table(&header, &rows));
    }
    for (heading, (header, rows)) in extra_tables(summary) {
        let _ = writeln!(out, "\n## {heading}\n");
        out.push_str(&markdown_table(&header, &rows));
    }
    out
}

#[cfg(test)]
mod tests;
