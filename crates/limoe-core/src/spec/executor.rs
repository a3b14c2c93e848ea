//! The `executor` section: how `limoe sweep` runs each trial, on this machine or on Slurm.
//!
//! ```yaml
//! executor:
//!   local:
//!     ranks: 2             # default 1 (a plain process); more: `mpirun -np N`
//!   slurm:
//!     partition: gpu       # left out: the cluster's default partition
//!     nodes: 2             # default 1 (`--nodes`)
//!     ntasks_per_node: 4   # default 1 (`--ntasks-per-node`): ranks per node
//!     gpus_per_node: 4     # default 0 (no `--gres`); `gpus` is its older name
//!     cpus: 8              # default 4 (`--cpus-per-task`): threads per rank
//!     time: "12:00:00"     # HH:MM:SS or D-HH:MM:SS; default 04:00:00
//!     mem: 32G             # per node; a number with K, M, G or T; default 16G
//!     mpi: pmix            # default pmix (`srun --mpi`, for trials of several ranks)
//! ```
//!
//! A trial of several ranks is one data-parallel `limoe run` (`srun` or `mpirun` starts every
//! rank). Nothing here is part of any cache key, and keys left at their defaults are not
//! written out, so the resolved spec of a spec that does not give them stays as it was.

use serde::{Deserialize, Serialize};

use super::check::Checker;
use super::path::KeyPath;

/// The whole `executor` section.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorSpec {
    /// Resources of each Slurm array task (`limoe sweep --executor slurm`).
    pub slurm: SlurmSpec,
    /// How each trial of a local sweep runs.
    #[serde(skip_serializing_if = "LocalSpec::is_default")]
    pub local: LocalSpec,
}

/// How each trial of a local sweep (`limoe sweep`, `--executor local`) runs.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LocalSpec {
    /// Ranks of each trial: 1 is a plain process, more run it as `mpirun -np N`.
    pub ranks: u32,
}

impl Default for LocalSpec {
    fn default() -> Self {
        LocalSpec { ranks: 1 }
    }
}

impl LocalSpec {
    fn is_default(&self) -> bool {
        self == &LocalSpec::default()
    }
}

/// Resources of one Slurm array task (one trial).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmSpec {
    /// `--partition`; the cluster's default when left out.
    pub partition: Option<String>,
    /// Nodes per trial (`--nodes`).
    #[serde(skip_serializing_if = "is_one")]
    pub nodes: u32,
    /// Ranks per node (`--ntasks-per-node`); each is a task of the trial's `srun`.
    #[serde(skip_serializing_if = "is_one")]
    pub ntasks_per_node: u32,
    /// GPUs per node (`--gres=gpu:N`, which Slurm counts per node); 0 asks for none.
    #[serde(skip_serializing_if = "is_zero")]
    pub gpus_per_node: u32,
    /// The older name of `gpus_per_node`, kept so that specs giving it stay as they were.
    pub gpus: u32,
    /// CPU cores per rank (`--cpus-per-task`).
    pub cpus: u32,
    /// Wall-clock limit per trial, `HH:MM:SS` or `D-HH:MM:SS`.
    pub time: String,
    /// Memory per node, e.g. `16G`.
    pub mem: String,
    /// The `srun --mpi` plugin that starts the ranks of a trial of several; `pmix` is the one
    /// Open MPI from Debian's packages joins (`pmi2` is what MPICH's builds usually want).
    #[serde(skip_serializing_if = "is_pmix")]
    pub mpi: String,
}

/// The `mpi` plugin a spec gets when it names none.
const DEFAULT_MPI: &str = "pmix";

