// Masked MSE + sparsity loss (SPEC §3), yhat, y: [n, t], mask: [n], g: [f]:
//   t_ik = m_i · [y_ik not NaN],  count = Σ t,  mse = Σ t (ŷ − y)² / count (0 when count = 0)
//   sparsity = Σ_f g_f / f,  loss = mse + λ · sparsity
// Backward with dL = 1 (ACCUMULATES): dŷ_ik += 2 t_ik (ŷ_ik − y_ik) / count,  dg_f += λ / f
// mse_sparsity_fwd_f32: grid-stride over the n·t targets and the f gates, block reduction
//   (warp shuffles + 32 floats of static shared memory), partial[blockIdx.x] = (sse, count, Σg).
// mse_sparsity_reduce_fwd_f32: one block of 32 threads (one warp): sums the partials in f64 in a
//   fixed order and writes parts = (loss, mse, sparsity, count). The host reads parts once per step.
// mse_sparsity_bwd_f32: elementwise over max(n·t, f), reads count from parts[3] on the device.
#include "common.cuh"

__device__ __forceinline__ float target_weight(const LossFwdParams& p, unsigned long long e, float* diff) {
    const float yv = p.y[e];
    const float m = p.mask[e / p.t];
    if (isnan(yv) || m == 0.0f) {
        *diff = 0.0f;
        return 0.0f;
    }
    *diff = p.yhat[e] - yv;
    return m;
}

extern "C" __global__ void mse_sparsity_fwd_f32(LossFwdParams p) {
    __shared__ float scratch[32];
    const unsigned long long total = (unsigned long long)p.n * p.t;
    float sse = 0.0f;
    float count = 0.0f;
    float gsum = 0.0f;
    GRID_STRIDE(e, total) {
        float diff;
        const float w = target_weight(p, e, &diff);
        sse += w * diff * diff;
        count += w;
    }
    GRID_STRIDE(k, p.f) gsum += p.g[k];
    sse = block_sum(sse, scratch);
    count = block_sum(count, scratch);
    gsum = block_sum(gsum, scratch);
    if (threadIdx.x == 0) {
        p.partial[3u * blockIdx.x + 0u] = sse;
        p.partial[3u * blockIdx.x + 1u] = count;
        p.partial[3u * blockIdx.x + 2u] = gsum;
    }
}

extern "C" __global__ void mse_sparsity_reduce_fwd_f32(LossReduceParams p) {
    const unsigned int lane = threadIdx.x & 31u;
    double sse = 0.0, count = 0.0, gsum = 0.0;
    for (unsigned int b = lane; b < p.blocks; b += 32u) {
        sse += (double)p.partial[3u * b + 0u];
        count += (double)p.partial[3u * b + 1u];
        gsum += (double)p.partial[3u * b + 2u];
    }
    sse = warp_sum(sse);
    count = warp_sum(count);
    gsum = warp_sum(gsum);
    if (threadIdx.x == 0) {
        const double mse = count > 0.0 ? sse / count : 0.0;
        const double sparsity = p.f > 0u ? gsum / (double)p.f : 0.0;
        p.parts[0] = (float)(mse + (double)p.lambda * sparsity);
        p.parts[1] = (float)mse;
        p.parts[2] = (float)sparsity;
        p.parts[3] = (float)count;
    }
}

extern "C" __global__ void mse_sparsity_bwd_f32(LossBwdParams p) {
    const unsigned long long total = (unsigned long long)p.n * p.t;
    const float count = p.parts[3];
    const float scale = count > 0.0f ? 2.0f / count : 0.0f;
    const unsigned long long len = total > p.f ? total : p.f;
    GRID_STRIDE(e, len) {
        if (e < total) {
            const float yv = p.y[e];
            const float m = p.mask[e / p.t];
            if (!isnan(yv) && m != 0.0f) p.dyhat[e] += scale * m * (p.yhat[e] - yv);
        }
        if (e < p.f) p.dg[e] += p.lambda / (float)p.f;
    }
}
