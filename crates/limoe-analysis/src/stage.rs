//! The `analyze` stage kind: a run's logs -> plots, `index.html`, `summary.md|json`.

use anyhow::Context;
use limoe_core::kinds::{ANALYZE, EVAL, FINETUNE, TRAIN};
use limoe_core::{Spec, Stage, StageContext};

use crate::report::{verify_pictures, write_run_report};
use crate::run_dirs::RunDirs;

/// Draws the report of the train and eval outputs it needs into its output directory;
/// `limoe run` then publishes it to `reports/<experiment>/`.
pub struct AnalyzeStage;

impl Stage for AnalyzeStage {
    fn kind(&self) -> &'static str {
        ANALYZE
    }

    fn about(&self) -> &'static str {
        "plots and the HTML report of a run's logs (specialisation, routing, losses, eval)"
    }

    fn reads(&self) -> &'static [&'static str] {
        &["analysis"]
    }

    /// An eval output is drawn too when `needs` has one, and every finetune output's scores
    /// are tabled.
    fn needs_kinds(&self, _spec: &Spec) -> Vec<&'static str> {
        vec![TRAIN]
    }

    fn run(&self, ctx: &StageContext) -> anyhow::Result<()> {
        let dirs = RunDirs {
            spec_file: ctx.spec_file.to_owned(),
            train: ctx.input(TRAIN)?.dir.clone(),
            eval: ctx.optional_input(EVAL).map(|a| a.dir.clone()),
            finetune: (ctx.inputs.values())
                .filter(|a| a.kind == FINETUNE)
                .map(|a| (a.id.clone(), a.dir.clone()))
                .collect(),
        };
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
