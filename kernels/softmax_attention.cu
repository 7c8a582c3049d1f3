// Masked multi-head softmax cross-attention (SPEC §3 option; induced set attention,
// docs/model.md), flash style: never forms an nq × nk matrix.
// q, out, dout: [n, d] (n = query rows), k, v: [nk, d]; head hd owns columns [hd·dh, (hd+1)·dh);
// mask: [nk]; a key j takes part iff mask[j] ≠ 0 (every query row is a query). Self-attention is
// nk = n. With s_ij = Q_i·K_j / √dh over the query's keys:
//   O_i = Σ_j softmax_j(s_ij) V_j,  lse[hd·n + i] = log Σ_j exp(s_ij)   (saved for the backward)
// A query with no key at all outputs 0 and saves lse = 0, as the CPU op (src/ops/attention/mod.rs).
// Backward (ACCUMULATES into dq, dk, dv), scores recomputed from lse: P_ij = exp(s_ij − lse_i),
// D_i = dO_i·O_i, dS_ij = P_ij (dO_i·V_j − D_i);
//   dQ_i += Σ_j dS_ij K_j / √dh,  dK_j += Σ_i dS_ij Q_i / √dh,  dV_j += Σ_i P_ij dO_i.
// A query with no key gets nothing from dQ (no key is visited), and adds nothing to dK, dV (keys
// only exist when some key is valid, and then every query has one).
//
// Grid mapping (all but the D kernel): grid (⌈rows / QB⌉, h), block QB = blockDim.x threads (64,
// or 32 for wide heads), thread t owns row blockIdx.x·QB + t of head blockIdx.y (a query row in
// fwd and dq, a key row in dkv). The other side's rows stream through dynamic shared memory in
// tiles of `tile` rows (≤ 32, sized on the host to fit 48 KiB): tile area a[tile·dh] | b[tile·dh]
// | s1[tile] | s2[tile], then per-thread rows of `stride` floats (dh rounded up to odd:
// conflict-free) for the accumulators, r0 | r1, each [QB·stride]; the thread's own input rows are
// read from global memory (cached), so a head of width ≤ ~180 fits. Two barriers per tile;
// threads past the last row (and masked key rows in dkv) only help loading.
// softmax_attention_fwd_f32: a = K, b = V, s1 = mask; r0 = output accumulator; online softmax
//   (running max m, sum l, the accumulator rescaled when m grows).
// softmax_attention_d_bwd_f32: D[hd·n + i] = dO_i·O_i, one thread per (i, hd), grid-stride.
// softmax_attention_dq_bwd_f32: a = K, b = V, s1 = mask; r0 = dQ accumulator.
// softmax_attention_dkv_bwd_f32: a = Q, b = dO, s1 = lse, s2 = D; r0 / r1 = dK / dV accumulators. Each output row is written by one thread: no atomics.
#include "common.cuh"

struct SaShared {
    float* a;
    float* b;
    float* s1;
    float* s2;
    float* r0;
    float* r1;
};

__device__ __forceinline__ SaShared sa_shared(float* base, const SoftmaxAttnParams& p) {
    SaShared s;
    const unsigned int td = p.tile * p.dh;
    const unsigned int rs = blockDim.x * p.stride;
    s.a = base;
    s.b = base + td;
    s.s1 = base + 2u * td;
    s.s2 = s.s1 + p.tile;
    // this thread's rows
    float* rows = s.s2 + p.tile + threadIdx.x * p.stride;
    s.r0 = rows;
    s.r1 = rows + rs;
    return s;
}

// copies `cnt` rows starting at row j0 of head hd of x [n, d] into dst [tile][dh] (zeros past cnt)
__device__ __forceinline__ void sa_load_tile(float* dst, const float* x, const SoftmaxAttnParams& p,
                                             unsigned int j0, unsigned int cnt, unsigned int hd) {
    for (unsigned int t = threadIdx.x; t < p.tile * p.dh; t += blockDim.x) {
        const unsigned int r = t / p.dh;
        const unsigned int a = t - r * p.dh;
        dst[t] = r < cnt ? x[(unsigned long long)(j0 + r) * p.d + hd * p.dh + a] : 0.0f;
    }
}

__device__ __forceinline__ float sa_dot(const float* x, const float* y, unsigned int dh) {
    float s = 0.0f;
    for (unsigned int a = 0; a < dh; ++a) s += x[a] * y[a];
    return s;
}

extern "C" __global__ void softmax_attention_fwd_f32(SoftmaxAttnParams p) {
    DYN_SHARED(float, base);
    const SaShared sh = sa_shared(base, p);
    const unsigned int dh = p.dh;
    const unsigned int hd = blockIdx.y;
    const unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    const bool active = i < p.n;
    const unsigned long long off = (unsigned long long)i * p.d + hd * dh;  // row i of head hd
    const float* qr = p.q + off;  // read only when active
    for (unsigned int a = 0; a < dh; ++a) sh.r0[a] = 0.0f;
    float m = __int_as_float((int)0xff800000u);  // −inf
    float l = 0.0f;
    for (unsigned int j0 = 0; j0 < p.nk; j0 += p.tile) {
        const unsigned int cnt = min(p.tile, p.nk - j0);
        sa_load_tile(sh.a, p.k, p, j0, cnt, hd);
        sa_load_tile(sh.b, p.v, p, j0, cnt, hd);
        for (unsigned int t = threadIdx.x; t < p.tile; t += blockDim.x) sh.s1[t] = t < cnt ? p.mask[j0 + t] : 0.0f;
        __syncthreads();
        if (active) {
            for (unsigned int t = 0; t < cnt; ++t) {
                if (sh.s1[t] == 0.0f) continue;
                const float s = p.scale * sa_dot(qr, sh.a + t * dh, dh);
                if (s > m) {
                    // rescale what was summed under the old maximum (exp(−inf) = 0 the first time)
                    const float corr = expf(m - s);
                    l *= corr;
                    for (unsigned int a = 0; a < dh; ++a) sh.r0[a] *= corr;
                    m = s;
                }
                const float pw = expf(s - m);
                l += pw;
                const float* vr = sh.b + t * dh;
                for (unsigned int a = 0; a < dh; ++a) sh.r0[a] += pw * vr[a];
            }
        }
        __syncthreads();  // the tile is overwritten next
    }
    if (!active) return;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (unsigned int a = 0; a < dh; ++a) p.out[off + a] = sh.r0[a] * inv;
    p.out2[(unsigned long long)hd * p.n + i] = l > 0.0f ? m + logf(l) : 0.0f;
}

