# Sourced by scripts/gpu_check.sh and scripts/gpu_bundle.sh: the NVRTC that build.rs embeds cubins
# with (ERAENGINE_NVRTC_LIB, else the toolchain scripts/kernel_gate.sh installs in .toolchain/cuda,
# else the loader path), required, and loadable at run time too (the launcher's cubin fallback).
if [[ -z "${ERAENGINE_NVRTC_LIB:-}" && -f "$ROOT/.toolchain/cuda/nvidia/cuda_nvrtc/lib/libnvrtc.so.12" ]]; then
    export ERAENGINE_NVRTC_LIB="$ROOT/.toolchain/cuda/nvidia/cuda_nvrtc/lib/libnvrtc.so.12"
fi
# the same build environment for every cargo call (build.rs reruns when one of them changes)
export ERAENGINE_REQUIRE_NVRTC=1
if [[ -n "${ERAENGINE_NVRTC_LIB:-}" ]]; then
    export LD_LIBRARY_PATH="$(dirname "$ERAENGINE_NVRTC_LIB")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# the test files written once for every device (tests/gpu_common), plus gpu_cuda's own checks
gpu_test_names() {
    (cd "$ROOT/tests" && grep -l '^mod gpu_common;' ./*.rs | sed 's|^\./||; s|\.rs$||'; echo gpu_cuda) | sort -u
}
