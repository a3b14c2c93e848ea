//! The Slurm executor: `<runs>/<experiment>/sweep.sbatch`, a job array with one task per
//! trial (resources from the spec's `executor.slurm`), submitted with `sbatch` when it is on
//! the PATH.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use limoe_core::files::write_atomic;
use limoe_core::sweep::{Sweep, SweepRecord, TRIAL_LOG, TRIALS_DIR, TrialState};

use crate::sweep::{CANDLE_THREADS, SweepOptions, absolute};

/// File name of the array script inside the experiment directory.
pub(crate) const SCRIPT: &str = "sweep.sbatch";

/// The sbatch script running the trials of `record` that are not cached (in order).
pub(crate) fn script(
    sweep: &Sweep,
    opts: &SweepOptions,
    record: &SweepRecord,
    experiment_dir: &Path,
) -> anyhow::Result<String> {
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
    let runs = absolute(opts.runs_dir)?;
    let trials = absolute(experiment_dir)?.join(TRIALS_DIR);
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let slurm = &sweep.base.spec.executor.slurm;
    let mut s = String::new();
    let mut line = |text: String| {
        s.push_str(&text);
        s.push('\n');
    };
    line("#!/bin/bash".into());
    line(format!(
        "# Written by `limoe sweep --executor slurm` for {}: one array task per trial.",
        opts.spec.display()
    ));
    line(format!("#SBATCH --job-name=limoe-{}", sweep.base.spec.name));
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
    line(format!("export CANDLE_NUM_THREADS={CANDLE_THREADS}"));
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
        quote(&absolute(opts.spec)?.display().to_string()),
    );
    for set in opts.sets {
        let _ = write!(command, " --set {}", quote(set));
    }
    line(format!("{command} 2>&1 | tee \"$DIR/{TRIAL_LOG}\""));
    Ok(s)
}

/// Writes the script and submits it with `sbatch` (or says where it is when there is no
/// `sbatch`); the trials it holds become `submitted`.
pub(crate) fn submit(
    sweep: &Sweep,
    opts: &SweepOptions,
    record: &mut SweepRecord,
    experiment_dir: &Path,
) -> anyhow::Result<()> {
    if record.trials.iter().all(|t| t.state == TrialState::Cached) {
        println!("every trial is cached; nothing to submit");
        return Ok(());
    }
    let text = script(sweep, opts, record, experiment_dir)?;
    let path = absolute(experiment_dir)?.join(SCRIPT);
    write_atomic(&path, text.as_bytes())?;
    std::fs::create_dir_all(experiment_dir.join(TRIALS_DIR))?;
    for trial in &mut record.trials {
        if trial.state == TrialState::Pending {
            trial.state = TrialState::Submitted;
        }
    }
    let Some(sbatch) = find_on_path("sbatch") else {
        println!(
            "sbatch is not on the PATH, so nothing was submitted; the job script is {}\n\
             submit it on the cluster with `sbatch {}`",
            path.display(),
            path.display()
        );
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
    print!("{stdout}");
    println!("script: {}", path.display());
    Ok(())
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
