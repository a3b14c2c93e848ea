//! The metrics of one or more runs side by side, grouped and named in words
//! ([`crate::names`]): the run report's tables (one column) and `limoe compare` (a column
//! per run), as HTML, Markdown, plain text or JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use super::html::{escape, markdown_table, number, table};
use super::plain::plain_table;
use crate::names::{group_order, metric_name};

/// Metrics of runs side by side.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MetricTable {
    /// The column names: one per run.
    pub runs: Vec<String>,
    /// The groups of rows, in display order.
    pub groups: Vec<MetricGroup>,
}

/// One group's rows (a dataset's eval scores, routing, training).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MetricGroup {
    /// Its heading.
    pub group: String,
    /// Its metrics, in display order.
    pub rows: Vec<MetricRow>,
}

/// One metric of every run.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MetricRow {
    /// Its key (as in `summary.json`).
    pub key: String,
    /// Its name in words.
    pub metric: String,
    /// Its value in each run (`None` where a run does not have it).
    pub values: Vec<Option<f64>>,
}

impl MetricTable {
    /// The table of `runs`, each a column name and its metrics
    /// ([`RunSummary::metrics`](super::RunSummary::metrics)): every key any run has, once.
    pub fn new(runs: &[(String, BTreeMap<String, f64>)]) -> MetricTable {
        let mut keys: Vec<&String> = runs.iter().flat_map(|(_, m)| m.keys()).collect();
        keys.sort();
        keys.dedup();
        let mut named: Vec<_> = keys.into_iter().map(|k| (metric_name(k), k)).collect();
        named.sort_by_key(|(n, k)| (group_order(&n.group), n.order, (*k).clone()));
        let mut groups: Vec<MetricGroup> = Vec::new();
        for (name, key) in named {
            let row = MetricRow {
                key: key.clone(),
                metric: name.label,
                values: runs.iter().map(|(_, m)| m.get(key).copied()).collect(),
            };
            match groups.last_mut() {
                Some(g) if g.group == name.group => g.rows.push(row),
                _ => groups.push(MetricGroup {
                    group: name.group,
                    rows: vec![row],
                }),
            }
        }
        MetricTable {
            runs: runs.iter().map(|(n, _)| n.clone()).collect(),
            groups,
        }
    }

    /// The header and cells of one group, as text.
    fn cells(&self, group: &MetricGroup) -> (Vec<String>, Vec<Vec<String>>) {
        let mut header = vec![group.group.clone()];
        header.extend(self.runs.iter().cloned());
        let rows = group
            .rows
            .iter()
            .map(|r| {
                let mut row = vec![r.metric.clone()];
                row.extend(r.values.iter().map(|v| number(*v)));
                row
            })
            .collect();
        (header, rows)
    }

    /// One HTML table per group, its name in the first header cell.
    pub fn html(&self) -> String {
        let mut out = String::new();
        for group in &self.groups {
            let (header, rows) = self.cells(group);
            let escaped =
                |cells: Vec<String>| -> Vec<String> { cells.iter().map(|c| escape(c)).collect() };
            let rows: Vec<Vec<String>> = rows.into_iter().map(escaped).collect();
            out.push_str(&table(&escaped(header), &rows));
        }
        out
    }

    /// One Markdown table per group.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for group in &self.groups {
            let (header, rows) = self.cells(group);
            out.push_str(&markdown_table(&header, &rows));
            out.push('\n');
        }
        out
    }

    /// The table as pretty-printed JSON, with a final newline.
    pub fn json(&self) -> serde_json::Result<String> {
        Ok(serde_json::to_string_pretty(self)? + "\n")
    }

    /// Aligned plain-text columns, a block per group.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for group in &self.groups {
            let (header, rows) = self.cells(group);
            let all: Vec<Vec<String>> = std::iter::once(header).chain(rows).collect();
            out.push_str(&plain_table(&all, true));
            out.push('\n');
        }
        out
    }
}
