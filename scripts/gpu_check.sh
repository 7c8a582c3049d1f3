#!/usr/bin/env bash
# First contact with a real GPU: one command that tells everything, one report file.
#
#   scripts/gpu_check.sh [--prebuilt BUNDLE] [REPORT]        (default target/gpu_check_report.txt)
#
# --prebuilt BUNDLE: run the binaries in BUNDLE (a tar.xz from scripts/gpu_bundle.sh, built where
# Rust is) instead of building here: for GPU machines without a Rust toolchain. No cargo runs then.
#
# Steps (each recorded PASS/FAIL/SKIP with its output; the script goes on after a failure and
# exits non-zero if any step failed):
#   1. build with NVRTC (embedded sm_80/sm_90 cubins; ERAENGINE_NVRTC_LIB, else the toolchain that
#      scripts/kernel_gate.sh installs in .toolchain/cuda, else the loader path), or unpack BUNDLE;
#   2. `eraengine info` (driver, device, NVRTC versions);
#   3. the cuda variant of every device-generic test (tests/gpu_common) and tests/gpu_cuda.rs, with
#      ERAENGINE_REQUIRE_GPU=1 (a missing GPU is a failure);
#   4. a short training on cuda and on cpu from the same seed; losses printed, weights compared
#      (max |cuda − cpu| per tensor; fails above 1e-3);
#   5. `bench --device cuda --json` at the default shape and at two Numerai shapes (5,000 × 705 with
#      linear and softmax attention; 6,000 × 2,376, d 256, 8 heads): step time, launches, syncs and
#      allocations per step, the H100 roofline estimate beside the measured time, and again with
#      ERAENGINE_CUDA_PROFILE=1 for each kernel's device time (CUDA events around every launch);
#   6. the GPU op tests once more with ERAENGINE_CUDA_SYNC=1 (a wait after every launch, so a fault
#      names its kernel) when step 3 failed or GPU_CHECK_SYNCED=1, and under compute-sanitizer
#      memcheck and racecheck when it is installed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PREBUILT=""
if [[ "${1:-}" == "--prebuilt" ]]; then
    PREBUILT="$(realpath "${2:?--prebuilt needs a bundle (scripts/gpu_bundle.sh)}")"
    shift 2
fi
REPORT="${1:-$ROOT/target/gpu_check_report.txt}"
mkdir -p "$(dirname "$REPORT")" target/gpu_check
WORK="$ROOT/target/gpu_check"
FAILED=0
source "$ROOT/scripts/nvrtc_env.sh"

{
    echo "# eraengine gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    if [[ -n "$PREBUILT" ]]; then
        echo "# prebuilt binaries: their commit is in the bundle's manifest (unpack step)"
    else
        echo "# commit $(git rev-parse --short HEAD 2>/dev/null || echo '?') on $(uname -n)"
    fi
    echo "# NVRTC ${ERAENGINE_NVRTC_LIB:-(loader path)}"
    echo "# GPU $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'none found by nvidia-smi')"
    if [[ -n "$PREBUILT" ]]; then echo "# bundle $PREBUILT"; fi
} >"$REPORT"

# each step's whole output goes to target/gpu_check/logs/NN.log; the report gets its failures and
# its last 60 lines
rm -rf "$WORK/logs" && mkdir -p "$WORK/logs"
STEP=0
step() {
    local name="$1"
    shift
    STEP=$((STEP + 1))
    local log
    log="$WORK/logs/$(printf %02d $STEP).log"
    echo "== $name (log: $log)" | tee -a "$REPORT"
    local t0=$SECONDS
    if "$@" >"$log" 2>&1; then
        echo "PASS $name ($((SECONDS - t0)) s)" | tee -a "$REPORT"
    else
        echo "FAIL $name ($((SECONDS - t0)) s)" | tee -a "$REPORT"
        FAILED=1
        grep -E -A12 '^---- |panicked' "$log" | head -n 150 >>"$REPORT"
    fi
    tail -n 60 "$log" >>"$REPORT"
}

if [[ -n "$PREBUILT" ]]; then
    BIN="$WORK/bundle/eraengine"
    unpack() {
        rm -rf "$WORK/bundle" && mkdir -p "$WORK/bundle" &&
            python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
                "$PREBUILT" "$WORK/bundle" && cat "$WORK/bundle/manifest.txt"
    }
    step "unpack $PREBUILT" unpack
else
    BIN="$ROOT/target/release/eraengine"
    step "build with NVRTC" cargo build --release
fi
step "eraengine info" "$BIN" info

