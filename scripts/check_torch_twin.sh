#!/usr/bin/env bash
# Checks python/eraengine_torch.py (the PyTorch twin of a checkpoint, for Numerai's model uploads)
# against the engine: a small synthetic data set (`eraengine synth --parquet`), a tiny model per
# config (the recommended preset, --preset spec, each option the twin implements, and a two-member
# ensemble), then `eraengine predict --raw` on the validation and live stores against the module on
# the same rows read from synth's parquet files, matched by id: max |difference| <= 1e-5 in float32
# and float64; then python/check_twin_errors.py (errors, the reader, the upload recipe).
# Prints the max difference per config; exits non-zero on any mismatch.
#
#   TORCH_VENV   virtual environment to use; created and filled (torch numpy pandas pyarrow
#                safetensors cloudpickle from PyPI) when it lacks them [default: target/torch-twin-venv]
#   ERAENGINE    the binary [default: target/release/eraengine, built if absent]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${TORCH_VENV:-target/torch-twin-venv}
bin=${ERAENGINE:-target/release/eraengine}
tol=1e-5
start=$(date +%s)

if [[ ! -x $bin ]]; then
    cargo build --release --quiet
fi
if [[ ! -x $venv/bin/python ]]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import torch, numpy, pandas, pyarrow, safetensors, cloudpickle" 2>/dev/null; then
    echo "installing torch numpy pandas pyarrow safetensors cloudpickle into $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check torch numpy pandas pyarrow safetensors \
        cloudpickle
fi
installed=$(date +%s)
"$venv/bin/python" -c "import torch, pandas; print(f'torch {torch.__version__}, pandas {pandas.__version__}')"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" synth --out "$work/data" --eras 8 --rows 150 --features 12 --seed 3 --parquet --quiet

# name | train flags (on top of a short, fast run: 40 steps at lr 1e-2 so the weights leave their
# initial values, FiLM's zeros included)
configs=(
    "recommended|"
    "spec|--preset spec"
    "ffn-grn|--ffn grn"
    "vsn|--selection vsn"
    "vsn-grn-spec|--preset spec --selection vsn --ffn grn"
    "induced|--attention induced --inducing 8"
    "softmax|--attention softmax"
    "pos-enc|--pos-enc"
    "top-k|--top-k 5"
    "vsn-top-k|--selection vsn --top-k 5"
    "static-gate|--preset spec --gate-rank 0"
    "small-heads|--d-model 24 --heads 3 --d-ff 40 --layers 3 --context-dim 5"
    "ensemble|--seeds 1,2"
)
fail=0
for entry in "${configs[@]}"; do
    name=${entry%%|*}
    flags=${entry#*|}
    ck="$work/$name.safetensors"
    [[ $name == ensemble ]] && ck="$work/$name"
    # shellcheck disable=SC2086 # flags are words
    "$bin" train --data "$work/data/train.store" \
        --valid "$work/data/validation.store" --device cpu --max-steps 40 --lr 1e-2 \
        --quiet --out "$ck" $flags >/dev/null
    pairs=()
    for s in validation live; do
        "$bin" predict --model "$ck" --data "$work/data/$s.store" --raw --quiet \
            --out "$work/$name.$s.csv"
        pairs+=("$work/data/$s.parquet=$work/$name.$s.csv")
    done
    "$venv/bin/python" python/check_twin.py "$name" "$ck" "$tol" "${pairs[@]}" || fail=1
done
"$venv/bin/python" python/check_twin_errors.py "$work/recommended.safetensors" "$work/data/live.parquet" || fail=1
echo "venv ready in $((installed - start)) s, checks in $(( $(date +%s) - installed )) s"
if [[ $fail -ne 0 ]]; then
    echo "eraengine_torch does NOT match eraengine (see FAIL above)"
    exit 1
fi
echo "eraengine_torch matches eraengine on every config"
