#!/usr/bin/env bash
# Compile gate for kernels/*.cu, runnable on any Linux x86_64 machine (no GPU, no CUDA toolkit):
#  1. installs pinned NVRTC and nvcc (for ptxas) wheels from PyPI into .toolchain/cuda if absent;
#  2. builds the crate with ERAENGINE_REQUIRE_NVRTC=1, so build.rs compiles every kernel file with
#     NVRTC for compute_80/compute_90 (PTX) and sm_80/sm_90 (cubin) — a compile error fails here
#     with NVRTC's log — and writes the PTX to target/ptx; runs tests/gpu_cuda.rs on that build
#     (every module embeds its four images);
#  3. runs `ptxas -v -warn-spills -Werror` on each PTX for sm_80 and sm_90, writes per-kernel
#     registers / static shared memory / stack / spills to target/kernel_report.txt, and fails if a
#     kernel spills or exceeds its budget in kernels/budgets.txt.
# Usage: scripts/kernel_gate.sh            (from anywhere inside the repository)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CUDA_WHEEL_VERSION="12.8.93"   # CUDA 12.8: matches cudarc's cuda-12080 feature (docs/gpu.md)
TOOLCHAIN="$ROOT/.toolchain/cuda"
NVRTC_LIB="$TOOLCHAIN/nvidia/cuda_nvrtc/lib/libnvrtc.so.12"
PTXAS="$TOOLCHAIN/nvidia/cuda_nvcc/bin/ptxas"
PTX_DIR="$ROOT/target/ptx"
REPORT="$ROOT/target/kernel_report.txt"
BUDGETS="$ROOT/kernels/budgets.txt"

if [[ ! -f "$NVRTC_LIB" || ! -x "$PTXAS" ]]; then
    echo "kernel_gate: installing nvidia-cuda-nvrtc-cu12 / nvidia-cuda-nvcc-cu12 $CUDA_WHEEL_VERSION into $TOOLCHAIN"
    python3 -m pip install --quiet --no-deps --target "$TOOLCHAIN" \
        "nvidia-cuda-nvrtc-cu12==$CUDA_WHEEL_VERSION" "nvidia-cuda-nvcc-cu12==$CUDA_WHEEL_VERSION"
fi

rm -rf "$PTX_DIR"
echo "kernel_gate: NVRTC build (compute_80, compute_90, sm_80, sm_90)"
# libnvrtc on the loader path too: gpu_cuda's runtime-fallback test compiles cubins with it
ERAENGINE_NVRTC_LIB="$NVRTC_LIB" ERAENGINE_REQUIRE_NVRTC=1 ERAENGINE_PTX_DIR="$PTX_DIR" \
    LD_LIBRARY_PATH="$(dirname "$NVRTC_LIB")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    cargo test --release --quiet --test gpu_cuda --test gpu_param_abi

shopt -s nullglob
ptx_files=("$PTX_DIR"/*.ptx)
if (( ${#ptx_files[@]} == 0 )); then
    echo "kernel_gate: no PTX was produced in $PTX_DIR" >&2
    exit 1
fi

tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
{
    echo "# kernel report: ptxas $("$PTXAS" --version | tail -1), NVRTC $(cat "$PTX_DIR/nvrtc_version.txt")"
    echo "# arch   kernel                          regs  smem_static  stack  spill_st  spill_ld"
} > "$tmp"
for arch in 80 90; do
    for ptx in "$PTX_DIR"/*.compute_"$arch".ptx; do
        log="$("$PTXAS" -v -warn-spills -Werror -arch=sm_"$arch" "$ptx" -o /dev/null 2>&1)" || {
            echo "$log" >&2
            echo "kernel_gate: ptxas failed on $(basename "$ptx") for sm_$arch (a spill is an error)" >&2
            exit 1
        }
        echo "$log" | awk -v arch="sm_$arch" '
            /Compiling entry function/ { match($0, /\x27[^\x27]+\x27/); name = substr($0, RSTART + 1, RLENGTH - 2); stack = 0; st = 0; ld = 0 }
            /bytes stack frame/ { stack = $1; st = $5; ld = $9 }
            /Used [0-9]+ registers/ {
                match($0, /Used [0-9]+ registers/); regs = substr($0, RSTART + 5, RLENGTH - 15) + 0
                smem = 0; if (match($0, /[0-9]+ bytes smem/)) smem = substr($0, RSTART, RLENGTH - 11) + 0
                printf "%-7s  %-30s  %4d  %11d  %5d  %8d  %8d\n", arch, name, regs, smem, stack, st, ld
            }'
    done
done >> "$tmp"
mv "$tmp" "$REPORT"
trap - EXIT
cat "$REPORT"

# budgets: "<kernel|*> <max registers> <max static shared bytes>"; the first matching line wins
fail=0
while read -r arch name regs smem stack st ld; do
    [[ "$arch" == \#* ]] && continue
    budget="$(awk -v k="$name" '!/^#/ && NF >= 3 && ($1 == k || $1 == "*") { print $2, $3; exit }' "$BUDGETS")"
    read -r max_regs max_smem <<< "$budget"
    if (( regs > max_regs || smem > max_smem )); then
        echo "kernel_gate: $name on $arch uses $regs registers / $smem B static shared, budget $max_regs / $max_smem" >&2
        fail=1
    fi
    if (( st > 0 || ld > 0 || stack > 0 )); then
        echo "kernel_gate: $name on $arch has a stack frame or spills ($stack B stack, $st/$ld B spilled)" >&2
        fail=1
    fi
done < "$REPORT"
if (( fail )); then
    echo "kernel_gate: FAILED (report in $REPORT)" >&2
    exit 1
fi
echo "kernel_gate: OK — $(grep -vc '^#' "$REPORT") kernel builds within budget, report in $REPORT"
