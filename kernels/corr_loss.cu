// Per-era Pearson correlation loss (src/ops/corr_loss.rs, docs/model.md), ŷ, y: [n, t], mask: [n]:
//   t_ik = m_i · [y_ik not NaN]; per column k: N, means ŷ̄, ȳ; a = ŷ − ŷ̄, b = y − ȳ;
//   ρ_k = S_ab / (√(S_aa + ε) √(S_bb + ε)); columns with N ≥ 2 and S_bb > 0 count (K of them);
//   corr = Σ ρ_k / K.  stats[k] = (ŷ̄, ȳ, c1 = 1/(K s_a s_b), c2 = S_ab/(K s_a³ s_b)).
// Two passes over the rows, for digits (ŷ sits near a constant with a small spread, where raw
// moments cancel):
// corr_loss_sums_fwd_f32: grid (blocks, t): partial[(k·blocks + b)·3 + {0,1,2}] = (Σ t, Σ t ŷ, Σ t y)
// corr_loss_means_fwd_f32: grid (1, t), 32 threads: stats[k] = (ŷ̄, ȳ, N, 0) (f64, fixed order)
// corr_loss_moments_fwd_f32: grid (blocks, t): partial[...] = (Σ t a b, Σ t a², Σ t b²)
// corr_loss_reduce_fwd_f32: one block of 32 threads: stats[k].{c1, c2}, parts = (corr, K)
// corr_loss_bwd_f32: elementwise over n·t: dŷ += −w t (b c1 − a c2)  (ACCUMULATES)
#include "common.cuh"

#define CORR_EPS 1e-8

__device__ __forceinline__ float corr_weight_of(const float* y, const float* mask, unsigned int t,
                                                unsigned long long e) {
    const float yv = y[e];
    const float m = mask[e / t];
    return (isnan(yv) || m == 0.0f) ? 0.0f : m;
}

extern "C" __global__ void corr_loss_sums_fwd_f32(CorrLossParams p) {
    __shared__ float scratch[32];
    const unsigned int k = blockIdx.y;
    float sw = 0.0f, sp = 0.0f, sy = 0.0f;
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += gridDim.x * blockDim.x) {
        const unsigned long long e = (unsigned long long)i * p.t + k;
        const float w = corr_weight_of(p.y, p.mask, p.t, e);
        if (w == 0.0f) continue;
        sw += w;
        sp += w * p.yhat[e];
        sy += w * p.y[e];
    }
    sw = block_sum(sw, scratch);
    sp = block_sum(sp, scratch);
    sy = block_sum(sy, scratch);
    if (threadIdx.x == 0) {
        float* out = p.partial + 3ull * ((unsigned long long)k * gridDim.x + blockIdx.x);
        out[0] = sw;
        out[1] = sp;
        out[2] = sy;
    }
}

extern "C" __global__ void corr_loss_means_fwd_f32(CorrLossParams p) {
    const unsigned int k = blockIdx.y;
    const unsigned int lane = threadIdx.x & 31u;
    double sw = 0.0, sp = 0.0, sy = 0.0;
    for (unsigned int b = lane; b < p.blocks; b += 32u) {
        const float* in = p.partial + 3ull * ((unsigned long long)k * p.blocks + b);
        sw += (double)in[0];
        sp += (double)in[1];
        sy += (double)in[2];
    }
    sw = warp_sum(sw);
    sp = warp_sum(sp);
    sy = warp_sum(sy);
    if (threadIdx.x == 0) {
        float* s = p.stats + 4ull * k;
        s[0] = sw > 0.0 ? (float)(sp / sw) : 0.0f;
        s[1] = sw > 0.0 ? (float)(sy / sw) : 0.0f;
        s[2] = (float)sw;
        s[3] = 0.0f;
    }
}

extern "C" __global__ void corr_loss_moments_fwd_f32(CorrLossParams p) {
    __shared__ float scratch[32];
    const unsigned int k = blockIdx.y;
    const float mp = p.stats[4ull * k + 0];
    const float my = p.stats[4ull * k + 1];
    float sab = 0.0f, saa = 0.0f, sbb = 0.0f;
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += gridDim.x * blockDim.x) {
        const unsigned long long e = (unsigned long long)i * p.t + k;
        const float w = corr_weight_of(p.y, p.mask, p.t, e);
        if (w == 0.0f) continue;
        const float a = p.yhat[e] - mp;
        const float b = p.y[e] - my;
        sab += w * a * b;
        saa += w * a * a;
        sbb += w * b * b;
    }
    sab = block_sum(sab, scratch);
    saa = block_sum(saa, scratch);
    sbb = block_sum(sbb, scratch);
    if (threadIdx.x == 0) {
        float* out = p.partial + 3ull * ((unsigned long long)k * gridDim.x + blockIdx.x);
        out[0] = sab;
        out[1] = saa;
        out[2] = sbb;
    }
}

extern "C" __global__ void corr_loss_reduce_fwd_f32(CorrLossParams p) {
    const unsigned int lane = threadIdx.x & 31u;
    // first sweep: which columns count, and K
    unsigned int heads = 0;
    double rho_sum = 0.0;
    for (unsigned int k = 0; k < p.t; ++k) {
        double sab = 0.0, saa = 0.0, sbb = 0.0;
        for (unsigned int b = lane; b < p.blocks; b += 32u) {
            const float* in = p.partial + 3ull * ((unsigned long long)k * p.blocks + b);
            sab += (double)in[0];
            saa += (double)in[1];
            sbb += (double)in[2];
        }
        sab = warp_sum(sab);
        saa = warp_sum(saa);
        sbb = warp_sum(sbb);
        const double count = (double)p.stats[4ull * k + 2];
        const bool counts = count >= 2.0 && sbb > 0.0;
        const double sa = sqrt(saa + CORR_EPS);
        const double sb = sqrt(sbb + CORR_EPS);
        if (counts) {
            heads += 1u;
            rho_sum += sab / (sa * sb);
        }
        // keep (sa·sb, S_ab/sa³sb) unscaled by K for now; zero for a column that does not count
        __syncwarp();
        if (threadIdx.x == 0) {
            float* s = p.stats + 4ull * k;
            if (counts) {
                s[2] = (float)(1.0 / (sa * sb));
                s[3] = (float)(sab / (sa * sa * sa * sb));
            } else {
                s[0] = 0.0f;
                s[1] = 0.0f;
                s[2] = 0.0f;
                s[3] = 0.0f;
            }
        }
    }
    __syncwarp();
    if (threadIdx.x == 0) {
        const double kk = heads > 0u ? (double)heads : 1.0;
        for (unsigned int k = 0; k < p.t; ++k) {
            float* s = p.stats + 4ull * k;
            s[2] = (float)((double)s[2] / kk);
            s[3] = (float)((double)s[3] / kk);
        }
        p.parts[0] = heads > 0u ? (float)(rho_sum / (double)heads) : 0.0f;
        p.parts[1] = (float)heads;
    }
}

extern "C" __global__ void corr_loss_bwd_f32(CorrLossParams p) {
    const unsigned long long total = (unsigned long long)p.n * p.t;
    for (unsigned long long e = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (unsigned long long)gridDim.x * blockDim.x) {
        const float w = corr_weight_of(p.y, p.mask, p.t, e);
        if (w == 0.0f) continue;
        const float* s = p.stats + 4ull * (e % p.t);
        const float a = p.yhat[e] - s[0];
        const float b = p.y[e] - s[1];
        p.dyhat[e] += -p.weight * w * (b * s[2] - a * s[3]);
    }
}
