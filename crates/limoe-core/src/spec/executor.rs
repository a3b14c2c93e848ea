//! The `executor` section: where `limoe sweep` runs trials when not on this machine.
//!
//! ```yaml
//! executor:
//!   slurm:
//!     partition: gpu       # left out: the cluster's default partition
//!     gpus: 1              # default 0 (no `--gres`)
//!     cpus: 8              # default 4 (`--cpus-per-task`)
//!     time: "12:00:00"     # HH:MM:SS or D-HH:MM:SS; default 04:00:00
//!     mem: 32G             # a number with K, M, G or T; default 16G
//! ```
//!
//! Nothing here is part of any cache key.

use serde::{Deserialize, Serialize};

use super::check::Checker;
use super::path::KeyPath;

/// The whole `executor` section.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorSpec {
    /// Resources of each Slurm array task (`limoe sweep --executor slurm`).
    pub slurm: SlurmSpec,
}

/// Resources of one Slurm array task (one trial).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmSpec {
    /// `--partition`; the cluster's default when left out.
    pub partition: Option<String>,
    /// GPUs per trial (`--gres=gpu:N`); 0 asks for none.
    pub gpus: u32,
    /// CPU cores per trial (`--cpus-per-task`).
    pub cpus: u32,
    /// Wall-clock limit per trial, `HH:MM:SS` or `D-HH:MM:SS`.
    pub time: String,
    /// Memory per trial, e.g. `16G`.
    pub mem: String,
}

impl Default for SlurmSpec {
    fn default() -> Self {
        SlurmSpec {
            partition: None,
            gpus: 0,
            cpus: 4,
            time: "04:00:00".into(),
            mem: "16G".into(),
        }
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
        c.at_least_one(&here, &[("cpus", slurm.cpus as usize)]);
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
