// Optimiser kernels.
// adam_fwd_f32 (AdamW, decoupled weight decay), elementwise over n, grad g' = g · grad_scale:
//   m = β1 m + (1 − β1) g';  v = β2 v + (1 − β2) g'²
//   p −= lr (m / bc1 / (√(v / bc2) + ε) + wd · p),  bc1 = 1 − β1^step, bc2 = 1 − β2^step (host)
// sum_squares_fwd_f32: Σ g² in f64 for global-norm clipping; grid-stride, block reduction
//   (static shared 32 doubles), partial[blockIdx.x]; sum_squares_reduce_fwd_f32: one warp sums the
//   partials in a fixed order into out[0].
#include "common.cuh"

extern "C" __global__ void adam_fwd_f32(AdamParams p) {
    GRID_STRIDE(i, p.n) {
        const float g = p.g[i] * p.grad_scale;
        const float m = p.beta1 * p.m[i] + (1.0f - p.beta1) * g;
        const float v = p.beta2 * p.v[i] + (1.0f - p.beta2) * g * g;
        p.m[i] = m;
        p.v[i] = v;
        const float mhat = m / p.bc1;
        const float vhat = v / p.bc2;
        p.p[i] -= p.lr * (mhat / (sqrtf(vhat) + p.eps) + p.weight_decay * p.p[i]);
    }
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
