//! The four logs of one training run together.

use std::path::{Path, PathBuf};

use limoe_core::logs::{AssignmentRow, EvalRow, MetricsRow, RoutingRow};

use super::writer::LogWriter;

/// The writers of a run's four logs under one stage output directory.
#[derive(Debug)]
pub struct RunLogs {
    /// Training metrics.
    pub metrics: LogWriter<MetricsRow>,
    /// Routing statistics.
    pub routing: LogWriter<RoutingRow>,
    /// Evaluation results.
    pub eval: LogWriter<EvalRow>,
    /// Per-token expert assignments.
    pub assignments: LogWriter<AssignmentRow>,
}

impl RunLogs {
    /// Starts every log under `out_dir` from nothing.
    pub fn create(out_dir: &Path) -> anyhow::Result<Self> {
        Ok(RunLogs {
            metrics: LogWriter::create(out_dir)?,
            routing: LogWriter::create(out_dir)?,
            eval: LogWriter::create(out_dir)?,
            assignments: LogWriter::create(out_dir)?,
        })
    }

    /// Continues every log under `out_dir` after a checkpoint at `step`.
    pub fn resume(out_dir: &Path, step: i64) -> anyhow::Result<Self> {
        Ok(RunLogs {
            metrics: LogWriter::resume(out_dir, step)?,
            routing: LogWriter::resume(out_dir, step)?,
            eval: LogWriter::resume(out_dir, step)?,
            assignments: LogWriter::resume(out_dir, step)?,
        })
    }

    /// Flushes every log; returns the parts written.
    pub fn flush(&mut self) -> anyhow::Result<Vec<PathBuf>> {
        let parts = [
            self.metrics.flush()?,
            self.routing.flush()?,
            self.eval.flush()?,
            self.assignments.flush()?,
        ];
        Ok(parts.into_iter().flatten().collect())
    }
}
