//! `limoe bench scaling`: training on several ranks of this machine against one process
//! using all its cores. The step is the trainer's for one micro-batch (the tiny experiment,
//! forward against the whole batch's negatives, backward, gradients summed over the ranks;
//! no optimiser): in this process, then as RANKS ranks of one core each under `mpirun` (this
//! binary again, as `limoe bench scaling-rank`), with every expert on every rank and with
//! the experts shared by the ranks. It prints pairs/s, the ratio to one process and the
//! share of each step spent in collectives.

use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use candle_core::Tensor;
use limoe_core::Registry;
use limoe_core::random::splitmix64_next;
use limoe_dist::{Communicator, Solo, World};
use limoe_model::moe::RouteMode;
use limoe_model::{LOG_LOGIT_SCALE, Negatives};
use limoe_ops::pool::on_pool;
use limoe_train::budget::micro_batch;
use limoe_train::data_parallel::gather_rows;
use limoe_train::expert_parallel::RankGroups;
use limoe_train::model_build::build_placed;
use serde::{Deserialize, Serialize};

use crate::step::{inputs, load_with};
use crate::summary::Summary;
use crate::timed::Timed;

/// The experiment whose step is timed, as it is.
const SPEC: &str = "experiments/tiny.yaml";
/// Ranks of the job.
const RANKS: usize = 2;
/// Untimed steps first, then timed ones.
const WARMUP: usize = 3;
const STEPS: usize = 10;
/// Starts the line on which a job's rank 0 reports one measurement.
const REPORT: &str = "limoe-scaling: ";

/// One placement's step.
#[derive(Debug, Deserialize, Serialize, PartialEq)]
struct Measured {
    ranks: usize,
    threads: usize,
    expert_parallel: usize,
    pairs: usize,
    /// Median seconds of a step.
    step: f64,
    /// Median share of a step that rank 0 spent in collectives.
    communication: f64,
}

/// `limoe bench scaling`.
pub fn scaling(registry: &Registry) -> anyhow::Result<()> {
    println!(
        "scaling: the {SPEC} step (forward + backward + gradient all-reduce, no optimiser) \
         on one process and on {RANKS} ranks of this machine; medians of {STEPS} steps \
         after {WARMUP}"
    );
    println!(
        "  {:<36} {:>5} {:>8} {:>8} {:>10} {:>14}",
        "placement", "pairs", "step ms", "pairs/s", "vs 1 rank", "in collectives"
    );
    let one = measure(registry, &Solo, 1)?;
    print_row(&one, &one);
    if !World::JOINS_JOBS {
        println!(
            "  {RANKS} ranks: skipped, this limoe was built without `--features mpi` (`just \
             bench` adds it where Open MPI is installed)"
        );
        return Ok(());
    }
    let exe = std::env::current_exe().context("the path of this limoe binary")?;
    let job = Command::new("mpirun")
        .args(["--oversubscribe", "-np", &RANKS.to_string()])
        .arg(exe)
        .args(["bench", "scaling-rank"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output();
    let job = match job {
        Ok(job) => job,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("  {RANKS} ranks: skipped, `mpirun` is not installed (Open MPI)");
            return Ok(());
        }
        Err(e) => return Err(e).context("cannot start mpirun"),
    };
    let stdout = String::from_utf8_lossy(&job.stdout);
    if !job.status.success() {
        anyhow::bail!(
            "the {RANKS}-rank job failed ({}): {stdout}{}",
            job.status,
            String::from_utf8_lossy(&job.stderr)
        );
    }
    for line in stdout.lines().filter_map(|l| l.strip_prefix(REPORT)) {
        let measured: Measured = serde_json::from_str(line)
            .with_context(|| format!("a rank's report `{line}` does not parse"))?;
        print_row(&measured, &one);
    }
    println!(
        "  in collectives: rank 0's time inside all-reduce, all-gather and all-to-all, waiting \
         for the other rank included"
    );
    Ok(())
}

/// `limoe bench scaling-rank`: one rank's side of [`scaling`]'s job; rank 0 reports.
pub fn scaling_rank(registry: &Registry, comm: &dyn Communicator) -> anyhow::Result<()> {
    for parts in [1, comm.size()] {
        let measured = measure(registry, comm, parts)?;
        if comm.rank() == 0 {
            println!("{REPORT}{}", serde_json::to_string(&measured)?);
        }
    }
    Ok(())
}

fn print_row(measured: &Measured, one: &Measured) {
    let placement = match (measured.ranks, measured.expert_parallel) {
        (1, _) => format!("1 rank x {} threads", measured.threads),
        (ranks, 1) => format!("{ranks} ranks x {} thread(s)", measured.threads),
        (ranks, parts) => format!(
            "{ranks} ranks x {} thread(s), experts / {parts}",
            measured.threads
        ),
    };
    let rate = |m: &Measured| m.pairs as f64 / m.step;
    println!(
        "  {placement:<36} {:>5} {:>8.1} {:>8.0} {:>9.2}x {:>13.0}%",
        measured.pairs,
        measured.step * 1e3,
        rate(measured),
        rate(measured) / rate(one),
        100.0 * measured.communication
    );
}

/// Times the step on `comm`'s ranks with `parts` of them sharing the experts.
fn measure(registry: &Registry, comm: &dyn Communicator, parts: usize) -> anyhow::Result<Measured> {
    let spec = load_with(registry, SPEC, &[])?;
    let timed = Timed::new(comm);
    let groups = RankGroups::new(&timed, parts)?;
    let built = build_placed(&spec, groups.group())?;
    let pairs = micro_batch(&spec);
    let per_rank = pairs / comm.size();
    let (images, texts) = inputs(&spec.model, per_rank, &built.device)?;
    let gather = |image: &Tensor, text: &Tensor| {
        Ok((gather_rows(&timed, image)?, gather_rows(&timed, text)?))
    };
    let negatives = Negatives {
        gather: &gather,
        scale_gradient: true,
    };
    let (mut steps, mut shares) = (Vec::new(), Vec::new());
    for i in 0..WARMUP + STEPS {
        timed.take_seconds();
        let start = Instant::now();
        let mode = RouteMode::Train {
            noise_seed: splitmix64_next(i as u64),
            first_example: (comm.rank() * per_rank) as u64,
        };
        let grads = on_pool(|| -> candle_core::Result<_> {
            let output = (built.model).forward_with_negatives(&images, &texts, mode, &negatives)?;
            (output.objective + output.aux.affine(1.0 / comm.size() as f64, 0.0)?)?.backward()
        })?;
        drop(groups.reduce_grads(&timed, &built.vars, &grads, &[LOG_LOGIT_SCALE])?);
        let seconds = start.elapsed().as_secs_f64();
        if i >= WARMUP {
            steps.push(seconds);
            shares.push(timed.take_seconds() / seconds);
        }
    }
    let median = |samples: &[f64]| Summary::of(samples).map(|s| s.median).context("no steps");
    Ok(Measured {
        ranks: comm.size(),
        threads: rayon::current_num_threads(),
        expert_parallel: parts,
        pairs,
        step: median(&steps)?,
        communication: median(&shares)?,
    })
}
