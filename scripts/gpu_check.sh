#!/usr/bin/env bash
# First contact with a real GPU: one command that tells everything, one report file.
#
#   scripts/gpu_check.sh [REPORT]        (default target/gpu_check_report.txt)
#
# Steps (each recorded PASS/FAIL/SKIP with its output; the script goes on after a failure and
# exits non-zero if any step failed):
#   1. build with NVRTC (embedded sm_80/sm_90 cubins; ERAENGINE_NVRTC_LIB, else the toolchain that
#      scripts/kernel_gate.sh installs in .toolchain/cuda, else the loader path);
#   2. `eraengine info` (driver, device, NVRTC versions);
#   3. every device-generic test on cuda with ERAENGINE_REQUIRE_GPU=1 (a missing GPU is a failure);
#   4. a short training on cuda and on cpu from the same seed; losses printed, weights compared
#      (max |cuda − cpu| per tensor; fails above 1e-3);
#   5. `bench --device cuda --json` (step time, launches/syncs/allocs per step, H100 estimate);
#   6. the GPU tests once more with ERAENGINE_CUDA_SYNC=1 (a wait after every launch, so a fault
#      names its kernel) and under compute-sanitizer memcheck and racecheck when it is installed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REPORT="${1:-$ROOT/target/gpu_check_report.txt}"
mkdir -p "$(dirname "$REPORT")" target/gpu_check
WORK="$ROOT/target/gpu_check"
FAILED=0

if [[ -z "${ERAENGINE_NVRTC_LIB:-}" && -f .toolchain/cuda/nvidia/cuda_nvrtc/lib/libnvrtc.so.12 ]]; then
    export ERAENGINE_NVRTC_LIB="$ROOT/.toolchain/cuda/nvidia/cuda_nvrtc/lib/libnvrtc.so.12"
fi
# the same build environment for every cargo call (build.rs reruns when one of them changes)
export ERAENGINE_REQUIRE_NVRTC=1
# the same libnvrtc loadable at run time (the launcher's cubin fallback and its test use it)
if [[ -n "${ERAENGINE_NVRTC_LIB:-}" ]]; then
    export LD_LIBRARY_PATH="$(dirname "$ERAENGINE_NVRTC_LIB")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
GPU_TESTS=(--test gpu_cuda --test gpu_ops --test gpu_ops2 --test gpu_counts --test shape_errors --test ops_sigmoid)

{
    echo "# eraengine gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "# commit $(git rev-parse --short HEAD 2>/dev/null || echo '?') on $(uname -n)"
    echo "# NVRTC ${ERAENGINE_NVRTC_LIB:-(loader path)}"
} >"$REPORT"

step() {
    local name="$1"
    shift
    echo "== $name" | tee -a "$REPORT"
    local t0=$SECONDS
    if "$@" >"$WORK/step.log" 2>&1; then
        echo "PASS $name ($((SECONDS - t0)) s)" | tee -a "$REPORT"
    else
        echo "FAIL $name ($((SECONDS - t0)) s)" | tee -a "$REPORT"
        FAILED=1
    fi
    tail -n 60 "$WORK/step.log" >>"$REPORT"
}

BIN="$ROOT/target/release/eraengine"

step "build with NVRTC" cargo build --release
step "eraengine info" "$BIN" info
step "device-generic tests on cuda" env ERAENGINE_REQUIRE_GPU=1 cargo test --release "${GPU_TESTS[@]}"

train_both() {
    local common=(train --epochs 1 --max-steps 20 --seed 7 --quiet)
    "$BIN" "${common[@]}" --device cpu --out "$WORK/cpu.safetensors" || return 1
    "$BIN" "${common[@]}" --device cuda --out "$WORK/cuda.safetensors" || return 1
    python3 - "$WORK/cpu.safetensors" "$WORK/cuda.safetensors" <<'EOF'
import json, struct, sys
def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    head = json.loads(b[8:8 + n])
    out = {}
    for k, v in head.items():
        if k == "__metadata__" or v.get("dtype") != "F32":
            continue
        s, e = v["data_offsets"]
        raw = b[8 + n + s:8 + n + e]
        out[k] = struct.unpack("<%df" % (len(raw) // 4), raw)
    return out
cpu, gpu = load(sys.argv[1]), load(sys.argv[2])
worst = 0.0
for k in sorted(cpu):
    d = max((abs(a - b) for a, b in zip(cpu[k], gpu[k])), default=0.0)
    worst = max(worst, d)
    print(f"{k:48s} max|cuda-cpu| {d:.3e}")
print(f"worst {worst:.3e} over {len(cpu)} tensors")
sys.exit(0 if worst <= 1e-3 and set(cpu) == set(gpu) else 1)
EOF
}
step "20 training steps, cuda vs cpu (same seed)" train_both
step "bench --device cuda --json" "$BIN" bench --device cuda --json
step "GPU tests, ERAENGINE_CUDA_SYNC=1" env ERAENGINE_REQUIRE_GPU=1 ERAENGINE_CUDA_SYNC=1 \
    cargo test --release --test gpu_ops --test gpu_ops2

if command -v compute-sanitizer >/dev/null 2>&1; then
    # the test binaries themselves (cargo would run the sanitizer on rustc)
    for bin in target/release/deps/gpu_ops-* target/release/deps/gpu_ops2-*; do
        [[ -x "$bin" && ! "$bin" == *.d ]] || continue
        for tool in memcheck racecheck; do
            step "compute-sanitizer $tool $(basename "$bin")" env ERAENGINE_REQUIRE_GPU=1 \
                compute-sanitizer --tool "$tool" --error-exitcode 1 "$bin" cuda
        done
    done
else
    echo "SKIP compute-sanitizer (not installed)" | tee -a "$REPORT"
fi

echo "== result: $([[ $FAILED == 0 ]] && echo PASS || echo FAIL)" | tee -a "$REPORT"
echo "report: $REPORT"
exit "$FAILED"
