//! The block a run's report opens with: what the model scores against guessing (zero-shot
//! accuracy per dataset, retrieval recall), how many experts specialise per MoE block (with
//! the rule), and how many tokens evaluation dropped.

use limoe_core::logs::eval_metrics::{
    ALL_DATASETS, CHANCE_TOP1, RETRIEVAL_DIRECTIONS, RETRIEVAL_PAIRS, metric_key, retrieval_metric,
};

use super::RunSummary;
use super::html::{escape, markdown_table, number, table};
use crate::capacity::CAPACITY_ACCURACIES;
use crate::names::metric_name;
use crate::routing::Thresholds;

/// The recalls the headline shows, with their K.
const RECALLS: [(&str, f64); 2] = [("r1", 1.0), ("r5", 5.0)];

/// One score against chance.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Score {
    /// What it is, in words (`zero-shot top-1, synthetic`).
    pub what: String,
    /// This run's value.
    pub value: f64,
    /// Guessing's value, when the eval recorded what it needs.
    pub chance: Option<f64>,
}

/// The scores against chance of a run: a classifier's top-1 and zero-shot top-1 of every
/// dataset that has one (chance 1 / classes, as the eval records it), then R@1 and R@5 in
/// both directions (chance K / pairs ranked).
pub(crate) fn scores(summary: &RunSummary) -> Vec<Score> {
    let eval = &summary.eval;
    let mut out: Vec<Score> = eval
        .iter()
        .filter_map(|(key, &value)| {
            let dataset = (CAPACITY_ACCURACIES.iter())
                .find_map(|metric| key.strip_suffix(&format!("/{metric}")))?;
            Some(Score {
                what: format!("{}, {dataset}", metric_name(key).label),
                value,
                chance: eval.get(&metric_key(dataset, CHANCE_TOP1)).copied(),
            })
        })
        .collect();
    let pairs = eval
        .get(&metric_key(ALL_DATASETS, RETRIEVAL_PAIRS))
        .copied();
    for direction in RETRIEVAL_DIRECTIONS {
        for (measure, k) in RECALLS {
            let key = metric_key(ALL_DATASETS, &retrieval_metric(direction, measure));
            if let Some(&value) = eval.get(&key) {
                out.push(Score {
                    what: metric_name(&key).label,
                    value,
                    chance: pairs.filter(|&n| n > 0.0).map(|n| (k / n).min(1.0)),
                });
            }
        }
    }
    out
}

/// The cells of a score: what, value, chance, value / chance.
fn score_cells(score: &Score) -> Vec<String> {
    let times = score
        .chance
        .filter(|&c| c > 0.0)
        .map_or("–".to_owned(), |c| format!("{:.1}×", score.value / c));
    vec![
        score.what.clone(),
        number(Some(score.value)),
        number(score.chance),
        times,
    ]
}

/// The per-block header and rows: specialists and the dropped rates at eval capacity.
fn block_cells(summary: &RunSummary) -> (Vec<String>, Vec<Vec<String>>) {
    let header = [
        "MoE block",
        "experts",
        "image specialists",
        "text specialists",
        "mixed",
        "dropped image tokens (eval)",
        "dropped text tokens (eval)",
    ]
    .map(String::from)
    .to_vec();
    let rows = summary
        .blocks
        .iter()
        .map(|b| {
            let mixed = b.experts - b.image_specialists - b.text_specialists;
            vec![
                b.block.to_string(),
                b.experts.to_string(),
                b.image_specialists.to_string(),
                b.text_specialists.to_string(),
                mixed.to_string(),
                number(b.dropped_rate.get("image").copied()),
                number(b.dropped_rate.get("text").copied()),
            ]
        })
        .collect();
    (header, rows)
}

/// How an expert counts as a specialist, in words.
pub(crate) fn specialist_rule(summary: &RunSummary) -> String {
    let t = Thresholds::default();
    format!(
        "An expert is an image specialist when at least {:.0}% of the tokens it processes are \
         image tokens, a text specialist when at most {:.0}% are, mixed otherwise ({} split, \
         last step); dropped: the share of a modality's routed tokens that no expert had \
         room for, at the eval capacity.",
        t.image * 100.0,
        t.text * 100.0,
        summary.routing_split.as_deref().unwrap_or("?")
    )
}

const SCORE_HEADER: [&str; 4] = ["score", "this run", "chance", "× chance"];

/// The headline block as HTML.
pub(crate) fn headline_html(summary: &RunSummary) -> String {
    let mut out = String::from("<section id=\"headline\">\n<h2>At a glance</h2>\n");
    let scores = scores(summary);
    if scores.is_empty() {
        out.push_str("<p class=\"note\">No eval scores: the run has no eval stage.</p>\n");
    } else {
        let rows: Vec<Vec<String>> = (scores.iter())
            .map(|s| score_cells(s).iter().map(|c| escape(c)).collect())
            .collect();
        out.push_str(&table(&SCORE_HEADER.map(String::from), &rows));
    }
    if !summary.blocks.is_empty() {
        let (header, rows) = block_cells(summary);
        out.push_str(&table(&header, &rows));
        out.push_str(&format!(
            "<p class=\"note\">{}</p>\n",
            escape(&specialist_rule(summary))
        ));
    }
    out.push_str("</section>\n");
    out
}

/// The headline block as Markdown.
pub(crate) fn headline_markdown(summary: &RunSummary) -> String {
    let mut out = String::from("## At a glance\n\n");
    let scores = scores(summary);
    if !scores.is_empty() {
        let rows: Vec<Vec<String>> = scores.iter().map(score_cells).collect();
        out.push_str(&markdown_table(&SCORE_HEADER.map(String::from), &rows));
        out.push('\n');
    }
    if !summary.blocks.is_empty() {
        let (header, rows) = block_cells(summary);
        out.push_str(&markdown_table(&header, &rows));
        out.push_str(&format!("\n{}\n\n", specialist_rule(summary)));
    }
    out
}
