# limoe tasks. On a fresh machine, `./scripts/bootstrap.sh RECIPE` installs just first.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
help:
    @{{ just_executable() }} --justfile {{ justfile() }} --list --unsorted

# Run an experiment spec end to end (extra args go to `limoe run`, e.g. --set train.steps=10).
run SPEC="experiments/tiny.yaml" *ARGS:
    cargo run --release -q -p limoe-cli -- run {{ SPEC }} {{ ARGS }}

# Expand a spec's sweep into trials and run them (not built yet).
sweep SPEC *ARGS:
    @echo "limoe sweep is not built yet (see the sweeps issue)" >&2; exit 1

# Build the report of a run (not built yet).
report RUN:
    @echo "limoe report is not built yet (reports arrive with the analysis stage)" >&2; exit 1

# Fetch the raw packages of real data sets into data/raw/ (a spec's sources; all when no spec).
data *ARGS:
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

# Check formatting and clippy lints.
lint:
    cargo fmt --all --check && cargo clippy --all-targets -- -D warnings

# Format check, clippy, the tests, and validation of every spec under experiments/.
test:
    cargo fmt --all --check
    cargo clippy --all-targets -- -D warnings
    cargo test --workspace
    cargo run -q -p limoe-cli -- validate experiments/*.yaml

# Benchmarks: every target of `limoe bench` (today: loader throughput at 64 and 224 px).
bench:
    cargo run --release -q -p limoe-cli -- bench
