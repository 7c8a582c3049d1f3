#!/usr/bin/env bash
# PyTorch (CPU, eager) next to `eraengine bench --json`, alternating; prints the ratio.
# Usage: bash benches/vs_pytorch.sh [vs_pytorch.py flags: --features 705 --d-model 128 --heads 8 ...]
#
# PyTorch goes into a venv under target/torch-venv the first time (TORCH_VENV: another venv, e.g.
# one with a CPU-only torch). Checked on this machine: PyPI's only Linux x86-64 torch wheel is the
# CUDA build (torch 2.15.0, 539 MB, 15 s to download) and it does not import without its CUDA
# libraries (cuda-toolkit / nvidia-* wheels, several GB: "libcublasLt.so not found"), while the
# CPU-only wheel index is not reachable from here. So the script installs torch with --no-deps,
# and where it then does not import it says so and stops (exit 3) instead of pulling gigabytes.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${TORCH_VENV:-target/torch-venv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/pip" show -q torch >/dev/null 2>&1; then
    echo "installing PyTorch into $VENV ..." >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --no-deps torch
    "$VENV/bin/pip" install -q filelock typing-extensions sympy networkx jinja2 fsspec numpy
fi
if ! err=$("$VENV/bin/python" -c "import torch" 2>&1); then
    echo "SKIPPED: torch in $VENV does not import on this machine (the PyPI wheel is the CUDA" >&2
    echo "build; a CPU-only wheel cannot be fetched here). Last error line:" >&2
    echo "$err" | tail -1 >&2
    exit 3
fi
if [ ! -x target/release/eraengine ]; then
    cargo build --release >&2
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec "$VENV/bin/python" benches/vs_pytorch.py "$@"
