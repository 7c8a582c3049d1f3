// Row-broadcast add (src/ops/row_add): out[n,m] = x[n,m] + r[m] per row; grid-stride over n·m,
// 256 threads per block. The backward is accumulate_fwd_f32 (kernels/elementwise.cu: dx += dout)
// and column_sum_bwd_f32 (kernels/linear.cu: dr += Σ_i dout in f64).
#include "common.cuh"

extern "C" __global__ void row_add_fwd_f32(RowAddParams p) {
    const unsigned long long total = (unsigned long long)p.n * p.m;
    GRID_STRIDE(e, total) {
        p.out[e] = p.x[e] + p.r[(unsigned int)(e % p.m)];
    }
}
