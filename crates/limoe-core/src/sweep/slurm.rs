//! The Slurm executor: `<runs>/<experiment>/sweep.sbatch`, a job array with one task per
//! trial (resources from the spec's `executor.slurm`), submitted with `sbatch` when it is on
//! the PATH.

use std::fmt::Write as _;
use std::path::{PathBuf, absolute};
use std::process::Command;

use anyhow::{Context, bail};

use super::events::SweepEvent;
use super::executor::{Executor, SweepContext};
use super::record::{SweepRecord, TRIAL_LOG, TRIALS_DIR, TrialState};
use crate::files::write_atomic;

/// File name of the array script inside the experiment directory.
const SCRIPT: &str = "sweep.sbatch";

/// Trials as the tasks of a Slurm job array.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slurm;

impl Slurm {
    /// The sbatch script running the trials of `record` that are not cached (in order).
    pub fn script(&self, sweep: &SweepContext, record: &SweepRecord) -> anyhow::Result<String> {
        let ids: Vec<&str> = record
            .trials
            .iter()
            .filter(|t| t.state != TrialState::Cached)
            .map(|t| t.id.as_str())
            .collect();
        if ids.is_empty() {
            bail!("every trial is cached; there is nothing to submit");
        }
        let exe = std::env::current_exe().context("cannot find the limoe binary")?;
        let runs = absolute(sweep.runs_dir)?;
        let trials = absolute(sweep.experiment_dir)?.join(TRIALS_DIR);
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        let spec = &sweep.sweep.base.spec;
        let slurm = &spec.executor.slurm;
        let mut s = String::new();
        let mut line = |text: String| {
            s.push_str(&text);
            s.push('\n');
        };
        line("#!/bin/bash".into());
        line(format!(
            "# Written by `limoe sweep --executor slurm` for {}: one array task per trial.",
            sweep.sweep.file.display()
        ));
        line(format!("#SBATCH --job-name=limoe-{}", spec.name));
        line(format!("#SBATCH --array=0-{}", ids.len() - 1));
        line(format!(
            "#SBATCH --output={}",
            trials.join("slurm-%A_%a.out").display()
        ));
        line(format!("#SBATCH --cpus-per-task={}", slurm.cpus));
        line(format!("#SBATCH --mem={}", slurm.mem));
        line(format!("#SBATCH --time={}", slurm.time));
        if let Some(partition) = &slurm.partition {
            line(format!("#SBATCH --partition={partition}"));
        }
        if slurm.gpus > 0 {
            line(format!("#SBATCH --gres=gpu:{}", slurm.gpus));
        }
        line("set -euo pipefail".into());
        line("TRIALS=(".into());
        for id in &ids {
            line(format!("  {}", quote(id)));
        }
        line(")".into());
        line("ID=\"${TRIALS[$SLURM_ARRAY_TASK_ID]}\"".into());
        line(format!(
            "export RAYON_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-{}}}\"",
            slurm.cpus
        ));
        line(format!("cd {}", quote(&cwd.display().to_string())));
        line(format!(
            "DIR={}/\"$ID\"",
            quote(&trials.display().to_string())
        ));
        line("mkdir -p \"$DIR\"".into());
        let mut command = format!(
            "{} --runs-dir {} -q run {} --trial \"$ID\"",
            quote(&exe.display().to_string()),
            quote(&runs.display().to_string()),
            quote(&absolute(&sweep.sweep.file)?.display().to_string()),
        );
        for set in &sweep.sweep.sets {
            let _ = write!(command, " --set {}", quote(set));
        }
        line(format!("{command} 2>&1 | tee \"$DIR/{TRIAL_LOG}\""));
        Ok(s)
    }
}

impl Executor for Slurm {
    fn name(&self) -> &'static str {
        "slurm"
    }

    /// Writes the script and submits it with `sbatch` (or only writes it when there is no
    /// `sbatch`); the trials it holds become `submitted`.
    fn run_trials(
        &self,
        sweep: &SweepContext,
        record: &mut SweepRecord,
        events: &mut dyn FnMut(SweepEvent),
    ) -> anyhow::Result<()> {
        if record.trials.iter().all(|t| t.state == TrialState::Cached) {
            events(SweepEvent::NothingToSubmit);
            return Ok(());
        }
        let text = self.script(sweep, record)?;
        let path = absolute(sweep.experiment_dir)?.join(SCRIPT);
        write_atomic(&path, text.as_bytes())?;
        std::fs::create_dir_all(sweep.experiment_dir.join(TRIALS_DIR))?;
        for trial in &mut record.trials {
            if trial.state == TrialState::Pending {
                trial.state = TrialState::Submitted;
            }
        }
        let Some(sbatch) = find_on_path("sbatch") else {
            events(SweepEvent::Submitted {
                script: &path,
                sbatch_output: None,
            });
            return Ok(());
        };
        let out = Command::new(&sbatch)
            .arg(&path)
            .output()
            .with_context(|| format!("cannot run {}", sbatch.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "sbatch {} failed ({}): {}{}",
                path.display(),
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        events(SweepEvent::Submitted {
            script: &path,
            sbatch_output: Some(&stdout),
        });
        Ok(())
    }
}

/// The first executable file called `name` in a directory of `PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `text` quoted for bash: inside single quotes, each `'` as `'\''`.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quotes_for_bash() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's $x"), r"'it'\''s $x'");
    }
}
