//! `limoe`: run, validate and plan LIMoE experiment specs.

mod checkpoint;
mod claim_pictures;
mod classify;
mod commands;
mod compare;
mod data;
mod embed;
mod load;
mod process_env;
mod registry;
mod report;
mod route;
mod runs;
mod sweep;
mod tensorboard;
mod trained;
mod verify;

use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use limoe_dist::World;

/// Reproduce and extend LIMoE: experiments are YAML specs chaining cached stages.
#[derive(Parser)]
#[command(name = "limoe", version, about, propagate_version = true)]
struct Cli {
    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only warnings and errors; no progress bars.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Where stage outputs are kept.
    #[arg(long, global = true, default_value = "runs", value_name = "DIR")]
    runs_dir: PathBuf,
    /// Where reports are published.
    #[arg(long, global = true, default_value = "reports", value_name = "DIR")]
    reports_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

/// Options shared by the commands that load one spec.
#[derive(clap::Args)]
struct SpecArgs {
    /// The experiment spec (YAML).
    spec: PathBuf,
    /// Override a value, e.g. `--set model.moe.experts=16` (the value is YAML).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    sets: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a spec's stages in order; stages with a complete output for their key are skipped.
    Run {
        #[command(flatten)]
        spec: SpecArgs,
        /// Rerun this stage even if its output is cached (repeatable).
        #[arg(long, value_name = "STAGE")]
        force: Vec<String>,
        /// Print the plan and stop.
        #[arg(long)]
        dry_run: bool,
        /// Run one trial of the spec's sweep (its id as `limoe sweep` lists it); records go
        /// to `<runs>/<experiment>/trials/<id>/`.
        #[arg(long, value_name = "ID")]
        trial: Option<String>,
    },
    /// Expand the spec's `sweep` into trials and run them: every trial is validated first,
    /// stages shared by several trials run once, then the trials (cached ones are skipped).
    Sweep {
        #[command(flatten)]
        spec: SpecArgs,
        /// Trials run at once by the local executor; each gets cores / N threads.
        #[arg(long, default_value_t = 1, value_name = "N")]
        jobs: usize,
        /// Where the trials run.
        #[arg(long, value_enum, default_value_t = sweep::ExecutorKind::Local)]
        executor: sweep::ExecutorKind,
        /// With `--executor slurm`: wait for the array's tasks to end, recording each trial as
        /// it ends; Ctrl-C cancels them (scancel).
        #[arg(long)]
        wait: bool,
        /// Run nothing: bring `sweep.json` of the spec's last sweep up to date (from squeue,
        /// sacct and the trials' records), print its table and redraw its report.
        #[arg(long, conflicts_with_all = ["dry_run", "wait"])]
        status: bool,
        /// Print the trials and the plan (or the Slurm script) and stop.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check specs (every error at once, with file:line:column); runs nothing.
    Validate {
        /// Spec files.
        #[arg(required = true)]
        specs: Vec<PathBuf>,
        /// Override a value in every spec, e.g. `--set train.steps=10`.
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
    },
    /// Show the stages that would run and those that are cached, with the model's shape.
    Plan {
        #[command(flatten)]
        spec: SpecArgs,
        /// Plan training on N ranks: memory per device and communication per step.
        #[arg(long, default_value_t = NonZeroUsize::MIN, value_name = "N")]
        world: NonZeroUsize,
        /// Ranks that share one copy of the experts, each holding experts / P of every MoE
        /// block [default: the spec's train.expert_parallel].
        #[arg(long, value_name = "P")]
        expert_parallel: Option<NonZeroUsize>,
    },
    /// Draw the report of a finished run into `<reports>/<experiment>/index.html`.
    Report {
        /// The run: a directory such as `runs/tiny`, or an experiment name under --runs-dir.
        run: PathBuf,
    },
    /// Print the `tensorboard` command that shows a run's training live (every trial of a
    /// sweep under its id); the trainer writes the events to `<train output>/tensorboard/`.
    Tensorboard {
        /// The run or sweep: a directory such as `runs/tiny`, or an experiment name under
        /// --runs-dir.
        run: PathBuf,
    },
    /// List the experiments under --runs-dir: stages, status, when each last ran, key scores.
    Runs,
    /// Print the metrics of several runs side by side (plain text by default).
    Compare {
        /// The runs: directories such as `runs/tiny`, or experiment names under --runs-dir.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// As JSON.
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// As Markdown tables.
        #[arg(long)]
        markdown: bool,
    },
    /// Re-hash every file the manifests of a run's stage outputs list, naming what changed
    /// on disk since the stages wrote it.
    Verify {
        /// The run: a directory such as `runs/tiny`, or an experiment name under --runs-dir.
        run: PathBuf,
    },
    /// Work with a run's checkpoints.
    Checkpoint {
        #[command(subcommand)]
        command: CheckpointCommand,
    },
    /// List the registered stage kinds.
    Stages,
    /// Measure throughput of the named targets (every target when none is named).
    Bench {
        /// What to measure.
        #[arg(value_enum)]
        targets: Vec<limoe_bench::Target>,
        /// Write the PyTorch comparison's inputs (weights, batch, limoe's loss and gradients)
        /// to DIR/<case>/ for `python3 bench/reference.py DIR/<case> --check`.
        #[arg(long, value_name = "DIR")]
        export: Option<PathBuf>,
    },
    /// Fetch the raw packages of real data sets (a spec's sources, or all) into data/raw/.
    Data {
        /// The experiment spec whose sources to fetch; every fetchable source when left out.
        spec: Option<PathBuf>,
        /// Override a value in the spec, e.g. `--set data.root=/tmp/data`.
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
        /// Only these source kinds (repeatable), e.g. `--only emoji`.
        #[arg(long, value_name = "SOURCE")]
        only: Vec<String>,
    },
    /// Classify PNG or JPEG files zero-shot against class names, with a trained model.
    Classify(classify::ClassifyArgs),
    /// Write the unit embeddings of images or texts to Parquet, resuming a killed run.
    Embed(embed::EmbedArgs),
    /// Draw the expert each patch of an image goes to, per MoE block.
    Route(route::RouteArgs),
}

#[derive(Subcommand)]
enum CheckpointCommand {
    /// Write one checkpoint's parameters as a single safetensors file, for evaluation or use
    /// on one device: no optimiser state, every expert under its global index whatever the
    /// placement it trained on, the step and the run's spec in the file's metadata.
    Consolidate {
        #[command(flatten)]
        model: checkpoint::ModelArgs,
        /// The file to write (replaced whole, or left as it was).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
}

fn main() -> ExitCode {
    quiet_broken_pipes();
    process_env::configure();
    let cli = Cli::parse();
    // Only `run` trains, so only it (and the ranks of the scaling benchmark) joins a
    // launcher's job of several ranks.
    let world = match &cli.command {
        Command::Run { .. } => World::init(),
        Command::Bench { targets, .. } if targets.contains(&limoe_bench::Target::ScalingRank) => {
            World::init()
        }
        _ => Ok(World::solo()),
    };
    let world = match world {
        Ok(world) => world,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let rank = world.comm().rank();
    // Rank 0 speaks for the job; the others say only what goes wrong.
    init_logging(cli.verbose, cli.quiet || rank > 0);
    let registry = registry::registry();
    let result = match cli.command {
        Command::Run {
            spec,
            force,
            dry_run,
            trial,
        } => commands::run(
            &registry,
            &cli.runs_dir,
            &cli.reports_dir,
            &spec.spec,
            &spec.sets,
            &commands::RunOptions {
                force: &force,
                dry_run,
                quiet: cli.quiet || rank > 0,
                trial: trial.as_deref(),
                comm: world.comm(),
            },
        ),
        Command::Sweep {
            spec,
            jobs,
            executor,
            wait,
            status,
            dry_run,
        } => sweep::sweep(
            &registry,
            &sweep::SweepOptions {
                runs_dir: &cli.runs_dir,
                reports_dir: &cli.reports_dir,
                spec: &spec.spec,
                sets: &spec.sets,
                jobs,
                executor,
                wait,
                status,
                dry_run,
                quiet: cli.quiet,
            },
        ),
        Command::Validate { specs, sets } => commands::validate(&registry, &specs, &sets),
        Command::Plan {
            spec,
            world,
            expert_parallel,
        } => commands::plan(
            &registry,
            &cli.runs_dir,
            &spec.spec,
            &spec.sets,
            world.get(),
            expert_parallel.map(NonZeroUsize::get),
        ),
        Command::Report { run } => report::report(&registry, &cli.runs_dir, &cli.reports_dir, &run),
        Command::Tensorboard { run } => {
            tensorboard::command_line(&cli.runs_dir, &run).map(|line| {
                println!("{line}");
                ExitCode::SUCCESS
            })
        }
        Command::Runs => runs::runs(&cli.runs_dir),
        Command::Compare {
            runs,
            json,
            markdown,
        } => compare::compare(
            &registry,
            &cli.runs_dir,
            &runs,
            compare::Format::of_flags(json, markdown),
        ),
        Command::Verify { run } => verify::verify(&cli.runs_dir, &run),
        Command::Checkpoint {
            command: CheckpointCommand::Consolidate { model, output },
        } => checkpoint::consolidate(&registry, &cli.runs_dir, &model, &output),
        Command::Stages => commands::stages(&registry),
        Command::Bench { targets, export } => {
            limoe_bench::bench(&registry, &targets, export.as_deref(), world.comm())
        }
        Command::Data { spec, sets, only } => data::data(&registry, spec.as_deref(), &sets, &only),
        Command::Classify(args) => classify::classify(&registry, &cli.runs_dir, &args),
        Command::Embed(args) => embed::embed(&registry, &cli.runs_dir, &args, cli.quiet),
        Command::Route(args) => route::route(&registry, &cli.runs_dir, &args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let who = match world.comm().size() {
                1 => String::new(),
                _ => format!("rank {rank}: "),
            };
            eprintln!("error: {who}{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Lets a closed stdout or stderr (`limoe plan spec.yaml | head -1`) end the process quietly
/// by SIGPIPE (status 141 in a shell), as it ends any Unix filter; Rust ignores SIGPIPE, so
/// `println!`, `eprintln!` and log lines would panic on the broken pipe instead.
fn quiet_broken_pipes() {
    // The default disposition, not EPIPE handled at each write: it covers every writer at once.
    #[cfg(unix)]
    // SAFETY: called first in `main`, before any thread exists, restoring the default.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => tracing::Level::WARN,
        (false, 0) => tracing::Level::INFO,
        (false, 1) => tracing::Level::DEBUG,
        (false, _) => tracing::Level::TRACE,
    };
    // Colours only for a person at a terminal: logs redirected to a file (a sweep trial's
    // log.txt, CI) stay plain text.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .without_time()
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .init();
}
