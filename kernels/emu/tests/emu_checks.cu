// Emulator-only kernels (never compiled by NVRTC): each one exists to prove that the emulator
// catches a class of kernel bug. tests/emu_safety.rs launches them.
//   emu_sum_nobarrier_fwd_f32 / emu_sum_barrier_fwd_f32: out[0] = Σ inp[0..blockDim) through dynamic
//     shared memory, without / with the __syncthreads between the writes and thread 0's read.
//   emu_oob_write_fwd_f32: writes out[n] (one past the end) — ASan must report it.
//   emu_divergent_shuffle_fwd_f32: only lanes < 16 shuffle with a full mask.
//   emu_shuffle_outside_mask_fwd_f32: lanes 0..15 (mask 0xffff) read lane 20.
//   emu_divergent_barrier_fwd_f32: a = 0: threads < 16 wait at a barrier the others skip;
//     a = 1: two halves wait at two different barriers.
//   emu_warp_ops_fwd_f32: out[tid] = shfl_down(v,1) + shfl(v,0) + ballot(v odd) bits + shfl_xor(v,3)
//     with v = inp[tid]; checked lane by lane against the CUDA definition.
//   emu_deadlock_fwd_f32: lane 0 shuffles with lane 1, which goes on to wait at __syncthreads.
//   emu_philox_fwd_f32: out[0..4) = Philox4x32-10(counter = inp bits [0..4), key = inp bits [4..6)).
//   emu_subwarp_fwd_f32: half-warps run different numbers of collectives on their own masks.
#include "common.cuh"

struct EmuTestParams {
    float* out;
    const float* inp;
    unsigned int n;
    unsigned int a;
    unsigned int b;
    unsigned int c;
};

extern "C" __global__ void emu_sum_nobarrier_fwd_f32(EmuTestParams p) {
    DYN_SHARED(float, sh);
    sh[threadIdx.x] = p.inp[threadIdx.x];
    if (threadIdx.x == 0) {
        float s = 0.0f;
        for (unsigned int i = 0; i < blockDim.x; ++i) s += sh[i];
        p.out[0] = s;
    }
}

extern "C" __global__ void emu_sum_barrier_fwd_f32(EmuTestParams p) {
    DYN_SHARED(float, sh);
    sh[threadIdx.x] = p.inp[threadIdx.x];
    __syncthreads();
    if (threadIdx.x == 0) {
        float s = 0.0f;
        for (unsigned int i = 0; i < blockDim.x; ++i) s += sh[i];
        p.out[0] = s;
    }
}

extern "C" __global__ void emu_oob_write_fwd_f32(EmuTestParams p) {
    if (threadIdx.x == 0) p.out[p.n] = 1.0f;
}

extern "C" __global__ void emu_divergent_shuffle_fwd_f32(EmuTestParams p) {
    float v = p.inp[threadIdx.x];
    if ((threadIdx.x & 31u) < 16u) v = __shfl_xor_sync(FULL_MASK, v, 1);
    p.out[threadIdx.x] = v;
}

extern "C" __global__ void emu_shuffle_outside_mask_fwd_f32(EmuTestParams p) {
    float v = p.inp[threadIdx.x];
    if ((threadIdx.x & 31u) < 16u) v = __shfl_sync(0x0000ffffu, v, 20);
    p.out[threadIdx.x] = v;
}

extern "C" __global__ void emu_divergent_barrier_fwd_f32(EmuTestParams p) {
    if (p.a == 0u) {
        if (threadIdx.x < 16u) __syncthreads();
    } else {
        if (threadIdx.x < 16u) {
            __syncthreads();
        } else {
            __syncthreads();
        }
    }
    p.out[threadIdx.x] = 1.0f;
}

extern "C" __global__ void emu_warp_ops_fwd_f32(EmuTestParams p) {
    const float v = p.inp[threadIdx.x];
    const float down = __shfl_down_sync(FULL_MASK, v, 1);
    const float first = __shfl_sync(FULL_MASK, v, 0);
    const unsigned int odd = __ballot_sync(FULL_MASK, ((int)v) & 1);
    const float x = __shfl_xor_sync(FULL_MASK, v, 3);
    __syncwarp();
    p.out[4u * threadIdx.x + 0u] = down;
    p.out[4u * threadIdx.x + 1u] = first;
    p.out[4u * threadIdx.x + 2u] = (float)odd;
    p.out[4u * threadIdx.x + 3u] = x;
}

extern "C" __global__ void emu_deadlock_fwd_f32(EmuTestParams p) {
    float v = p.inp[threadIdx.x];
    if (threadIdx.x == 0u) v = __shfl_xor_sync(0x3u, v, 1);  // lane 1 never joins
    __syncthreads();
    p.out[threadIdx.x] = v;
}

extern "C" __global__ void emu_philox_fwd_f32(EmuTestParams p) {
    if (threadIdx.x != 0u) return;
    const unsigned int* w = reinterpret_cast<const unsigned int*>(p.inp);
    const Philox4 r = philox4x32_10(w[0], w[1], w[2], w[3], w[4], w[5]);
    unsigned int* o = reinterpret_cast<unsigned int*>(p.out);
    for (int i = 0; i < 4; ++i) o[i] = r.v[i];
}

// Legal independent-thread-scheduling code: the two half-warps run different numbers of
// collectives on their own masks, then the whole warp meets. out[tid] = the final value.
extern "C" __global__ void emu_subwarp_fwd_f32(EmuTestParams p) {
    float v = p.inp[threadIdx.x];
    if ((threadIdx.x & 31u) < 16u) {
        v += __shfl_xor_sync(0x0000ffffu, v, 1);
        v += __shfl_xor_sync(0x0000ffffu, v, 2);
    } else {
        v += __shfl_xor_sync(0xffff0000u, v, 4);
    }
    v += __shfl_xor_sync(FULL_MASK, v, 16);
    p.out[threadIdx.x] = v;
}
