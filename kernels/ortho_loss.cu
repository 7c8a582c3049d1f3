// Orthogonal-embedding loss (src/ops/ortho_loss/mod.rs, docs/model.md), h: [n, d],
// mask: [n] (a row counts when mask ≠ 0; n_v of them):
//   μ_j, σ_j = √(var_j + ε) over the counted rows; Z = (h − μ)/σ; C = ZᵀZ / n_v;
//   P = ‖C − I‖²_F / d²; Ĝ = 4w (C − I)/(d² n_v). n_v ≤ 1: P = 0, Ĝ = 0, no gradient.
// ortho_loss_stats_fwd_f32: grid d, one column per block: stats = (μ [d], 1/σ [d], n_v) (f64 sums)
// ortho_loss_gram_fwd_f32: grid (d, d), one entry of C per block: partial = C − I, gmat = Ĝ
// ortho_loss_reduce_fwd_f32: one block of 32 threads: parts[0] = Σ partial² / d² (f64, fixed order)
// ortho_loss_dz_bwd_f32: elementwise over n·d: scratch = dZ = u · Z Ĝ
// ortho_loss_cols_bwd_f32: grid d: scratch[n·d + j] = Σ u dZ_·j, scratch[n·d + d + j] = Σ u dZ_·j Z_·j
// ortho_loss_bwd_f32: elementwise: dh += u (dZ − a_j/n_v − Z b_j/n_v)/σ_j  (ACCUMULATES)
#include "common.cuh"

#define ORTHO_EPS 1e-5

__device__ __forceinline__ double ortho_z(const OrthoLossParams& p, unsigned int i, unsigned int j) {
    return ((double)p.h[(unsigned long long)i * p.d + j] - (double)p.stats[j]) * (double)p.stats[p.d + j];
}

extern "C" __global__ void ortho_loss_stats_fwd_f32(OrthoLossParams p) {
    __shared__ double scratch[32];
    const unsigned int j = blockIdx.x;
    double c = 0.0, s = 0.0;
    for (unsigned int i = threadIdx.x; i < p.n; i += blockDim.x) {
        if (p.mask[i] == 0.0f) continue;
        c += 1.0;
        s += (double)p.h[(unsigned long long)i * p.d + j];
    }
    c = block_sum(c, scratch);
    s = block_sum(s, scratch);
    const double mean = c > 0.0 ? s / c : 0.0;
    double v = 0.0;
    for (unsigned int i = threadIdx.x; i < p.n; i += blockDim.x) {
        if (p.mask[i] == 0.0f) continue;
        const double x = (double)p.h[(unsigned long long)i * p.d + j] - mean;
        v += x * x;
    }
    v = block_sum(v, scratch);
    if (threadIdx.x == 0) {
        const bool ok = c > 1.0;
        p.stats[j] = ok ? (float)mean : 0.0f;
        p.stats[p.d + j] = ok ? (float)(1.0 / sqrt(v / c + ORTHO_EPS)) : 0.0f;
        if (j == 0) p.stats[2ull * p.d] = (float)c;
    }
}

extern "C" __global__ void ortho_loss_gram_fwd_f32(OrthoLossParams p) {
    __shared__ double scratch[32];
    const unsigned int j = blockIdx.x;
    const unsigned int k = blockIdx.y;
    const double nv = (double)p.stats[2ull * p.d];
    double s = 0.0;
    if (nv > 1.0) {
        for (unsigned int i = threadIdx.x; i < p.n; i += blockDim.x) {
            if (p.mask[i] == 0.0f) continue;
            s += ortho_z(p, i, j) * ortho_z(p, i, k);
        }
    }
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) {
        const unsigned long long e = (unsigned long long)j * p.d + k;
        if (nv > 1.0) {
            const double diff = s / nv - (j == k ? 1.0 : 0.0);
            p.partial[e] = (float)diff;
            p.gmat[e] = (float)(4.0 * (double)p.weight * diff / ((double)p.d * (double)p.d * nv));
        } else {
            p.partial[e] = 0.0f;
            p.gmat[e] = 0.0f;
        }
    }
}

extern "C" __global__ void ortho_loss_reduce_fwd_f32(OrthoLossParams p) {
    const unsigned int lane = threadIdx.x & 31u;
    const unsigned long long len = (unsigned long long)p.d * p.d;
    double s = 0.0;
    for (unsigned long long e = lane; e < len; e += 32u) {
        const double x = (double)p.partial[e];
        s += x * x;
    }
    s = warp_sum(s);
    if (threadIdx.x == 0) p.parts[0] = len > 0 ? (float)(s / (double)len) : 0.0f;
}

extern "C" __global__ void ortho_loss_dz_bwd_f32(OrthoLossParams p) {
    const double nv = (double)p.stats[2ull * p.d];
    GRID_STRIDE(e, (unsigned long long)p.n * p.d) {
        const unsigned int i = (unsigned int)(e / p.d);
        const unsigned int j = (unsigned int)(e % p.d);
        double dz = 0.0;
        if (nv > 1.0 && p.mask[i] != 0.0f) {
            for (unsigned int k = 0; k < p.d; ++k) dz += ortho_z(p, i, k) * (double)p.gmat[(unsigned long long)k * p.d + j];
        }
        p.scratch[e] = (float)dz;
    }
}

extern "C" __global__ void ortho_loss_cols_bwd_f32(OrthoLossParams p) {
    __shared__ double scratch[32];
    const unsigned int j = blockIdx.x;
    double a = 0.0, b = 0.0;
    for (unsigned int i = threadIdx.x; i < p.n; i += blockDim.x) {
        if (p.mask[i] == 0.0f) continue;
        const double dz = (double)p.scratch[(unsigned long long)i * p.d + j];
        a += dz;
        b += dz * ortho_z(p, i, j);
    }
    a = block_sum(a, scratch);
    b = block_sum(b, scratch);
    if (threadIdx.x == 0) {
        const unsigned long long base = (unsigned long long)p.n * p.d;
        p.scratch[base + j] = (float)a;
        p.scratch[base + p.d + j] = (float)b;
    }
}

extern "C" __global__ void ortho_loss_bwd_f32(OrthoLossParams p) {
    const double nv = (double)p.stats[2ull * p.d];
    if (!(nv > 1.0)) return;
    const unsigned long long base = (unsigned long long)p.n * p.d;
    GRID_STRIDE(e, base) {
        const unsigned int i = (unsigned int)(e / p.d);
        const unsigned int j = (unsigned int)(e % p.d);
        if (p.mask[i] == 0.0f) continue;
        const double a = (double)p.scratch[base + j];
        const double b = (double)p.scratch[base + p.d + j];
        const double g = (double)p.stats[p.d + j] * ((double)p.scratch[e] - a / nv - ortho_z(p, i, j) * b / nv);
        p.dh[e] = (float)((double)p.dh[e] + g);
    }
}
