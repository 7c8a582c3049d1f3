// Optimiser kernels.
// adam_fwd_f32 (AdamW, decoupled weight decay), elementwise over n, grad g' = g · grad_scale:
//   m = β1 m + (1 − β1) g';  v = β2 v + (1 − β2) g'²
//   p −= lr (m / bc1 / (√(v / bc2) + ε) + wd · p),  bc1 = 1 − β1^step, bc2 = 1 − β2^step (host)
// sum_squares_fwd_f32: Σ g² in f64 for global-norm clipping; grid-stride, block reduction
//   (static shared 32 doubles), partial[blockIdx.x]; sum_squares_reduce_fwd_f32: one warp sums the
//   partials in a fixed order into out[0].
// adam_multi_fwd_f32, sum_squares_multi_{,reduce_}fwd_f32: the same over every parameter tensor in
//   one launch each (a device table of tensors, see AdamMultiParams / SumSqMultiParams).
// clip_scale_fwd_f32: one thread turns every tensor's Σg² into the step's gradient scale on the
//   device (see ClipScaleParams), so the clipped Adam step needs no host round trip.
#include "common.cuh"

// One element's AdamW update (both Adam kernels; P is AdamParams or AdamMultiParams).
template <typename P>
__device__ __forceinline__ void adam_elem(const P& q, float* p, const float* gr, float* mo,
                                          float* ve, unsigned long long i, float scale) {
    const float g = gr[i] * scale;
    const float m = q.beta1 * mo[i] + (1.0f - q.beta1) * g;
    const float v = q.beta2 * ve[i] + (1.0f - q.beta2) * g * g;
    mo[i] = m;
    ve[i] = v;
    const float mhat = m / q.bc1;
    const float vhat = v / q.bc2;
    p[i] -= q.lr * (mhat / (sqrtf(vhat) + q.eps) + q.weight_decay * p[i]);
}

extern "C" __global__ void adam_fwd_f32(AdamParams p) {
    const float scale = p.scale ? p.scale[0] : p.grad_scale;
    if (isnan(scale)) return;
    GRID_STRIDE(i, p.n) { adam_elem(p, p.p, p.g, p.m, p.v, i, scale); }
}

extern "C" __global__ void sum_squares_fwd_f32(SumSqParams p) {
    __shared__ double scratch[32];
    double s = 0.0;
    GRID_STRIDE(i, p.n) {
        const double g = (double)p.g[i];
        s += g * g;
    }
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) p.partial[blockIdx.x] = s;
}

extern "C" __global__ void sum_squares_reduce_fwd_f32(SumSqReduceParams p) {
    double s = 0.0;
    for (unsigned int b = threadIdx.x; b < p.blocks; b += 32u) s += p.partial[b];
    s = warp_sum(s);
    if (threadIdx.x == 0) p.out[0] = s;
}

extern "C" __global__ void clip_scale_fwd_f32(ClipScaleParams p) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    double total = 0.0;
    for (unsigned int i = 0; i < p.n; ++i) {
        const double s = p.sums[i];
        if (!isfinite(s)) {
            p.scale[0] = __int_as_float(0x7fc00000);  // NaN: the Adam kernels skip the step
            return;
        }
        total += s;
    }
    const double k = p.eras > 1u ? (double)p.eras : 1.0;
    const double mean_norm = sqrt(total) / k;
    float c = 1.0f;
    if (p.clip > 0.0f && mean_norm > (double)p.clip) c = (float)((double)p.clip / mean_norm);
    p.scale[0] = p.eras <= 1u ? c : c / (float)p.eras;
}

extern "C" __global__ void adam_multi_fwd_f32(AdamMultiParams p) {
    const float scale = p.scale[0];
    if (isnan(scale)) return;
    GRID_STRIDE(e, p.total) {
        // the last tensor whose start ≤ e (starts ascend; empty tensors are skipped by ≤)
        unsigned int lo = 0, hi = p.count;
        while (hi - lo > 1u) {
            const unsigned int mid = (lo + hi) / 2u;
            if (p.tensors[mid].start <= e) lo = mid; else hi = mid;
        }
        const TensorRecord t = p.tensors[lo];
        adam_elem(p, t.p, t.g, t.m, t.v, e - t.start, scale);
    }
}

extern "C" __global__ void sum_squares_multi_fwd_f32(SumSqMultiParams p) {
    __shared__ double scratch[32];
    const TensorRecord t = p.tensors[blockIdx.y];
    double s = 0.0;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < t.n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        const double g = (double)t.g[i];
        s += g * g;
    }
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) p.partial[(unsigned long long)blockIdx.y * p.blocks + blockIdx.x] = s;
}

extern "C" __global__ void sum_squares_multi_reduce_fwd_f32(SumSqMultiParams p) {
    const double* part = p.partial + (unsigned long long)blockIdx.y * p.blocks;
    double s = 0.0;
    for (unsigned int b = threadIdx.x; b < p.blocks; b += 32u) s += part[b];
    s = warp_sum(s);
    if (threadIdx.x == 0) p.out[blockIdx.y] = s;
}
