#!/usr/bin/env bash
# PyTorch (CPU, eager) next to `eraengine bench --json`, alternating; prints the ratio.
# Usage: bash benches/vs_pytorch.sh [vs_pytorch.py flags: --features 705 --d-model 128 --heads 8 ...]
#
# PyTorch goes into a venv under target/torch-venv the first time (TORCH_VENV: another venv, e.g.
# one with a CPU-only torch). PyPI's only Linux x86-64 torch wheel is the CUDA build; with its CUDA
# wheels installed beside it (about 5 GB, 1.5 min here) it imports and runs on a CPU-only machine.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${TORCH_VENV:-target/torch-venv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/pip" show -q torch >/dev/null 2>&1; then
    echo "installing PyTorch into $VENV ..." >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q torch numpy
fi
if ! err=$("$VENV/bin/python" -c "import torch" 2>&1); then
    echo "FAILED: torch in $VENV does not import on this machine. Last error line:" >&2
    echo "$err" | tail -1 >&2
    exit 3
fi
if [ ! -x target/release/eraengine ]; then
    cargo build --release >&2
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec "$VENV/bin/python" benches/vs_pytorch.py "$@"
