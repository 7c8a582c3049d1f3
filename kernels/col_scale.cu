// Column scale of a weight matrix by the feature gate (src/ops/col_scale): the mapper's first layer
// reads x·(W ⊙ s)ᵀ instead of materialising x ⊙ s (docs/model.md). w[m,k] (nn.Linear layout: m
// outputs, k features), s_c = g_c·keep_c.
//   col_scale_fwd_f32: out = w ⊙ s, grid-stride over m·k.
//   col_scale_bwd_f32: out = dw: dw += dout ⊙ s (ACCUMULATES), and dg_c += keep_c·Σ_r dout_rc·w_rc, the sum
//     over the m rows in f64 in row order; one thread per column c, so the order is fixed.
#include "common.cuh"

extern "C" __global__ void col_scale_fwd_f32(ColScaleParams p) {
    const unsigned long long total = (unsigned long long)p.m * p.k;
    GRID_STRIDE(e, total) {
        const unsigned int c = (unsigned int)(e % p.k);
        p.out[e] = p.w[e] * (p.g[c] * p.keep[c]);
    }
}

extern "C" __global__ void col_scale_bwd_f32(ColScaleParams p) {
    GRID_STRIDE(c, p.k) {
        const float keep = p.keep[c];
        const float s = p.g[c] * keep;
        double acc = 0.0;
        for (unsigned int r = 0; r < p.m; ++r) {
            const unsigned long long e = (unsigned long long)r * p.k + c;
            const float d = p.dout[e];
            p.out[e] += d * s;
            acc += (double)d * (double)p.w[e];
        }
        p.dg[c] = (float)((double)p.dg[c] + (double)keep * acc);
    }
}
