// FiLM (src/ops/film.rs): out[n,d] = inp · (1 + γ) + β per row, γ, β: [d]; grid-stride over n·d.
// film_fwd_f32: out = inp (1 + γ) + β
// film_bwd_f32: out = dinp, inp = dout: dinp += dout (1 + γ)  (ACCUMULATES); dγ = Σ_i dout·inp and dβ = Σ_i dout come from
//   column_sum_bwd_f32 (kernels/linear.cu).
#include "common.cuh"

extern "C" __global__ void film_fwd_f32(FilmParams p) {
    const unsigned long long total = (unsigned long long)p.n * p.d;
    for (unsigned long long e = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (unsigned long long)gridDim.x * blockDim.x) {
        const unsigned int j = (unsigned int)(e % p.d);
        p.out[e] = p.inp[e] * (1.0f + p.gamma[j]) + p.beta[j];
    }
}

extern "C" __global__ void film_bwd_f32(FilmParams p) {
    const unsigned long long total = (unsigned long long)p.n * p.d;
    for (unsigned long long e = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (unsigned long long)gridDim.x * blockDim.x) {
        const unsigned int j = (unsigned int)(e % p.d);
        p.out[e] += p.inp[e] * (1.0f + p.gamma[j]);
    }
}
