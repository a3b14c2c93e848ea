//! The built-in `command` stage: runs an external program, so a stage can be written in any
//! language without recompiling limoe.
//!
//! ```yaml
//! - id: stats
//!   uses: command
//!   needs: [ingest]
//!   with:
//!     argv: [python3, tools/stats.py]
//!     env: {THRESHOLD: "0.5"}
//!     deps: [tools/stats.py]     # files whose content is part of the cache key
//! ```
//!
//! The program runs in the current directory with `LIMOE_OUTPUT_DIR` (write outputs
//! there), `LIMOE_INPUT_<ID>` (each upstream output; the id upper-cased, other characters
//! as `_`), `LIMOE_INPUTS` (JSON object id -> directory), `LIMOE_SPEC` (the resolved spec,
//! YAML), `LIMOE_EXPERIMENT` and `LIMOE_STAGE`. Its stdout and stderr go to
//! `command.log` in the output directory; a non-zero exit fails the stage.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::content_hashes::ContentHashes;
use crate::kinds::COMMAND;
use crate::spec::{Diagnostic, KeyPath, Node, Spec, deserialize_all};
use crate::stage::{Stage, StageContext};

/// Settings of a `command` stage.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Files whose content is part of the cache key (e.g. the script itself).
    #[serde(default)]
    pub deps: Vec<PathBuf>,
}

/// The `command` stage kind.
pub struct CommandStage;

impl CommandStage {
    fn config(with: &Node, at: &KeyPath) -> Result<CommandConfig, Vec<Diagnostic>> {
        let config: CommandConfig = deserialize_all(with, at)?;
        let mut problems = Vec::new();
        let argv = KeyPath::root().key("argv");
        if config.argv.is_empty() || config.argv[0].is_empty() {
            problems.push(
                Diagnostic::new(
                    at.concat(&argv),
                    with.origin_of(&argv),
                    "`argv` needs a program to run",
                )
                .with_hint("write e.g. `argv: [python3, tools/plugin.py]`"),
            );
        }
        for (i, arg) in config.argv.iter().enumerate() {
            if arg.contains('\0') {
                let here = argv.index(i);
                problems.push(
                    Diagnostic::new(
                        at.concat(&here),
                        with.origin_of(&here),
                        format!("argument {arg:?} has a NUL byte, which no program can be given"),
                    )
                    .with_hint("remove the `\\0`"),
                );
            }
        }
        let env = KeyPath::root().key("env");
        for (name, value) in &config.env {
            if let Some((message, hint)) = env_problem(name, value) {
                // The path stops at `env`: the name itself may not print.
                problems.push(
                    Diagnostic::new(at.concat(&env), with.origin_of(&env.key(name)), message)
                        .with_hint(hint),
                );
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }

    /// The settings of an already checked spec (the first problem, should there be one).
    fn settings(with: &Node) -> anyhow::Result<CommandConfig> {
        Self::config(with, &KeyPath::root())
            .map_err(|d| anyhow::anyhow!("invalid settings: {}", d[0].message))
    }
}

impl Stage for CommandStage {
    fn kind(&self) -> &'static str {
        COMMAND
    }

    fn about(&self) -> &'static str {
        "runs an external program (with: argv, env, deps); outputs go to $LIMOE_OUTPUT_DIR"
    }

    /// The program may read any section of the saved spec.
    fn reads(&self) -> &'static [&'static str] {
        &["seed", "data", "model", "train", "eval", "analysis"]
    }

    fn check(&self, with: &Node, at: &KeyPath, _spec: &Spec) -> Vec<Diagnostic> {
        Self::config(with, at).err().unwrap_or_default()
    }

    fn fingerprint(&self, with: &Node, _spec: &Spec) -> anyhow::Result<serde_json::Value> {
        let config = Self::settings(with)?;
        let mut hashes = ContentHashes::user();
        let contents = config
            .deps
            .iter()
            .map(|path| {
                let content = hashes.content(path).with_context(|| {
                    format!("cannot read dependency {} listed in `deps`", path.display())
                })?;
                Ok((path.display().to_string(), content.sha256.into()))
            })
            .collect::<anyhow::Result<serde_json::Map<_, _>>>();
        hashes.save();
        Ok(serde_json::Value::Object(contents?))
    }

    fn run(&self, ctx: &StageContext) -> anyhow::Result<()> {
        let config = Self::settings(&ctx.stage.with)?;
        let log_path = ctx.out_dir.join("command.log");
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut command = Command::new(&config.argv[0]);
        command
            .args(&config.argv[1..])
            .envs(&config.env)
            .env("LIMOE_OUTPUT_DIR", ctx.out_dir)
            .env("LIMOE_SPEC", ctx.spec_file)
            .env("LIMOE_EXPERIMENT", &ctx.spec.name)
            .env("LIMOE_STAGE", &ctx.stage.id)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let mut all_inputs = serde_json::Map::new();
        for (id, artifact) in ctx.inputs {
            command.env(input_var(id), &artifact.dir);
            all_inputs.insert(id.clone(), artifact.dir.display().to_string().into());
        }
        command.env(
            "LIMOE_INPUTS",
            serde_json::Value::Object(all_inputs).to_string(),
        );
        let status = command
            .status()
            .with_context(|| format!("cannot start `{}`", config.argv[0]))?;
        if !status.success() {
            let output = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = output.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "`{}` exited with {status}; last output:\n{}",
                config.argv.join(" "),
                tail.join("\n")
            );
        }
        Ok(())
    }
}

/// What makes `name=value` impossible to put in a process's environment, with what to do.
fn env_problem(name: &str, value: &str) -> Option<(String, &'static str)> {
    if name.is_empty() {
        Some((
            "an environment variable needs a name".into(),
            "name it, e.g. `THRESHOLD: \"0.5\"`",
        ))
    } else if name.contains('=') {
        Some((
            format!("environment variable name {name:?} has a `=`, which ends a name"),
            "rename it without `=`",
        ))
    } else if name.contains('\0') {
        Some((
            format!("environment variable name {name:?} has a NUL byte"),
            "remove the `\\0`",
        ))
    } else if value.contains('\0') {
        Some((
            format!("the value of environment variable `{name}` has a NUL byte"),
            "remove the `\\0`",
        ))
    } else {
        None
    }
}

/// `LIMOE_INPUT_<ID>` for an upstream stage id.
pub fn input_var(id: &str) -> String {
    let id: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("LIMOE_INPUT_{id}")
}
