//! Helpers the tests that run the `limoe` binary share.

#[allow(dead_code, reason = "only the report tests render pages")]
pub mod chromium;
#[allow(dead_code, reason = "only the Slurm tests start a cluster")]
pub mod cluster;
#[allow(dead_code, reason = "the tests of training alike use a part each")]
pub mod equivalence;
#[allow(dead_code, reason = "only the sweep tests run the tiny sweep")]
pub mod sweeps;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
#[allow(dead_code, reason = "each test binary uses a part of the helpers")]
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `limoe` with `args` in `cwd`.
#[allow(dead_code, reason = "each test binary uses a part of the helpers")]
pub fn limoe<S: AsRef<OsStr>>(args: &[S], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_limoe"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("limoe runs")
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The finished output directory under `run` whose name starts with `prefix`.
#[allow(dead_code, reason = "each test binary uses a part of the helpers")]
pub fn finished_output(run: &Path, prefix: &str) -> PathBuf {
    std::fs::read_dir(run)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.starts_with(prefix) && !name.ends_with(".partial")
        })
        .unwrap_or_else(|| panic!("no {prefix} output in {}", run.display()))
}
