//! The `analyze` stage kind: a run's logs -> plots, `index.html`, `summary.md|json`.

use anyhow::Context;
use limoe_core::spec::Section;
use limoe_core::{Stage, StageContext};

use crate::report::{verify_pictures, write_run_report};
use crate::run_dirs::RunDirs;

/// Draws the report of the train and eval outputs it needs into its output directory;
/// `limoe run` then publishes it to `reports/<experiment>/`.
pub struct AnalyzeStage;

impl Stage for AnalyzeStage {
    fn kind(&self) -> &'static str {
        "analyze"
    }

    fn about(&self) -> &'static str {
        "plots and the HTML report of a run's logs (specialisation, routing, losses, eval)"
    }

    fn reads(&self) -> &'static [Section] {
        &[Section::Analysis]
    }

    fn run(&self, ctx: &StageContext) -> anyhow::Result<()> {
        let outputs: Vec<_> = ctx.inputs.values().map(|a| a.dir.clone()).collect();
        let dirs = RunDirs::from_outputs(ctx.spec_file.to_owned(), &outputs)?;
        let summary = write_run_report(&ctx.spec.name, &dirs, &ctx.spec.analysis, &[], ctx.out_dir)
            .context("cannot write the report")?;
        let pictures = verify_pictures(ctx.out_dir)?;
        tracing::info!(
            "analyze: report with {pictures} pictures, {} MoE blocks",
            summary.blocks.len()
        );
        Ok(())
    }
}
