//! The run as TensorBoard shows it while it trains: `<out_dir>/tensorboard/`, written by
//! rank 0 beside the Parquet logs, from the same rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use limoe_core::logs::{ColumnData, EvalRow, LogRow, MetricsRow, RoutingRow, metrics};
use limoe_tensorboard::{EventWriter, Histogram, event_files, truncate_after};

/// The event directory inside a train stage's output.
pub const TENSORBOARD: &str = "tensorboard";
/// Size in pixels of the specialisation picture shown at each periodic evaluation.
const PICTURE_SIZE: (u32, u32) = (960, 360);

/// The directory TensorBoard reads a train stage's events from.
pub fn tensorboard_dir(out_dir: &Path) -> PathBuf {
    out_dir.join(TENSORBOARD)
}

/// Writes a run's scalars, routing histograms and specialisation pictures as events.
pub struct LiveLog {
    events: EventWriter,
}

impl LiveLog {
    /// Starts the events under `out_dir` from nothing, removing those an earlier attempt
    /// left.
    pub fn create(out_dir: &Path) -> anyhow::Result<LiveLog> {
        let dir = tensorboard_dir(out_dir);
        if dir.exists() {
            for file in event_files(&dir)? {
                std::fs::remove_file(&file)
                    .map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", file.display()))?;
            }
        }
        Ok(LiveLog {
            events: EventWriter::create(&dir)?,
        })
    }

    /// Continues after a checkpoint at `step`: the summaries of later steps are removed
    /// first, as the Parquet logs' rows are.
    pub fn resume(out_dir: &Path, step: i64) -> anyhow::Result<LiveLog> {
        let dir = tensorboard_dir(out_dir);
        truncate_after(&dir, step)?;
        Ok(LiveLog {
            events: EventWriter::create(&dir)?,
        })
    }

    /// A step's training metrics as `train/<column>` scalars (every number of the
    /// metrics log but the wall time, which every event carries anyway).
    pub fn metrics(&mut self, row: &MetricsRow) -> anyhow::Result<()> {
        let columns = MetricsRow::LOG
            .columns
            .iter()
            .zip(MetricsRow::to_columns(std::slice::from_ref(row)));
        let scalars = columns.filter_map(|(column, data)| match data {
            ColumnData::Float64(values) if column.name != metrics::WALL_SECONDS => {
                Some((format!("train/{}", column.name), values[0]))
            }
            _ => None,
        });
        self.events.scalars(row.step, scalars)
    }

    /// Evaluation results as `eval/<dataset>/<metric>` scalars.
    pub fn eval(&mut self, rows: &[EvalRow]) -> anyhow::Result<()> {
        let mut by_step: BTreeMap<i64, Vec<(String, f64)>> = BTreeMap::new();
        for row in rows {
            by_step
                .entry(row.step)
                .or_default()
                .push((format!("eval/{}", row.key()), row.value));
        }
        by_step
            .into_iter()
            .try_for_each(|(step, values)| self.events.scalars(step, values))
    }

    /// Routing rows as one histogram per split, block and modality,
    /// `routing/<split>/block <b>/<modality>`: each expert's share of the modality's
    /// assignments.
    pub fn routing(&mut self, rows: &[RoutingRow]) -> anyhow::Result<()> {
        let mut tokens: BTreeMap<(i64, &str, i32, &str), Vec<f64>> = BTreeMap::new();
        for row in rows {
            let counts = tokens
                .entry((row.step, &row.split, row.block, row.modality.name()))
                .or_default();
            let expert = usize::try_from(row.expert)?;
            if counts.len() <= expert {
                counts.resize(expert + 1, 0.0);
            }
            counts[expert] += row.tokens as f64;
        }
        for ((step, split, block, modality), counts) in tokens {
            let total: f64 = counts.iter().sum();
            let shares: Vec<f64> = counts
                .iter()
                .map(|c| if total > 0.0 { c / total } else { 0.0 })
                .collect();
            let tag = format!("routing/{split}/block {block}/{modality}");
            self.events
                .histogram(step, tag, &Histogram { weights: &shares })?;
        }
        Ok(())
    }

    /// The specialisation picture of the `split` routing rows of `step` (each expert's
    /// image and text share per MoE block), as the report draws it.
    pub fn specialisation(
        &mut self,
        step: i64,
        rows: &[RoutingRow],
        split: &str,
    ) -> anyhow::Result<()> {
        let png = limoe_analysis::live::specialisation_png(rows, split, PICTURE_SIZE)?;
        self.events
            .image(step, format!("specialisation/{split}"), png, PICTURE_SIZE)
    }

    /// Hands the events so far to the file system.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.events.flush()
    }
}
