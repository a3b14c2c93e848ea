//! The `Stage` trait, its run context, and the registry of stage kinds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use anyhow::bail;
use limoe_dist::Communicator;

use crate::spec::{Diagnostic, KeyPath, Node, Spec, StageSpec, Value, did_you_mean};

/// A kind of pipeline step (ingest, train, a shell command, ...).
pub trait Stage: Send + Sync {
    /// The name a spec's `uses:` refers to.
    fn kind(&self) -> &'static str;

    /// One line of help, shown by `limoe stages`.
    fn about(&self) -> &'static str;

    /// The dotted key paths of the spec this stage reads (`seed`, `data.shuffle_buffer`,
    /// `model`): their values are part of its cache key, and nothing else of the spec is,
    /// so that changing what a stage never reads never reruns it.
    fn reads(&self) -> &'static [&'static str] {
        &[]
    }

    /// True when the `seed` among [`Stage::reads`] draws data (shards, benchmark scenes),
    /// not a model: the key then holds [`Spec::data_seed`], so that under a set `data.seed`
    /// the stage is shared by runs that differ in their model's seed.
    fn seed_draws_data(&self) -> bool {
        false
    }

    /// The kinds of upstream stage whose output this stage reads under `spec` (eval reads a
    /// `benchmarks` output only when the spec has benchmarks): a spec is invalid unless the
    /// stage's `needs` names exactly one stage of each.
    fn needs_kinds(&self, _spec: &Spec) -> Vec<&'static str> {
        Vec::new()
    }

    /// Checks the stage's `with:` settings (at `at` in the spec) and returns every problem.
    /// The default accepts only an empty `with`.
    fn check(&self, with: &Node, at: &KeyPath, _spec: &Spec) -> Vec<Diagnostic> {
        match &with.value {
            Value::Map(entries) if entries.is_empty() => Vec::new(),
            Value::Null => Vec::new(),
            _ => vec![
                Diagnostic::new(
                    at.clone(),
                    with.origin.clone(),
                    format!("stage kind `{}` takes no settings", self.kind()),
                )
                .with_hint("remove `with:`"),
            ],
        }
    }

    /// What else the cache key must cover besides the config (e.g. hashes of files the
    /// stage reads). Called before every run and plan, so it must not fetch or write
    /// anything but caches.
    fn fingerprint(&self, _with: &Node, _spec: &Spec) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }

    /// Gets, before a run is planned, what the fingerprint covers but a plan must not fetch
    /// (e.g. the raw packages ingest reads), so that the key a run computes is the key its
    /// output is found by afterwards.
    fn prepare(&self, _spec: &Spec) -> anyhow::Result<()> {
        Ok(())
    }

    /// Checks, before any stage of the run starts, that this stage can run on this machine
    /// (e.g. that the model fits in memory). Not part of validation: a spec stays valid on
    /// machines where it cannot run.
    fn preflight(&self, _spec: &Spec) -> anyhow::Result<()> {
        Ok(())
    }

    /// True when the stage can continue from what an interrupted attempt left in its output
    /// directory; otherwise the directory is emptied before each attempt.
    fn resumable(&self) -> bool {
        false
    }

    /// True when every rank of a multi-process job runs the stage together (training);
    /// any other stage runs on rank 0 alone while the others wait, and they read its output.
    fn distributed(&self) -> bool {
        false
    }

    /// Does the work, writing only under `ctx.out_dir` (on rank 0 only, in a distributed
    /// stage of several ranks: the others read there).
    fn run(&self, ctx: &StageContext) -> anyhow::Result<()>;
}

/// The output of a finished upstream stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// The upstream stage's id.
    pub id: String,
    /// Its stage kind.
    pub kind: String,
    /// Its cache key.
    pub key: String,
    /// Its complete output directory.
    pub dir: PathBuf,
}

/// Everything a stage gets when it runs.
pub struct StageContext<'a> {
    /// The resolved spec.
    pub spec: &'a Spec,
    /// This stage's entry of the pipeline.
    pub stage: &'a StageSpec,
    /// Outputs of the stages in `needs`, by id.
    pub inputs: &'a BTreeMap<String, Artifact>,
    /// Where the stage writes; it becomes the stage's output when the stage succeeds.
    pub out_dir: &'a Path,
    /// The saved resolved spec (YAML), for programs that want to read it.
    pub spec_file: &'a Path,
    /// Progress bars.
    pub progress: &'a Progress,
    /// The ranks running the stage: all of the job's for a distributed stage, else rank 0's
    /// world of one.
    pub comm: &'a dyn Communicator,
}

impl StageContext<'_> {
    /// The output of the stage of kind `kind` among this stage's `needs` (checked at load
    /// time by [`Stage::needs_kinds`], so an error here means the kind did not declare it).
    pub fn input(&self, kind: &str) -> anyhow::Result<&Artifact> {
        match self.optional_input(kind) {
            Some(artifact) => Ok(artifact),
            None => bail!(
                "stage `{}` needs the output of a `{kind}` stage; add that stage's id to its \
                 `needs`",
                self.stage.id
            ),
        }
    }

    /// The output of the stage of kind `kind` among this stage's `needs`, if it has one.
    pub fn optional_input(&self, kind: &str) -> Option<&Artifact> {
        self.inputs.values().find(|artifact| artifact.kind == kind)
    }
}

/// Progress bars for long stages; drawn on stderr unless hidden (`-q`, or not a terminal).
#[derive(Clone)]
pub struct Progress {
    bars: MultiProgress,
}

impl Progress {
    /// Progress drawn on stderr when `visible`.
    pub fn new(visible: bool) -> Progress {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Progress {
            bars: MultiProgress::with_draw_target(target),
        }
    }

    /// A bar counting to `total` with a label, showing rate and ETA.
    pub fn bar(&self, total: u64, label: &str) -> ProgressBar {
        let style = ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bar = self.bars.add(ProgressBar::new(total));
        bar.set_style(style);
        bar.set_prefix(label.to_owned());
        bar
    }
}

/// The stage kinds this program knows.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn Stage>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds a stage kind; a later registration of the same name replaces the earlier one.
    pub fn register(&mut self, stage: impl Stage + 'static) -> &mut Registry {
        self.kinds.insert(stage.kind(), Arc::new(stage));
        self
    }

    /// The stage kind called `kind`.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Stage>> {
        self.kinds.get(kind)
    }

    /// All kinds, sorted by name.
    pub fn kinds(&self) -> impl Iterator<Item = &Arc<dyn Stage>> {
        self.kinds.values()
    }

    /// "did you mean" for an unknown kind, or the list of kinds.
    pub fn hint_for(&self, unknown: &str) -> String {
        did_you_mean(unknown, self.kinds.keys().copied()).unwrap_or_else(|| {
            let known: Vec<&str> = self.kinds.keys().copied().collect();
            format!(
                "registered kinds: {} (see `limoe stages`)",
                known.join(", ")
            )
        })
    }
}
