// Sinusoidal positional encoding by row index within the era (SPEC §3), added in place to h[n, d]:
//   PE(i, 2j) = sin(i / 10000^(2j/d)),  PE(i, 2j+1) = cos(i / 10000^(2j/d))
// computed in f64 (as sinpi/cospi of angle/π) and rounded once, as the CPU op (src/ops/elementwise.rs). Its gradient is the
// identity, so there is no backward kernel and nothing is saved.
// pos_enc_add_fwd_f32: elementwise, grid-stride over n·d, 256 threads per block.
#include "common.cuh"

extern "C" __global__ void pos_enc_add_fwd_f32(PosEncParams p) {
    const unsigned long long total = (unsigned long long)p.n * p.d;
    GRID_STRIDE(e, total) {
        const unsigned long long i = e / p.d;
        const unsigned int c = (unsigned int)(e - i * p.d);
        const double inv_freq = 1.0 / pow(10000.0, (double)(c - (c & 1u)) / (double)p.d);
        // angle / π for sinpi/cospi: their argument reduction is exact and needs no stack frame
        // (sin/cos of a large double argument fall back to a Payne–Hanek reduction in local memory);
        // the relative error of the division, ~1e-16, is far below f32 resolution
        const double turns = (double)i * inv_freq * 0.31830988618379067154;
        p.h[e] += (float)((c & 1u) ? cospi(turns) : sinpi(turns));
    }
}
