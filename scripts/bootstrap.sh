#!/usr/bin/env bash
# Runs a justfile recipe on a machine that has only the Rust toolchain: installs `just`
# when it is missing (no root needed), then runs `just "$@"` in the repository root.
#
#   ./scripts/bootstrap.sh run     # the default experiment, experiments/tiny.yaml
#   ./scripts/bootstrap.sh test    # format check, clippy, tests, spec validation
#
# For `test` and `lint` it also installs Open MPI (apt-get, as root or through sudo) when
# missing: the distributed tests run under `mpirun`; for `test`, Slurm and munge too: the
# Slurm tests start a one-node cluster.
#
# `just` is installed with `cargo install just --locked` into $CARGO_HOME/bin (~/.cargo/bin).
# Should that fail, the `rust-just` Python package (which ships the same binary) is put in
# a virtual environment under ~/.cache/limoe/just-venv.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/limoe/just-venv"
on_path() { case ":$PATH:" in *":$1:"*) return 0 ;; *) return 1 ;; esac; }
for dir in "$venv/bin" "$cargo_bin"; do
    if [ -d "$dir" ] && ! on_path "$dir"; then
        PATH="$dir:$PATH"
    fi
done
export PATH

say() { echo "bootstrap: $*" >&2; }

install_with_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        say "cargo is not on PATH (nor in $cargo_bin); install the Rust toolchain with rustup first"
        return 1
    fi
    say "just is missing; installing it with \`cargo install just --locked\` into $cargo_bin (once; a few minutes)"
    cargo install just --locked || return 1
    on_path "$cargo_bin" || PATH="$cargo_bin:$PATH"
}

install_with_pip() {
    command -v python3 >/dev/null 2>&1 || return 1
    say "trying the rust-just Python package in $venv instead"
    python3 -m venv "$venv" && "$venv/bin/python" -m pip install --quiet rust-just || return 1
    PATH="$venv/bin:$PATH"
}

if ! command -v just >/dev/null 2>&1; then
    if ! install_with_cargo; then
        say "installing just with cargo failed"
        if ! install_with_pip; then
            say "could not install just; install it yourself (\`cargo install just --locked\`) and run \`just $*\`"
            exit 1
        fi
    fi
    command -v just >/dev/null 2>&1 || {
        say "just was installed but is not on PATH; add $cargo_bin to PATH"
        exit 1
    }
    say "installed $(just --version) at $(command -v just)"
fi

# The tests cover training on several ranks, which needs Open MPI (and libclang for the
# bindings' generator), and sweeps on a one-node Slurm cluster they start themselves
# (crates/limoe-cli/tests/support/cluster.rs; skipped without it); Debian's packages,
# installed when missing.
mpi_packages=(libopenmpi-dev openmpi-bin libclang-dev)
slurm_packages=(slurm-wlm munge)
apt_install() {
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    say "installing $* with apt-get (once)"
    "${sudo[@]}" apt-get update -qq &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq "$@" >/dev/null
}
installed() { dpkg -s "$@" >/dev/null 2>&1; }
needed=()
case "${1:-}" in
    test | lint)
        if ! command -v mpirun >/dev/null 2>&1 || ! installed "${mpi_packages[@]}"; then
            needed+=("${mpi_packages[@]}")
        fi
        ;;
esac
if [ "${1:-}" = test ] && ! installed "${slurm_packages[@]}"; then
    needed+=("${slurm_packages[@]}")
fi
if [ ${#needed[@]} -gt 0 ]; then
    apt_install "${needed[@]}" || {
        say "could not install ${needed[*]}; install them and run \`just $*\`"
        exit 1
    }
fi

exec just "$@"
