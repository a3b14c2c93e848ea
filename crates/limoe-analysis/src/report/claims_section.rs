//! The sweep report's claims section: the verdict table ([`crate::claims`]) and the figures
//! the paper argues with.

use std::fmt::Write as _;
use std::path::Path;

use limoe_core::spec::{AnalysisSpec, Arch};
use polars::prelude::df;

use super::PLOTS;
use super::html::{escape, markdown_table, number, table};
use super::plots::draw_each;
use super::sweep::TrialReport;
use crate::claims::{
    Claim, Settings, VERDICT_RULE, Verdict, ZERO_SHOT, collapse_curves, judge_claims,
};
use crate::plot::{SeedLine, SeedPanel, plot_comparison, plot_over_seeds};

/// The claims, as HTML and Markdown, for a sweep that tests at least one.
pub(super) struct ClaimsSection {
    pub(super) html: String,
    pub(super) markdown: String,
    pub(super) claims: Vec<Claim>,
}

/// What the claims need beyond the trials' numbers.
#[derive(Clone, Debug, Default)]
pub struct ClaimInputs {
    /// The sweep's benchmarks never trained on (`eval.benchmarks`).
    pub held_out: Vec<String>,
    /// Test images with each patch tinted by its expert, per MoE block, drawn beside the
    /// report by the caller (which can run the model): paths relative to the report, with
    /// their captions.
    pub patch_routing: Vec<(String, String)>,
}

/// The section for `trials`, `None` when the sweep tests no claim. Figures go to
/// `out/plots/`.
pub(super) fn claims_section(
    trials: &[TrialReport],
    inputs: &ClaimInputs,
    analysis: &AnalysisSpec,
    out: &Path,
) -> anyhow::Result<Option<ClaimsSection>> {
    let settings = Settings::new(trials, &inputs.held_out);
    let claims = judge_claims(&settings);
    if claims.iter().all(|c| c.verdict == Verdict::NotTested) {
        return Ok(None);
    }
    let mut html = String::from("<h2>The paper's claims</h2>\n");
    let _ = writeln!(html, "<p>{}</p>", escape(VERDICT_RULE));
    let (header, rows) = verdict_rows(&claims);
    html.push_str(&table(
        &header.iter().map(|h| escape(h)).collect::<Vec<_>>(),
        &(rows.iter())
            .map(|r| r.iter().map(|c| escape(c)).collect())
            .collect::<Vec<_>>(),
    ));
    for claim in &claims {
        for note in &claim.notes {
            let _ = writeln!(
                html,
                "<p class=\"note\">({}) {}</p>",
                claim.id,
                escape(note)
            );
        }
    }
    let mut markdown = format!("## The paper's claims\n\n{VERDICT_RULE}\n\n");
    markdown.push_str(&markdown_table(&header, &rows));
    for figure in figures(&settings, trials, analysis, &out.join(PLOTS))? {
        let _ = writeln!(
            html,
            "<figure>\n<img src=\"{PLOTS}/{}\" alt=\"{}\">\n<figcaption>{}</figcaption>\n</figure>",
            escape(&figure.0),
            escape(&figure.1),
            escape(&figure.1)
        );
    }
    if !inputs.patch_routing.is_empty() {
        html.push_str(
            "<h3>Per-patch routing</h3>\n<p>Test images as the LIMoE recipe's first seed saw \
             them, each patch tinted by the expert it was routed to, per MoE block.</p>\n",
        );
        for (path, caption) in &inputs.patch_routing {
            let _ = writeln!(
                html,
                "<figure style=\"display:inline-block;width:32%;margin:0.5%\">\
                 <img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>",
                escape(path),
                escape(caption),
                escape(caption)
            );
        }
    }
    Ok(Some(ClaimsSection {
        html,
        markdown,
        claims,
    }))
}

/// One row per comparison: claim, its verdict, the comparison, metric, effect ± SE, seeds,
/// and the comparison's own verdict.
fn verdict_rows(claims: &[Claim]) -> (Vec<String>, Vec<Vec<String>>) {
    let header = [
        "claim",
        "verdict",
        "comparison",
        "metric",
        "effect ± SE",
        "seeds",
        "this comparison",
    ]
    .map(String::from)
    .to_vec();
    let mut rows = Vec::new();
    for claim in claims {
        for (i, c) in claim.comparisons.iter().enumerate() {
            let effect = match (c.judged.effect, c.judged.se) {
                (Some(e), Some(se)) => format!("{} ± {}", number(Some(e)), number(Some(se))),
                (Some(e), None) => number(Some(e)),
                _ => "–".into(),
            };
            let first = i == 0;
            rows.push(vec![
                if first {
                    format!("({}) {}", claim.id, claim.statement)
                } else {
                    String::new()
                },
                if first {
                    claim.verdict.word().to_owned()
                } else {
                    String::new()
                },
                c.what.clone(),
                c.metric.clone(),
                effect,
                c.judged.seeds.to_string(),
                match c.decides {
                    true => c.judged.verdict.word().to_owned(),
                    false => format!("{} (context, not in the verdict)", c.judged.verdict.word()),
                },
            ]);
        }
        if claim.comparisons.is_empty() {
            let words = claim.verdict.word().to_owned();
            rows.push(vec![format!("({}) {}", claim.id, claim.statement), words]);
        }
    }
    (header, rows)
}

