//! Comparing settings across runs: the mean and spread over seeds of each metric.

use polars::prelude::*;

use crate::plot::{floats, strings};
use crate::{AnalysisError, Result};

/// One (setting, metric) group of a comparison frame.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Group {
    pub setting: String,
    pub metric: String,
    pub values: Vec<f64>,
}

impl Group {
    /// The mean of the values (NaN without values).
    pub fn mean(&self) -> f64 {
        self.values.iter().sum::<f64>() / self.values.len() as f64
    }

    /// The sample standard deviation (n - 1 in the denominator); `None` for fewer than two
    /// values.
    pub fn std(&self) -> Option<f64> {
        let n = self.values.len();
        (n >= 2).then(|| {
            let mean = self.mean();
            let squares: f64 = self.values.iter().map(|v| (v - mean).powi(2)).sum();
            (squares / (n - 1) as f64).sqrt()
        })
    }
}

/// The (setting, metric) groups of a tidy comparison frame, ordered by the first
/// appearance of the metric, then of the setting. Null and non-finite values are left out;
/// groups without values have none.
pub(crate) fn groups(frame: &DataFrame) -> Result<Vec<Group>> {
    let (settings, metrics) = (strings(frame, "setting")?, strings(frame, "metric")?);
    frame
        .column("seed")
        .map_err(AnalysisError::polars("reading column `seed`"))?;
    let values = floats(frame, "value")?;
    let (mut setting_order, mut metric_order) = (Vec::new(), Vec::new());
    let mut groups: Vec<Group> = Vec::new();
    for ((setting, metric), value) in settings.into_iter().zip(metrics).zip(values) {
        let (Some(setting), Some(metric), Some(value)) = (setting, metric, value) else {
            continue;
        };
        if !value.is_finite() {
            continue;
        }
        for (order, name) in [(&mut setting_order, &setting), (&mut metric_order, &metric)] {
            if !order.contains(name) {
                order.push(name.clone());
            }
        }
        match groups
            .iter_mut()
            .find(|g| g.setting == setting && g.metric == metric)
        {
            Some(group) => group.values.push(value),
            None => groups.push(Group {
                setting,
                metric,
                values: vec![value],
            }),
        }
    }
    let position = |order: &[String], name: &str| order.iter().position(|n| n == name);
    groups.sort_by_key(|g| {
        (
            position(&metric_order, &g.metric),
            position(&setting_order, &g.setting),
        )
    });
    Ok(groups)
}

/// The numbers of a comparison across runs, from a tidy frame with columns `setting`
/// (string), `seed` (integer), `metric` (string) and `value` (float), one row per run and
/// metric: per metric and setting, `setting`, `metric`, `mean` over seeds, `std` (the
/// sample standard deviation, n - 1 in the denominator; null when n = 1) and `n` (the
/// number of values). Rows are ordered by the metric's first appearance in the frame, then
/// the setting's; rows with a null or non-finite value are left out.
pub fn compare_table(frame: &DataFrame) -> Result<DataFrame> {
    let groups = groups(frame)?;
    df!(
        "setting" => groups.iter().map(|g| g.setting.as_str()).collect::<Vec<_>>(),
        "metric" => groups.iter().map(|g| g.metric.as_str()).collect::<Vec<_>>(),
        "mean" => groups.iter().map(Group::mean).collect::<Vec<_>>(),
        "std" => groups.iter().map(Group::std).collect::<Vec<_>>(),
        "n" => groups.iter().map(|g| g.values.len() as i64).collect::<Vec<_>>(),
    )
    .map_err(AnalysisError::polars("building the comparison table"))
}

#[cfg(test)]
pub(crate) mod tests;
