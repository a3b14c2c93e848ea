//! Loading a command's spec: its errors printed, and the exit code of an invalid spec.

use std::path::Path;
use std::process::ExitCode;

use limoe_core::{LoadedSpec, Registry, load_spec};

/// Exit code of a spec that failed validation.
pub(crate) const INVALID_SPEC: u8 = 2;

/// Loads a spec, printing its errors; the exit code of an invalid spec on failure.
pub(crate) fn load(
    registry: &Registry,
    spec: &Path,
    sets: &[String],
) -> Result<LoadedSpec, ExitCode> {
    load_spec(spec, sets, registry).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(INVALID_SPEC)
    })
}
