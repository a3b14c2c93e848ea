//! `limoe runs`: the experiments under the runs directory, each with its stages, how it
//! stands, when it last ran and its key scores.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use limoe_analysis::RunDirs;
use limoe_analysis::names::metric_name;
use limoe_analysis::report::plain_table;
use limoe_core::records::{EvalSummary, SUMMARY_FILE, read_record};
use limoe_core::runner::{LAST_RUN, Outcome, RunReport};
use limoe_core::sweep::{SweepRecord, TrialState, key_metric};

/// The retrieval score listed beside the key metric.
const RETRIEVAL: &str = "all/retrieval_i2t_r1";

/// One experiment as `limoe runs` lists it.
struct Listed {
    name: String,
    stages: String,
    status: String,
    when: String,
    zero_shot: String,
    retrieval: String,
}

/// `limoe runs`: prints a line per experiment directory under `runs_dir`, by name.
pub fn runs(runs_dir: &Path) -> anyhow::Result<ExitCode> {
    let entries = std::fs::read_dir(runs_dir).with_context(|| {
        format!(
            "cannot read the runs directory {}: run a spec with `limoe run SPEC` first, or \
             name another with --runs-dir",
            runs_dir.display()
        )
    })?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let listed: Vec<Listed> = dirs.iter().filter_map(|d| listed(d)).collect();
    if listed.is_empty() {
        println!("no runs under {}", runs_dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let header = Listed {
        name: "experiment".into(),
        stages: "stages".into(),
        status: "status".into(),
        when: "last run (UTC)".into(),
        zero_shot: metric_name("zero_shot_top1").label,
        retrieval: metric_name(RETRIEVAL).label,
    };
    let rows: Vec<Vec<String>> = std::iter::once(&header)
        .chain(&listed)
        .map(|l| {
            [
                &l.name,
                &l.status,
                &l.when,
                &l.zero_shot,
                &l.retrieval,
                &l.stages,
            ]
            .map(String::clone)
            .to_vec()
        })
        .collect();
    print!("{}", plain_table(&rows, false));
    Ok(ExitCode::SUCCESS)
}

/// The listing of one experiment directory; `None` for a directory that holds no run's
/// records (not an experiment).
fn listed(dir: &Path) -> Option<Listed> {
    let name = dir.file_name()?.to_string_lossy().into_owned();
    if SweepRecord::path(dir).is_file() {
        return Some(sweep(name, dir));
    }
    let record = dir.join(LAST_RUN);
    if !record.is_file() {
        return None;
    }
    let when = modified(&record);
    let Ok(report) = RunReport::read(dir) else {
        return Some(Listed {
            name,
            stages: "–".into(),
            status: format!("unreadable {LAST_RUN}"),
            when,
            zero_shot: "–".into(),
            retrieval: "–".into(),
        });
    };
    let stages: Vec<String> = (report.stages.iter())
        .map(|(id, _, outcome)| match outcome {
            Outcome::Cached => format!("{id} (cached)"),
            Outcome::Ran { seconds } => format!("{id} ({seconds:.0}s)"),
            Outcome::Failed { .. } => format!("{id} (failed)"),
        })
        .collect();
    let status = if !report.succeeded() {
        "failed"
    } else if has_unfinished_output(dir) {
        "partial"
    } else {
        "done"
    };
    let summary = RunDirs::from_record(dir)
        .ok()
        .and_then(|d| read_record::<EvalSummary>(&d.eval?, SUMMARY_FILE).ok()?)
        .unwrap_or_default();
    let (zero_shot, retrieval) = scores(&summary);
    Some(Listed {
        name,
        stages: stages.join(", "),
        status: status.into(),
        when,
        zero_shot,
        retrieval,
    })
}

/// A sweep: its trials' states, the best trial's key metric.
fn sweep(name: String, dir: &Path) -> Listed {
    let Ok(mut record) = SweepRecord::read(dir) else {
        return Listed {
            name,
            stages: "–".into(),
            status: "unreadable sweep.json".into(),
            when: modified(&SweepRecord::path(dir)),
            zero_shot: "–".into(),
            retrieval: "–".into(),
        };
    };
    record.refresh();
    let count = |state: TrialState| record.trials.iter().filter(|t| t.state == state).count();
    let ended = record.trials.iter().filter(|t| t.state.ended()).count();
    let status = if count(TrialState::Failed) > 0 {
        "failed"
    } else if ended < record.trials.len() {
        "partial"
    } else {
        "done"
    };
    let best = (record.trials.iter())
        .filter_map(|t| t.summary())
        .max_by(|a, b| {
            let value = |s: &EvalSummary| key_metric(s).map_or(f64::NEG_INFINITY, |m| m.value);
            value(a).total_cmp(&value(b))
        })
        .unwrap_or_default();
    let (zero_shot, retrieval) = scores(&best);
    Listed {
        name,
        stages: format!(
            "sweep of {} trials: {ended} ended, {} failed (best trial's scores)",
            record.trials.len(),
            count(TrialState::Failed)
        ),
        status: status.into(),
        when: record.updated.clone(),
        zero_shot,
        retrieval,
    }
}

/// The key zero-shot score (`dataset: value`) and image→text R@1 of an eval summary.
fn scores(summary: &EvalSummary) -> (String, String) {
    let zero_shot = key_metric(summary)
        .filter(|m| !m.name.starts_with("all/"))
        .map_or("–".into(), |m| {
            let dataset = m.name.split('/').next().unwrap_or_default();
            format!("{:.4} ({dataset})", m.value)
        });
    let retrieval = summary
        .get(RETRIEVAL)
        .map_or("–".into(), |v| format!("{v:.4}"));
    (zero_shot, retrieval)
}

/// True when an output of the experiment was left unfinished (`<stage>-<key>.partial`): a
/// later run was killed, or is running now.
fn has_unfinished_output(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().ends_with(".partial"))
    })
}

/// When a file was last written, RFC 3339 to the second.
fn modified(path: &Path) -> String {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_or("–".into(), |t: SystemTime| {
            humantime::format_rfc3339_seconds(t).to_string()
        })
}
