// Mask fill (src/ops/mask_fill/mod.rs): out[n,f] = (1 − fill) x + fill · mv[f], fill: [n,f] (0/1
// in use), mv: [f] the learned mask value; grid-stride over n·f.
// mask_fill_fwd_f32: out = (1 − fill) x + fill mv
// mask_fill_bwd_f32: out = dx, x = dout: dx += (1 − fill) dout (ACCUMULATES); dmv_f = Σ_i fill·dout
//   comes from column_sum_bwd_f32 (kernels/linear.cu).
#include "common.cuh"

extern "C" __global__ void mask_fill_fwd_f32(MaskFillParams p) {
    GRID_STRIDE(e, (unsigned long long)p.n * p.f) {
        const float m = p.fill[e];
        p.out[e] = (1.0f - m) * p.x[e] + m * p.mv[e % p.f];
    }
}

extern "C" __global__ void mask_fill_bwd_f32(MaskFillParams p) {
    GRID_STRIDE(e, (unsigned long long)p.n * p.f) {
        p.out[e] += (1.0f - p.fill[e]) * p.x[e];
    }
}
