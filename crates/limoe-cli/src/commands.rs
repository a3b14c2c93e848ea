//! The subcommands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use limoe_core::runner::{Outcome, Plan, PlannedStage, Runner, Status};
use limoe_core::spec::Spec;
use limoe_core::sweep::{load_trial, trial_dir};
use limoe_core::{LoadedSpec, Progress, Registry};
use limoe_dist::Communicator;
use limoe_train::budget::{self, Placement};
use limoe_train::placement;

use crate::load::{INVALID_SPEC, load};

/// How `limoe run` runs.
pub struct RunOptions<'a> {
    /// Stages to rerun regardless of the cache.
    pub force: &'a [String],
    /// Print the plan and stop.
    pub dry_run: bool,
    /// No progress bars.
    pub quiet: bool,
    /// Run this trial of the spec's sweep instead of the spec itself.
    pub trial: Option<&'a str>,
    /// The ranks of the job this process is one of (a world of one for a plain launch).
    pub comm: &'a dyn Communicator,
}

/// `limoe run` (of the spec, or with `--trial` of one trial of its sweep).
pub fn run(
    registry: &Registry,
    runs_dir: &Path,
    reports_dir: &Path,
    spec: &Path,
    sets: &[String],
    opts: &RunOptions,
) -> anyhow::Result<ExitCode> {
    let (loaded, trial) = match opts.trial {
        Some(id) => match load_trial(spec, sets, id, registry) {
            Ok(t) => (t.loaded, Some(t.trial.id)),
            Err(e) => {
                eprintln!("{e}");
                return Ok(ExitCode::from(INVALID_SPEC));
            }
        },
        None => match load(registry, spec, sets) {
            Ok(loaded) => (loaded, None),
            Err(code) => return Ok(code),
        },
    };
    if trial.is_none() && !loaded.spec.sweep.is_empty() {
        tracing::warn!(
            "{} has a sweep; `limoe run` runs the spec as written, without it \
             (`limoe sweep` runs the trials, `--trial ID` one of them)",
            spec.display()
        );
    }
    let runner = Runner::new(registry, runs_dir, Progress::new(!opts.quiet)).with_comm(opts.comm);
    if !opts.dry_run {
        runner.prepare(&loaded)?;
    }
    let mut plan = runner.plan(&loaded, opts.force)?;
    if let Some(id) = &trial {
        let dir = trial_dir(&plan.experiment_dir, id);
        plan = plan.recording_in(dir);
    }
    if opts.dry_run {
        print_plan(&loaded, &plan, Placement::SOLO);
        return Ok(ExitCode::SUCCESS);
    }
    let report = runner.execute(&loaded, &plan)?;
    if opts.comm.rank() > 0 {
        // Rank 0 prints the stages and publishes the report.
        return Ok(match report.succeeded() {
            true => ExitCode::SUCCESS,
            false => ExitCode::FAILURE,
        });
    }
    for (id, dir, outcome) in &report.stages {
        match outcome {
            Outcome::Cached => println!("{id:<12} cached     {}", dir.display()),
            Outcome::Ran { seconds } => {
                println!("{id:<12} done {seconds:>5.1}s {}", dir.display())
            }
            Outcome::Failed { error } => {
                eprintln!("error: {error}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    crate::report::publish_analysis(&plan, reports_dir, &loaded.spec.name, trial.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

/// `limoe validate`.
pub fn validate(
    registry: &Registry,
    specs: &[PathBuf],
    sets: &[String],
) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for spec in specs {
        match load(registry, spec, sets) {
            Ok(loaded) => println!(
                "ok: {} (experiment `{}`, {} stage(s))",
                spec.display(),
                loaded.spec.name,
                loaded.spec.stages.len()
            ),
            Err(_) => failed = true,
        }
    }
    Ok(if failed {
        ExitCode::from(INVALID_SPEC)
    } else {
        ExitCode::SUCCESS
    })
}

/// `limoe plan`, for training on `world` ranks with `expert_parallel` of them sharing the
/// experts (`train.expert_parallel` when `None`).
pub fn plan(
    registry: &Registry,
    runs_dir: &Path,
    spec: &Path,
    sets: &[String],
    world: usize,
    expert_parallel: Option<usize>,
) -> anyhow::Result<ExitCode> {
    let loaded = match load(registry, spec, sets) {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let placement = placement(&loaded.spec, world, expert_parallel)?;
    let runner = Runner::new(registry, runs_dir, Progress::new(false));
    let plan = runner.plan(&loaded, &[])?;
    print_plan(&loaded, &plan, placement);
    Ok(ExitCode::SUCCESS)
}

/// The placement `limoe plan --world N --expert-parallel P` asks for, refused where training
/// could not run on it.
fn placement(
    spec: &Spec,
    world: usize,
    expert_parallel: Option<usize>,
) -> anyhow::Result<Placement> {
    let (parts, sharing) = match expert_parallel {
        Some(parts) => (parts, format!("--expert-parallel {parts}")),
        None => {
            let parts = spec.train.expert_parallel;
            let named = format!("train.expert_parallel {parts} (the default of --expert-parallel)");
            (parts, named)
        }
    };
    let placement = Placement {
        world,
        expert_parallel: parts,
    };
    let named = placement::Named {
        world: format!("--world {world} ranks"),
        expert_parallel: sharing,
    };
    placement::check(spec, placement, &named)?;
    Ok(placement)
}

fn print_plan(loaded: &LoadedSpec, plan: &Plan, placement: Placement) {
    println!(
        "experiment `{}` -> {}",
        loaded.spec.name,
        plan.experiment_dir.display()
    );
    let needs_of = |s: &PlannedStage| match s.needs.is_empty() {
        true => "-".to_owned(),
        false => s.needs.join(","),
    };
    let width = (plan.stages.iter())
        .map(|s| needs_of(s).len())
        .fold(20, usize::max);
    println!(
        "  {:<12} {:<10} {:<width$} {:<17} status",
        "stage", "kind", "needs", "key"
    );
    for s in &plan.stages {
        let needs = needs_of(s);
        let status = match s.status {
            Status::Cached => "cached",
            Status::Pending => "will run",
            Status::Forced => "will rerun (--force)",
        };
        println!(
            "  {:<12} {:<10} {needs:<width$} {:<17} {status}",
            s.id, s.kind, s.key
        );
    }
    let m = &loaded.spec.model;
    let blocks = m.moe.moe_blocks(m.depth);
    let reads = match m.classifier {
        Some(head) => format!("{} classes ({:?} cross-entropy)", head.classes, head.loss),
        None => format!("text {} tokens", m.text_length),
    };
    println!(
        "model: {:?} {:?}, width {}, depth {}, mlp {}, heads {}, patch {} on {}px, {reads}",
        m.arch, m.size, m.width, m.depth, m.mlp_dim, m.heads, m.patch, m.image_size
    );
    let groups = match m.moe.examples_per_group(m.tokens_per_example()) {
        Some(examples) => format!("groups of {examples} examples"),
        None => "the batch (each rank's share) as one group".to_owned(),
    };
    println!(
        "moe: {} experts, top-{}, blocks {:?}, capacity {}/{} (train/eval), bpr {}, routing {groups}",
        m.moe.experts,
        m.moe.top_k,
        blocks,
        m.moe.capacity.train,
        m.moe
            .capacity
            .eval
            .map_or_else(|| "unlimited".into(), |c| c.to_string()),
        m.moe.bpr
    );
    let spec = &loaded.spec;
    let cost = budget::spec_cost(spec, placement);
    let available = budget::available_bytes(spec.train.device);
    for line in budget::describe(spec, &cost, available) {
        println!("{line}");
    }
}

/// `limoe stages`.
pub fn stages(registry: &Registry) -> anyhow::Result<ExitCode> {
    for kind in registry.kinds() {
        println!("{:<12} {}", kind.kind(), kind.about());
    }
    Ok(ExitCode::SUCCESS)
}
