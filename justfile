# limoe tasks. On a fresh machine, `./scripts/bootstrap.sh RECIPE` installs just first.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
help:
    @{{ just_executable() }} --justfile {{ justfile() }} --list --unsorted

# The binary sets its own training environment (allocator tuning, candle's threads), so every
# recipe, a plain `limoe run` and sweep trials train alike.

# The release binary the recipes below run. Its first build is long and `cargo run -q` would
# hide it, so that one says what it is doing and shows cargo's progress.
[private]
release:
    @if [ ! -x "${CARGO_TARGET_DIR:-target}/release/limoe" ]; then \
        echo "just: compiling limoe in release mode for the first time: about 30 minutes on 2 cores, seconds after that" >&2; \
        cargo build --release -p limoe-cli; \
    fi

# Run an experiment spec end to end (extra args go to `limoe run`, e.g. --set train.steps=10).
run SPEC="experiments/tiny.yaml" *ARGS: release
    cargo run --release -q -p limoe-cli -- run {{ SPEC }} {{ ARGS }}

# Expand a spec's sweep into trials and run them (extra args go to `limoe sweep`, e.g. --jobs 2,
# --executor slurm, --wait, --status, --dry-run, --set train.steps=10).
sweep SPEC *ARGS: release
    cargo run --release -q -p limoe-cli -- sweep {{ SPEC }} {{ ARGS }}

# Draw the report of a run or sweep (e.g. `runs/tiny`, or just `tiny`) into reports/<experiment>/.
report RUN: release
    cargo run --release -q -p limoe-cli -- report {{ RUN }}

# Fetch the raw packages of real data sets into data/raw/ (a spec's sources; all when no spec).
data *ARGS: release
    cargo run --release -q -p limoe-cli -- data {{ ARGS }}

# Check specs without running anything (every error at once, with file:line:column).
validate *SPECS="experiments/*.yaml":
    cargo run -q -p limoe-cli -- validate {{ SPECS }}

# Show what `run` would do: stages, cache keys, cached or not, and the model's shape.
plan SPEC="experiments/tiny.yaml" *ARGS:
    cargo run -q -p limoe-cli -- plan {{ SPEC }} {{ ARGS }}

# Format the code.
fmt:
    cargo fmt --all

# Check formatting and clippy lints, with the MPI backend compiled in (and limoe-dist
# without it, for the build that refuses to join a launcher's job).
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --features limoe-cli/mpi -- -D warnings
    cargo clippy -p limoe-dist --all-targets -- -D warnings

# Format check, clippy, the tests (the distributed ones under `mpirun`, so with Open MPI
# installed: `./scripts/bootstrap.sh test` installs it), and validation of every spec.
test: lint
    cargo test --workspace --features limoe-cli/mpi
    cargo run -q -p limoe-cli --features mpi -- validate experiments/*.yaml

# Compile the CUDA build on a machine without a GPU: every crate, tests included, type-checked
# with --features cuda, and every kernel of candle's compiled by nvcc (candle-kernels' build
# script runs under `cargo check` too). scripts/cuda-toolkit.sh provides nvcc and the CUDA
# headers, installed from PyPI when missing. It checks rather than builds because linking would
# also need cuBLAS, cuRAND, NVRTC and the driver's libcuda. With no GPU to ask, CUDA_COMPUTE_CAP
# picks the target: 80, the lowest at which candle compiles its bf16 kernels. Its own target
# dir keeps the CPU build's artifacts.
# A manual check, kept out of `test` and CI (.ci/run): about 15 minutes on 2 cores the first time.
check-cuda:
    CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/limoe-target}-cuda" \
        ./scripts/cuda-toolkit.sh cargo check --workspace --all-targets --features limoe-cli/cuda

# Benchmarks: every target of `limoe bench` (loader throughput; training step of the tiny, t128
# and S/16 shapes, LIMoE against dense; the same step in the PyTorch reference under bench/ when
# python3 can import torch; the tiny step on 2 ranks against one process, built with the MPI
# backend where Open MPI's compiler wrapper, hence its development files, is installed).
bench *TARGETS:
    cargo run --release -q -p limoe-cli $(command -v mpicc >/dev/null && echo --features mpi) -- bench {{ TARGETS }}