# every test whose name holds FILTER (`cuda`: the cuda variants), and all of gpu_cuda.rs, on the GPU
gpu_tests() {
    local filter="$1"
    shift
    if [[ -n "$PREBUILT" ]]; then
        local t rc=0
        for t in $(gpu_test_names); do
            echo "--- $t"
            # GPU_TEST_S (default 600): a hung kernel fails its binary instead of the whole check
            if [[ "$t" == gpu_cuda ]]; then
                timeout "${GPU_TEST_S:-600}" "$WORK/bundle/tests/$t" "$@" || rc=1
            else
                timeout "${GPU_TEST_S:-600}" "$WORK/bundle/tests/$t" "$filter" "$@" || rc=1
            fi
        done
        return $rc
    fi
    local args=() t
    for t in $(gpu_test_names); do [[ "$t" == gpu_cuda ]] || args+=(--test "$t"); done
    cargo test --release --test gpu_cuda -- "$@" && cargo test --release "${args[@]}" -- "$filter" "$@"
}
# from here on a missing GPU is a failure, not a skip
export ERAENGINE_REQUIRE_GPU=1
step "every device-generic test on cuda" gpu_tests cuda

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
bench_shapes() {
    local shape i=0
    for shape in "" "--rows 5000 --features 705" "--rows 5000 --features 705 --attention softmax" \
        "--rows 6000 --features 2376 --d-model 256 --heads 8"; do
        i=$((i + 1))
        echo "--- bench ${shape:-(defaults)}"
        # shellcheck disable=SC2086
        "$BIN" bench --device cuda --json $shape | tee "$WORK/bench_$i.json" || return 1
        # the same with CUDA events around every launch: each kernel's measured device time
        # shellcheck disable=SC2086
        ERAENGINE_CUDA_PROFILE=1 "$BIN" bench --device cuda --json $shape >"$WORK/profile_$i.json" || return 1
    done
    python3 - "$WORK" "$i" <<'EOF'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
ok = True
for i in range(1, n + 1):
    b = json.load(open(f"{work}/bench_{i}.json"))
    p = json.load(open(f"{work}/profile_{i}.json"))
    c = b["config"]
    kern = p.get("measured_kernels_ms", 0.0)
    print(f"{c['rows']} x {c['features']}, d {c['d_model']}, {c['heads']} heads, {c['attention']}: "
          f"step {b['step_ms']:.2f} ms (profiled {p['step_ms']:.2f}), kernels {kern:.2f} ms measured, "
          f"{b['est_h100_step_ms']:.2f} ms H100 estimate; {b['launches_per_step']:.0f} launches, "
          f"{b['syncs_per_step']:.0f} sync, {b['allocs_per_step']:.0f} allocs, "
          f"{b['h2d_bytes_per_step'] / 1e6:.1f} MB up per step")
    for k in p["kernels"][:8]:
        print(f"    {k['name']:40s} {k['launches']:4.0f} launches {k['measured_us']:9.1f} us measured "
              f"{k['est_h100_us']:9.1f} us est")
    # every kernel timed, and the kernels' device time inside the step's wall time
    ok &= 0 < kern <= p["step_ms"] * 1.02 and all(k["measured_us"] > 0 for k in p["kernels"])
sys.exit(0 if ok else 1)
EOF
}
step "bench --device cuda --json (default and Numerai shapes)" bench_shapes
synced_tests() { ERAENGINE_CUDA_SYNC=1 gpu_tests cuda; }
# only worth its minutes when a test failed (the fault then names its kernel), or when asked
if [[ $FAILED != 0 || "${GPU_CHECK_SYNCED:-0}" == 1 ]]; then
    step "every device-generic test on cuda, ERAENGINE_CUDA_SYNC=1" synced_tests
else
    echo "SKIP the synced rerun (every test passed; GPU_CHECK_SYNCED=1 runs it anyway)" | tee -a "$REPORT"
fi

if command -v compute-sanitizer >/dev/null 2>&1; then
    # the test binaries themselves (cargo would run the sanitizer on rustc); every case is tens of
    # times slower under the sanitizer, so properties run at most SANITIZER_CASES cases each
    # (default 6) and a run is stopped after SANITIZER_S seconds (default 120; a stop is a FAIL)
    for name in gpu_ops gpu_ops2; do
        if [[ -n "$PREBUILT" ]]; then
            bin="$WORK/bundle/tests/$name"
        else
            bin="$(ls -t target/release/deps/$name-* | grep -v '\.d$' | head -1)"
        fi
        for tool in memcheck racecheck; do
            step "compute-sanitizer $tool $name" env ERAENGINE_MAX_CASES="${SANITIZER_CASES:-6}" \
                timeout "${SANITIZER_S:-120}" compute-sanitizer --tool "$tool" --error-exitcode 1 "$bin" cuda
        done
    done
else
    echo "SKIP compute-sanitizer (not installed)" | tee -a "$REPORT"
fi

echo "== result: $([[ $FAILED == 0 ]] && echo PASS || echo FAIL)" | tee -a "$REPORT"
echo "report: $REPORT"
exit "$FAILED"