/// Draws the claims' figures; returns `(file, caption)` of each drawn (PNG when there is
/// one).
fn figures(
    settings: &Settings,
    trials: &[TrialReport],
    analysis: &AnalysisSpec,
    plots: &Path,
) -> anyhow::Result<Vec<(String, String)>> {
    let collapse = SeedPanel {
        title: "Text collapse over training".into(),
        x_desc: "step".into(),
        y_desc: "top expert's share of text tokens (validation, mean over blocks)".into(),
        lines: (collapse_curves(settings).into_iter())
            .map(|(name, points)| SeedLine {
                name: name.to_owned(),
                points,
            })
            .collect(),
        references: Vec::new(),
    };
    let dense = settings.find(|r| r.arch == Arch::Dense);
    let curve = settings.capacity_curve();
    let capacities: Vec<f64> = curve.iter().map(|(c, ..)| *c).collect();
    let mut capacity_lines = Vec::new();
    for (bpr, name) in [(true, "LIMoE with BPR"), (false, "LIMoE without BPR")] {
        let points = (curve.iter())
            .filter(|(_, b, _)| *b == bpr)
            .flat_map(|(c, _, setting)| {
                let values = settings.values(setting, ZERO_SHOT);
                values.into_iter().map(move |v| (*c, v))
            })
            .collect();
        capacity_lines.push(SeedLine {
            name: name.into(),
            points,
        });
    }
    if let Some(dense) = dense.filter(|_| capacities.len() > 1) {
        let values = settings.values(dense, ZERO_SHOT);
        let points = (capacities.iter())
            .flat_map(|c| values.iter().map(move |v| (*c, *v)))
            .collect();
        capacity_lines.push(SeedLine {
            name: "dense (no experts, no capacity)".into(),
            points,
        });
    }
    let capacity = SeedPanel {
        title: "Accuracy against training capacity factor".into(),
        x_desc: "training capacity factor".into(),
        y_desc: settings.zero_shot_name(),
        lines: capacity_lines,
        references: Vec::new(),
    };
    let mut drawn = Vec::new();
    let panels = [
        (
            "text_collapse",
            &collapse,
            "Text collapse over training: the top expert's share of the validation text tokens (mean over MoE blocks) against the step, each MoE setting at the reference capacity with BPR; the line is the mean over seeds, the faint lines ± one sample standard deviation.",
        ),
        (
            "capacity",
            &capacity,
            "Accuracy against the training capacity factor for the LIMoE recipe with and without BPR (mean over seeds, faint ± one standard deviation); the dense model, which has no capacity, as a flat line.",
        ),
    ];
    for (stem, panel, caption) in panels {
        if let Some(file) = draw_each(analysis, plots, stem, |path, canvas| {
            plot_over_seeds(panel, path, canvas)
        })? {
            drawn.push((file, caption.to_owned()));
        }
    }
    if let Some(file) = specialisation_bars(settings, trials, analysis, plots)? {
        drawn.push((
            file,
            "Specialisation per MoE block of the LIMoE recipe: image-specialist (>= 90% \
             image tokens) and text-specialist (<= 10%) experts on the test split, mean over \
             seeds ± one standard deviation."
                .into(),
        ));
    }
    Ok(drawn)
}

/// The LIMoE recipe's specialists per block, as bars over seeds.
fn specialisation_bars(
    settings: &Settings,
    trials: &[TrialReport],
    analysis: &AnalysisSpec,
    plots: &Path,
) -> anyhow::Result<Option<String>> {
    let Some(limoe) = settings.find(|r| r.is_limoe() && r.bpr) else {
        return Ok(None);
    };
    let (mut blocks, mut seeds, mut metrics, mut values) = (vec![], vec![], vec![], vec![]);
    for trial in trials.iter().filter(|t| t.setting == limoe) {
        for block in trial.summary.iter().flat_map(|s| &s.blocks) {
            for (metric, value) in [
                ("image specialists", block.image_specialists),
                ("text specialists", block.text_specialists),
            ] {
                blocks.push(format!("block {}", block.block));
                seeds.push(trial.seed.map(|s| s as i64));
                metrics.push(metric.to_owned());
                values.push(value as f64);
            }
        }
    }
    let tidy = df!("setting" => blocks, "seed" => seeds, "metric" => metrics, "value" => values)?;
    draw_each(analysis, plots, "specialisation_blocks", |path, canvas| {
        plot_comparison(&tidy, path, canvas)
    })
}