fn is_one(n: &u32) -> bool {
    *n == 1
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_pmix(plugin: &str) -> bool {
    plugin == DEFAULT_MPI
}

impl Default for SlurmSpec {
    fn default() -> Self {
        SlurmSpec {
            partition: None,
            nodes: 1,
            ntasks_per_node: 1,
            gpus_per_node: 0,
            gpus: 0,
            cpus: 4,
            time: "04:00:00".into(),
            mem: "16G".into(),
            mpi: DEFAULT_MPI.into(),
        }
    }
}

impl SlurmSpec {
    /// Ranks of each trial: `nodes` x `ntasks_per_node`.
    pub fn ranks(&self) -> usize {
        self.nodes as usize * self.ntasks_per_node as usize
    }

    /// GPUs per node, by either name (the checks allow only one of them).
    pub fn node_gpus(&self) -> u32 {
        self.gpus_per_node.max(self.gpus)
    }
}

impl ExecutorSpec {
    /// True when every setting is the default (the section is then not written out).
    pub fn is_default(&self) -> bool {
        self == &ExecutorSpec::default()
    }

    pub(super) fn check(&self, at: &KeyPath, c: &mut Checker) {
        let slurm = &self.slurm;
        let here = at.key("slurm");
        if let Some(partition) = &slurm.partition {
            let ok = !partition.is_empty()
                && partition
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.' | ','));
            c.require(ok, &here.key("partition"), || {
                format!("partition `{partition}` must be letters, digits, `_`, `-`, `.` or `,`")
            });
        }
        c.at_least_one(
            &here,
            &[
                ("nodes", slurm.nodes as usize),
                ("ntasks_per_node", slurm.ntasks_per_node as usize),
                ("cpus", slurm.cpus as usize),
            ],
        );
        c.at_least_one(&at.key("local"), &[("ranks", self.local.ranks as usize)]);
        if slurm.gpus > 0 && slurm.gpus_per_node > 0 {
            c.error(
                &here.key("gpus"),
                format!(
                    "both `gpus` ({}) and `gpus_per_node` ({}) are given; they are one setting",
                    slurm.gpus, slurm.gpus_per_node
                ),
                Some("keep `gpus_per_node` and remove `gpus`".into()),
            );
        }
        let plugin = &slurm.mpi;
        let ok = !plugin.is_empty()
            && (plugin.chars()).all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-'));
        if !ok {
            c.error(
                &here.key("mpi"),
                format!("mpi `{plugin}` is not an `srun --mpi` plugin name"),
                Some(
                    "write the name `srun --mpi=list` shows, e.g. pmix (Open MPI) or pmi2 \
                     (MPICH)"
                        .into(),
                ),
            );
        }
        if !is_slurm_time(&slurm.time) {
            c.error(
                &here.key("time"),
                format!("time `{}` is not a Slurm time limit", slurm.time),
                Some("write HH:MM:SS or D-HH:MM:SS, e.g. \"12:00:00\" or \"2-00:00:00\"".into()),
            );
        }
        if !is_slurm_mem(&slurm.mem) {
            c.error(
                &here.key("mem"),
                format!("mem `{}` is not a Slurm memory size", slurm.mem),
                Some("write a whole number with K, M, G or T, e.g. 16G".into()),
            );
        }
    }
}

/// `HH:MM:SS` or `D-HH:MM:SS` with minutes and seconds below 60.
fn is_slurm_time(text: &str) -> bool {
    let (days, clock) = match text.split_once('-') {
        Some((days, clock)) => (Some(days), clock),
        None => (None, text),
    };
    let number = |s: &str, max: u32| {
        !s.is_empty()
            && s.len() <= 4
            && s.chars().all(|c| c.is_ascii_digit())
            && s.parse::<u32>().is_ok_and(|n| n < max)
    };
    let parts: Vec<&str> = clock.split(':').collect();
    days.is_none_or(|d| number(d, 10_000))
        && parts.len() == 3
        && number(parts[0], if days.is_some() { 24 } else { 10_000 })
        && number(parts[1], 60)
        && number(parts[2], 60)
}

/// A positive whole number followed by K, M, G or T.
fn is_slurm_mem(text: &str) -> bool {
    let Some(number) = text.strip_suffix(['K', 'M', 'G', 'T']) else {
        return false;
    };
    !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit())
        && number.parse::<u64>().is_ok_and(|n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_times_and_memory_sizes() {
        for ok in ["04:00:00", "120:00:00", "1-00:00:00", "2-23:59:59"] {
            assert!(is_slurm_time(ok), "{ok}");
        }
        for bad in ["4h", "04:00", "1-24:00:00", "00:60:00", "-01:00:00", ""] {
            assert!(!is_slurm_time(bad), "{bad}");
        }
        for ok in ["16G", "512M", "1T"] {
            assert!(is_slurm_mem(ok), "{ok}");
        }
        for bad in ["16", "16GB", "G", "0G", "1.5G"] {
            assert!(!is_slurm_mem(bad), "{bad}");
        }
    }
}
