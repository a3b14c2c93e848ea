//! What the launcher's environment says of this process: its rank and the job's size.

use anyhow::{Context, bail};

/// A process started as one rank of a job of several.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// The launcher, as its environment names it ("mpirun", "PMI", "srun").
    pub launcher: &'static str,
    /// This process's rank.
    pub rank: usize,
    /// Ranks in the job (at least 2).
    pub size: usize,
}

/// The variables each launcher sets: (launcher, rank variable, size variable), first match
/// wins. Open MPI's `mpirun`, then PMI launchers (MPICH's hydra, PMIx), then Slurm's `srun`.
const LAUNCHERS: [(&str, &str, &str); 3] = [
    ("mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
    ("PMI", "PMI_RANK", "PMI_SIZE"),
    ("srun", "SLURM_PROCID", "SLURM_NTASKS"),
];

/// The job this process belongs to according to `env` (a variable lookup, e.g.
/// `|k| std::env::var(k).ok()`); `None` when no launcher set a size above 1, which is a plain
/// single-process run.
pub fn launched(env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<Launch>> {
    for (launcher, rank_var, size_var) in LAUNCHERS {
        let (Some(rank), Some(size)) = (env(rank_var), env(size_var)) else {
            continue;
        };
        let number = |var: &str, text: &str| -> anyhow::Result<usize> {
            text.trim().parse().with_context(|| {
                format!("{launcher} set {var}={text:?}, which is not a number of processes")
            })
        };
        let (rank, size) = (number(rank_var, &rank)?, number(size_var, &size)?);
        if rank >= size {
            bail!(
                "{launcher} set {rank_var}={rank} but {size_var}={size}: a rank must be below the size"
            );
        }
        if size == 1 {
            return Ok(None);
        }
        return Ok(Some(Launch {
            launcher,
            rank,
            size,
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |key| {
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn each_launcher_is_read_and_a_world_of_one_is_a_plain_run() {
        let open_mpi = [("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "4")];
        assert_eq!(
            launched(env(&open_mpi)).unwrap(),
            Some(Launch {
                launcher: "mpirun",
                rank: 1,
                size: 4
            })
        );
        let slurm = [("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2")];
        assert_eq!(launched(env(&slurm)).unwrap().unwrap().launcher, "srun");
        let pmi = [("PMI_RANK", "2"), ("PMI_SIZE", "3")];
        assert_eq!(launched(env(&pmi)).unwrap().unwrap().rank, 2);
        let one = [("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")];
        assert_eq!(launched(env(&one)).unwrap(), None);
        assert_eq!(launched(env(&[])).unwrap(), None);
    }

    #[test]
    fn a_broken_launcher_environment_is_an_error_naming_the_variable() {
        let text = [
            ("OMPI_COMM_WORLD_RANK", "one"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
        ];
        let error = launched(env(&text)).unwrap_err().to_string();
        assert!(error.contains("OMPI_COMM_WORLD_RANK=\"one\""), "{error}");
        let beyond = [("PMI_RANK", "3"), ("PMI_SIZE", "2")];
        let error = launched(env(&beyond)).unwrap_err().to_string();
        assert!(error.contains("PMI_RANK=3 but PMI_SIZE=2"), "{error}");
    }
}
