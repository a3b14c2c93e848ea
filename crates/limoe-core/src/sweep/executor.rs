//! Where a sweep's trials run: the [`Executor`] trait its local and Slurm executors
//! implement. A trial is a `limoe run` process, which sets its own training environment.

use std::path::{Path, PathBuf};

use anyhow::bail;

use super::events::SweepEvent;
use super::load::Sweep;
use super::record::SweepRecord;

/// What the executors need to know of the sweep they run.
#[derive(Clone, Copy, Debug)]
pub struct SweepContext<'a> {
    /// The loaded sweep (its spec file and `--set` arguments are passed to every trial).
    pub sweep: &'a Sweep,
    /// The runs directory, absolute, so that trials find it from anywhere.
    pub runs_dir: &'a Path,
    /// `<runs>/<experiment>`, where `sweep.json` and the trials' records go.
    pub experiment_dir: &'a Path,
}

/// Runs the trials of a sweep as `limoe run SPEC --trial ID` somewhere.
pub trait Executor {
    /// Its name in `sweep.json`.
    fn name(&self) -> &'static str;

    /// Runs (or hands off) every pending trial of `record`, updating their states as they
    /// end and telling `events` about them.
    fn run_trials(
        &self,
        sweep: &SweepContext,
        record: &mut SweepRecord,
        events: &mut dyn FnMut(SweepEvent),
    ) -> anyhow::Result<()>;
}

/// Refuses trials of `ranks` ranks (as `setting` of the spec `file` gives them) when the
/// running binary cannot join them (`built_with_mpi` false): every trial would fail alike,
/// after waiting for its turn.
pub(super) fn check_ranks(
    file: &Path,
    setting: &str,
    ranks: usize,
    built_with_mpi: bool,
) -> anyhow::Result<()> {
    if ranks > 1 && !built_with_mpi {
        bail!(
            "{}: {setting} gives each trial {ranks} ranks, but this limoe was built without MPI, \
             so they could not join; rebuild it with `cargo build --release -p limoe-cli \
             --features mpi`, or give each trial 1 rank",
            file.display()
        );
    }
    Ok(())
}

/// The first executable file called `name` in a directory of `PATH`.
pub(super) fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_ranks_need_a_build_that_joins_them() {
        let file = Path::new("sweep.yaml");
        assert!(check_ranks(file, "executor.local.ranks", 1, false).is_ok());
        assert!(check_ranks(file, "executor.local.ranks", 2, true).is_ok());
        let error = check_ranks(file, "executor.local.ranks", 2, false)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("sweep.yaml: executor.local.ranks gives each trial 2 ranks")
                && error.contains("--features mpi"),
            "{error}"
        );
    }
}