extern "C" __global__ void softmax_attention_d_bwd_f32(SoftmaxAttnParams p) {
    const unsigned long long total = (unsigned long long)p.n * p.h;
    GRID_STRIDE(t, total) {
        const unsigned long long i = t / p.h;
        const unsigned int hd = (unsigned int)(t - i * p.h);
        const unsigned long long off = i * p.d + hd * p.dh;
        p.dd[(unsigned long long)hd * p.n + i] = sa_dot(p.dout + off, p.o + off, p.dh);
    }
}

extern "C" __global__ void softmax_attention_dq_bwd_f32(SoftmaxAttnParams p) {
    DYN_SHARED(float, base);
    const SaShared sh = sa_shared(base, p);
    const unsigned int dh = p.dh;
    const unsigned int hd = blockIdx.y;
    const unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    const bool active = i < p.n;
    const unsigned long long off = (unsigned long long)i * p.d + hd * dh;
    const float* qr = p.q + off;  // read only when active
    const float* go = p.dout + off;
    for (unsigned int a = 0; a < dh; ++a) sh.r0[a] = 0.0f;
    const float lse = active ? p.lse[(unsigned long long)hd * p.n + i] : 0.0f;
    const float di = active ? p.dd[(unsigned long long)hd * p.n + i] : 0.0f;
    for (unsigned int j0 = 0; j0 < p.nk; j0 += p.tile) {
        const unsigned int cnt = min(p.tile, p.nk - j0);
        sa_load_tile(sh.a, p.k, p, j0, cnt, hd);
        sa_load_tile(sh.b, p.v, p, j0, cnt, hd);
        for (unsigned int t = threadIdx.x; t < p.tile; t += blockDim.x) sh.s1[t] = t < cnt ? p.mask[j0 + t] : 0.0f;
        __syncthreads();
        if (active) {
            for (unsigned int t = 0; t < cnt; ++t) {
                if (sh.s1[t] == 0.0f) continue;
                const float* kr = sh.a + t * dh;
                const float pw = expf(p.scale * sa_dot(qr, kr, dh) - lse);
                const float ds = pw * (sa_dot(go, sh.b + t * dh, dh) - di);
                for (unsigned int a = 0; a < dh; ++a) sh.r0[a] += ds * kr[a];
            }
        }
        __syncthreads();
    }
    if (!active) return;
    for (unsigned int a = 0; a < dh; ++a) p.out[off + a] += p.scale * sh.r0[a];
}

extern "C" __global__ void softmax_attention_dkv_bwd_f32(SoftmaxAttnParams p) {
    DYN_SHARED(float, base);
    const SaShared sh = sa_shared(base, p);
    const unsigned int dh = p.dh;
    const unsigned int hd = blockIdx.y;
    const unsigned int j = blockIdx.x * blockDim.x + threadIdx.x;
    // only real keys receive gradient; the other threads help load the query tiles
    const bool active = j < p.nk && p.mask[j] != 0.0f;
    const unsigned long long off = (unsigned long long)j * p.d + hd * dh;
    const float* kr = p.k + off;  // read only when active
    const float* vr = p.v + off;
    for (unsigned int a = 0; a < dh; ++a) {
        sh.r0[a] = 0.0f;
        sh.r1[a] = 0.0f;
    }
    for (unsigned int i0 = 0; i0 < p.n; i0 += p.tile) {
        const unsigned int cnt = min(p.tile, p.n - i0);
        sa_load_tile(sh.a, p.q, p, i0, cnt, hd);
        sa_load_tile(sh.b, p.dout, p, i0, cnt, hd);
        for (unsigned int t = threadIdx.x; t < p.tile; t += blockDim.x) {
            sh.s1[t] = t < cnt ? p.lse[(unsigned long long)hd * p.n + i0 + t] : 0.0f;
            sh.s2[t] = t < cnt ? p.dd[(unsigned long long)hd * p.n + i0 + t] : 0.0f;
        }
        __syncthreads();
        if (active) {
            for (unsigned int t = 0; t < cnt; ++t) {
                const float* qr = sh.a + t * dh;
                const float* go = sh.b + t * dh;
                const float pw = expf(p.scale * sa_dot(qr, kr, dh) - sh.s1[t]);
                const float ds = pw * (sa_dot(go, vr, dh) - sh.s2[t]);
                for (unsigned int a = 0; a < dh; ++a) {
                    sh.r0[a] += ds * qr[a];
                    sh.r1[a] += pw * go[a];
                }
            }
        }
        __syncthreads();
    }
    if (!active) return;
    for (unsigned int a = 0; a < dh; ++a) {
        p.out[off + a] += p.scale * sh.r0[a];
        p.out2[off + a] += sh.r1[a];
    }
}
