// Gated linear unit (src/ops/glu): a, b, out: [n·m] elementwise, grid-stride, 256 threads per block.
//   glu_fwd_f32: out = σ(a) · b
//   glu_bwd_f32: out (= da) += dout · b · e⁻ᵃ σ(a)²;  out2 (= db) += dout · σ(a)  (ACCUMULATE)
// e⁻ᵃ with −a clamped at 88.7 as exp_f32 on the CPU (a comparison, so NaN propagates).
#include "common.cuh"

__device__ __forceinline__ float glu_exp_neg(float x) {
    const float nx = -x;
    return expf(nx > 88.7f ? 88.7f : nx);
}

extern "C" __global__ void glu_fwd_f32(GluParams p) {
    GRID_STRIDE(i, p.n) {
        p.out[i] = (1.0f / (1.0f + glu_exp_neg(p.a[i]))) * p.b[i];
    }
}

extern "C" __global__ void glu_bwd_f32(GluParams p) {
    GRID_STRIDE(i, p.n) {
        const float e = glu_exp_neg(p.a[i]);
        const float s = 1.0f / (1.0f + e);
        const float g = p.dout[i];
        p.out[i] += g * p.b[i] * (e * s * s);
        p.out2[i] += g * s;
    }
}
