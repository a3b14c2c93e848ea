#!/usr/bin/env bash
# A CUDA toolkit (nvcc and headers) for building limoe with `--features cuda` on a machine
# without a GPU or a CUDA install; `just check-cuda` runs through it.
#
#   ./scripts/cuda-toolkit.sh            # prints the environment to use: eval "$(...)"
#   ./scripts/cuda-toolkit.sh CMD ARGS   # runs CMD in that environment
#
# An existing toolkit wins: $CUDA_HOME when it has bin/nvcc, else the nvcc on PATH. Otherwise
# NVIDIA's wheels are installed from PyPI into a virtual environment under
# ~/.cache/limoe/cuda-venv (no root; about 130 MB to download, 370 MB on disk).
#
# Why CUDA 13 wheels: the CUDA 12 ones (nvidia-cuda-nvcc-cu12, up to 12.9.86) ship ptxas but no
# nvcc. nvidia-cuda-nvcc 13 ships nvcc, cudafe++ and fatbinary, and with nvidia-nvvm (cicc),
# nvidia-cuda-crt, nvidia-cuda-runtime (cuda_runtime.h, cuda_fp16.h, ...) and nvidia-cuda-cccl
# (cub, thrust) it fills one toolkit root, site-packages/nvidia/cu13, the layout nvcc expects.
#
# Why 13.4: cudarc, candle's CUDA binding, takes the CUDA version from `nvcc --version` and
# knows none past 13.4 (cudarc 0.19.10, Cargo.lock). nvcc, crt, nvvm and runtime are pinned to
# the same release because CCCL's headers refuse an nvcc of another release than
# cuda_runtime_api.h; cccl has no 13.4 wheel, and its newest works with 13.4.
set -euo pipefail

release=13.4
wheels=(
    nvidia-cuda-nvcc==13.4.92
    nvidia-nvvm==13.4.92
    nvidia-cuda-crt==13.4.92
    nvidia-cuda-runtime==13.4.92
    nvidia-cuda-cccl==13.3.5.0.6
)
venv="${XDG_CACHE_HOME:-$HOME/.cache}/limoe/cuda-venv"

say() { echo "cuda-toolkit: $*" >&2; }

# nvcc compiles only the device code; the host side goes to the system C++ compiler.
if ! command -v g++ >/dev/null 2>&1; then
    say "nvcc needs a host C++ compiler and there is no g++ on PATH; install it (apt-get install g++)"
    exit 1
fi

if [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then
    cuda_root="$CUDA_HOME"
elif nvcc="$(command -v nvcc)"; then
    cuda_root="$(cd "$(dirname "$nvcc")/.." && pwd)"
else
    site() { "$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
    cuda_root="$(site 2>/dev/null || true)/nvidia/cu13"
    if ! "$cuda_root/bin/nvcc" --version 2>/dev/null | grep -q "release $release,"; then
        if ! command -v python3 >/dev/null 2>&1; then
            say "no CUDA toolkit here and no python3 to install one from PyPI; install python3, or a CUDA toolkit and set CUDA_HOME"
            exit 1
        fi
        say "installing CUDA $release's nvcc and headers from PyPI into $venv (once; about 130 MB)"
        # --clear: a venv whose python no longer runs (its base python gone) is made anew.
        "$venv/bin/python" -c '' 2>/dev/null || python3 -m venv --clear "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${wheels[@]}" || {
            say "pip could not install ${wheels[*]}; check that PyPI is reachable, or install a CUDA toolkit and set CUDA_HOME"
            exit 1
        }
        cuda_root="$(site)/nvidia/cu13"
        if ! [ -x "$cuda_root/bin/nvcc" ]; then
            say "the wheels installed but $cuda_root/bin/nvcc is missing; remove $venv and rerun"
            exit 1
        fi
    fi
fi

# cudarc and candle's kernel build run `nvcc` from PATH; CUDA_HOME is where cudarc looks for
# the libraries when a build links.
PATH="$cuda_root/bin:$PATH"
CUDA_HOME="$cuda_root"
export PATH CUDA_HOME

if [ "$#" -eq 0 ]; then
    printf 'export PATH=%q\nexport CUDA_HOME=%q\n' "$PATH" "$CUDA_HOME"
else
    exec "$@"
fi
