// Masked multi-head linear attention (SPEC §3), φ(x) = elu(x) + 1, ε = 1e-6; never forms an n × n matrix.
// q, k, v, out: [n, d]; head hd owns columns [hd·dh, (hd+1)·dh); mask: [n].
//   S_hd = Σ_j m_j φ(K_j) V_jᵀ [dh, dh],  z_hd = Σ_j m_j φ(K_j) [dh]
//   O_i = φ(Q_i)ᵀ S / (φ(Q_i)·z + ε)
// Saved for the backward (as the CPU op, src/ops/attention.rs): s[hd·dh² + a·dh + b] = S_hd[a, b],
// z[hd·dh + a].
// Backward (ACCUMULATES into dq, dk, dv), p_i = φ(Q_i), den_i = p_i·z + ε, inv_i = 1/den_i,
// num_i = p_iᵀS: dden_i = −(dO_i·num_i) inv_i², dp_i = S (inv_i dO_i) + dden_i z,
// dq_i += dp_i ⊙ φ'(Q_i); dS = Σ_i p_i (inv_i dO_i)ᵀ, dz = Σ_i dden_i p_i;
// dk_j += m_j (dS V_j + dz) ⊙ φ'(K_j); dv_j += m_j dSᵀ φ(K_j).
//
// Kernels and grid mapping:
// linear_attention_state_fwd_f32 / _bwd_f32 — the row sums S, z (fwd) and dS, dz (bwd), one device
//   function: grid (chunks, h), block ≤ 256 threads; block (c, hd) loads its chunk of `rows` rows
//   (≤ 64: the CPU op sums 64 rows in f32) of the head into dynamic shared memory — φ(x)·wφ [rows][dh],
//   y·wy [rows][dh], wz [rows] — and each thread owns entries e (stride blockDim) of the head's
//   dh² + dh sums: e < dh² is P[a,b] = Σ_r φ_ra y_rb, else Z[a] = Σ_r φ_ra wz_r. It writes
//   partial[(c·h + hd)·(dh² + dh) + e] (f32). fwd: x = k, y = v, wφ = m_j, wy = 1, wz = 1;
//   bwd: x = q, y = dout, wφ = 1, wy = inv_i, wz = dden_i (rowscale = (inv, dden) per (i, hd)).
// linear_attention_reduce_fwd_f32 — one thread per entry of h·(dh² + dh): sums the chunks' partials
//   in chunk order in f64 and writes s / z (forward) or the dS / dz scratch (backward). No atomics.
// linear_attention_out_fwd_f32, linear_attention_dq_bwd_f32, linear_attention_dkv_bwd_f32 — tiled:
//   grid (⌈n / rows⌉, h), block (c, hd) stages the head's S (dS) and z (dz) and its rows of the
//   inputs in shared memory (below), then one thread per (row, column) element of the tile.
//   out: 1 / den per row, then the outputs. dq: first (inv, dden) per row, written to
//   rowscale[(i·h + hd)·2 + {0,1}] for the backward's state pass, then dq. dkv: dk[j, hd·dh + a]
//   and dv[j, hd·dh + a] (masked rows are skipped, as on the CPU).
#include "common.cuh"

#define LA_EPS 1e-6f

__device__ __forceinline__ float la_phi(float x) { return x > 0.0f ? x + 1.0f : expf(x); }
__device__ __forceinline__ float la_dphi(float x) { return x > 0.0f ? 1.0f : expf(x); }

__device__ __forceinline__ void la_state(const LinAttnStateParams& p, bool backward) {
    DYN_SHARED(float, sh);  // phi [rows][dh] | y [rows][dh] | wz [rows]
    const unsigned int dh = p.dh;
    const unsigned int hd = blockIdx.y;
    const unsigned int r0 = blockIdx.x * p.rows;
    const unsigned int rows = min(p.rows, p.n - r0);
    float* phi = sh;
    float* yv = sh + p.rows * dh;
    float* wz = sh + 2u * p.rows * dh;
    for (unsigned int t = threadIdx.x; t < rows * dh; t += blockDim.x) {
        const unsigned int r = t / dh;
        const unsigned int a = t - r * dh;
        const unsigned int i = r0 + r;
        // seek to head hd of row i
        const unsigned long long off = (unsigned long long)i * p.d + hd * dh + a;
        float wphi, wy;
        if (backward) {
            wphi = 1.0f;
            wy = p.rowscale[2ull * ((unsigned long long)i * p.h + hd)];
        } else {
            wphi = p.mask[i];
            wy = 1.0f;
        }
        phi[t] = wphi * la_phi(p.x[off]);
        yv[t] = wy * p.y[off];
    }
    for (unsigned int r = threadIdx.x; r < rows; r += blockDim.x) {
        const unsigned int i = r0 + r;
        wz[r] = backward ? p.rowscale[2ull * ((unsigned long long)i * p.h + hd) + 1ull] : 1.0f;
    }
    __syncthreads();
    const unsigned int entries = dh * dh + dh;
    float* out = p.partial + ((unsigned long long)blockIdx.x * p.h + hd) * entries;
    for (unsigned int e = threadIdx.x; e < entries; e += blockDim.x) {
        float acc = 0.0f;
        if (e < dh * dh) {
            const unsigned int a = e / dh;
            const unsigned int b = e - a * dh;
            for (unsigned int r = 0; r < rows; ++r) acc += phi[r * dh + a] * yv[r * dh + b];
        } else {
            const unsigned int a = e - dh * dh;
            for (unsigned int r = 0; r < rows; ++r) acc += phi[r * dh + a] * wz[r];
        }
        out[e] = acc;
    }
}

extern "C" __global__ void linear_attention_state_fwd_f32(LinAttnStateParams p) { la_state(p, false); }

extern "C" __global__ void linear_attention_state_bwd_f32(LinAttnStateParams p) { la_state(p, true); }

extern "C" __global__ void linear_attention_reduce_fwd_f32(LinAttnReduceParams p) {
    const unsigned int entries = p.dh * p.dh + p.dh;
    const unsigned int total = p.h * entries;
    GRID_STRIDE(t, total) {
        const unsigned int hd = t / entries;
        const unsigned int e = t - hd * entries;
        double acc = 0.0;
        for (unsigned int c = 0; c < p.chunks; ++c) acc += (double)p.partial[(unsigned long long)c * total + t];
        if (e < p.dh * p.dh) {
            p.s[(unsigned long long)hd * p.dh * p.dh + e] = (float)acc;
        } else {
            p.z[hd * p.dh + (e - p.dh * p.dh)] = (float)acc;
        }
    }
}

// The tiled row kernels: block (c, hd) takes rows [c·rows, c·rows + rows) of head hd (p.rows ≤ 64).
// Shared memory: the head's matrix M (S or dS) as dh rows of stride dh | 1 when p.mshared (odd:
// lanes reading down a column hit distinct banks), else M is read from global memory; then the
// head's z (or dz); then the kernel's per-row arrays. Rows of x are staged coalesced, each φ
// evaluated once.
struct LaTile {
    unsigned int r0, n_rows;  // the block's rows [r0, r0 + n_rows)
    const float* m;           // row a of M at m + a·mst
    unsigned int mst;
    const float* z;
    float* rows;  // the kernel's per-row arrays
};

__device__ __forceinline__ LaTile la_tile(const LinAttnRowsParams& p, float* sh) {
    const unsigned int dh = p.dh;
    const unsigned int st = dh | 1u;
    const unsigned int hd = blockIdx.y;
    const float* g = p.s + (unsigned long long)hd * dh * dh;
    LaTile t;
    t.r0 = blockIdx.x * p.rows;
    t.n_rows = min(p.rows, p.n - t.r0);
    float* next = sh;
    if (p.mshared) {
        for (unsigned int e = threadIdx.x; e < dh * dh; e += blockDim.x) {
            const unsigned int a = e / dh;
            sh[a * st + (e - a * dh)] = g[e];
        }
        t.m = sh;
        t.mst = st;
        next = sh + dh * st;
    } else {
        t.m = g;
        t.mst = dh;
    }
    for (unsigned int a = threadIdx.x; a < dh; a += blockDim.x) next[a] = p.z[hd * dh + a];
    t.z = next;
    t.rows = next + dh;
    return t;
}

// x[i, hd·dh + a] of the block's rows i = r0 + r into dst[r·(dh | 1) + a], as φ(x) when phi.
__device__ __forceinline__ void la_rows_in(const LinAttnRowsParams& p, const float* x, float* dst,
                                           unsigned int r0, unsigned int rows, bool phi) {
    const unsigned int dh = p.dh;
    const unsigned int st = dh | 1u;
    for (unsigned int t = threadIdx.x; t < rows * dh; t += blockDim.x) {
        const unsigned int r = t / dh;
        const unsigned int a = t - r * dh;
        const float v = x[(unsigned long long)(r0 + r) * p.d + blockIdx.y * dh + a];
        dst[r * st + a] = phi ? la_phi(v) : v;
    }
}

// φ'(x) from p = φ(x): 1 where x > 0 (p = x + 1 ≥ 1, and p = 1 only where x + 1 rounds to 1),
// else exp(x) = p ≤ 1; NaN stays NaN.
__device__ __forceinline__ float la_dphi_of(float p) { return p > 1.0f ? 1.0f : p; }

extern "C" __global__ void linear_attention_out_fwd_f32(LinAttnRowsParams p) {
    DYN_SHARED(float, sh);
    const unsigned int dh = p.dh;
    const unsigned int st = dh | 1u;
    const LaTile tl = la_tile(p, sh);
    const unsigned int r0 = tl.r0;
    const unsigned int rows = tl.n_rows;
    float* ps = tl.rows;               // φ(Q) [rows][st]
    float* inv = ps + p.rows * st;     // 1 / (φ(Q_i)·z + ε) [rows]
    la_rows_in(p, p.x, ps, r0, rows, true);
    __syncthreads();
    for (unsigned int r = threadIdx.x; r < rows; r += blockDim.x) {
        float den = 0.0f;
        for (unsigned int a = 0; a < dh; ++a) den += ps[r * st + a] * tl.z[a];
        inv[r] = 1.0f / (den + LA_EPS);
    }
    __syncthreads();
    for (unsigned int t = threadIdx.x; t < rows * dh; t += blockDim.x) {
        const unsigned int r = t / dh;
        const unsigned int b = t - r * dh;
        float num = 0.0f;
        for (unsigned int a = 0; a < dh; ++a) num += ps[r * st + a] * tl.m[a * tl.mst + b];
        p.out[(unsigned long long)(r0 + r) * p.d + blockIdx.y * dh + b] = num * inv[r];
    }
}

// dq, and first the rows' (inv, dden) into p.rowscale (the backward's state pass reads them).
extern "C" __global__ void linear_attention_dq_bwd_f32(LinAttnRowsParams p) {
    DYN_SHARED(float, sh);
    const unsigned int dh = p.dh;
    const unsigned int st = dh | 1u;
    const unsigned int hd = blockIdx.y;
    const LaTile tl = la_tile(p, sh);  // S, z
    const unsigned int r0 = tl.r0;
    const unsigned int rows = tl.n_rows;
    float* ps = tl.rows;               // φ(Q) [rows][st]
    float* gs = ps + p.rows * st;      // dO [rows][st]
    float* rs = gs + p.rows * st;      // (inv, dden) [rows][2]
    la_rows_in(p, p.x, ps, r0, rows, true);
    la_rows_in(p, p.y, gs, r0, rows, false);
    __syncthreads();
    for (unsigned int r = threadIdx.x; r < rows; r += blockDim.x) {
        const float* pr = ps + r * st;
        float den = 0.0f;
        for (unsigned int a = 0; a < dh; ++a) den += pr[a] * tl.z[a];
        // dO·num = Σ_b dO_b Σ_a p_a S[a,b]
        float go_num = 0.0f;
        for (unsigned int b = 0; b < dh; ++b) {
            float num = 0.0f;
            for (unsigned int a = 0; a < dh; ++a) num += pr[a] * tl.m[a * tl.mst + b];
            go_num += gs[r * st + b] * num;
        }
        const float inv = 1.0f / (den + LA_EPS);
        const float dden = -go_num * inv * inv;
        rs[2 * r] = inv;
        rs[2 * r + 1] = dden;
        const unsigned long long t = (unsigned long long)(r0 + r) * p.h + hd;
        p.rowscale[2ull * t] = inv;
        p.rowscale[2ull * t + 1ull] = dden;
    }
    __syncthreads();
    for (unsigned int t = threadIdx.x; t < rows * dh; t += blockDim.x) {
        const unsigned int r = t / dh;
        const unsigned int a = t - r * dh;
        const float inv = rs[2 * r];
        const float* srow = tl.m + a * tl.mst;
        float dot = 0.0f;
        for (unsigned int b = 0; b < dh; ++b) dot += (gs[r * st + b] * inv) * srow[b];
        const float dp = rs[2 * r + 1] * tl.z[a] + dot;
        p.out[(unsigned long long)(r0 + r) * p.d + hd * dh + a] += dp * la_dphi_of(ps[r * st + a]);
    }
}

extern "C" __global__ void linear_attention_dkv_bwd_f32(LinAttnRowsParams p) {
    DYN_SHARED(float, sh);
    const unsigned int dh = p.dh;
    const unsigned int st = dh | 1u;
    const unsigned int hd = blockIdx.y;
    const LaTile tl = la_tile(p, sh);  // dS, dz
    const unsigned int r0 = tl.r0;
    const unsigned int rows = tl.n_rows;
    float* ks = tl.rows;               // φ(K) [rows][st]
    float* vs = ks + p.rows * st;      // V [rows][st]
    float* ms = vs + p.rows * st;      // mask [rows]
    la_rows_in(p, p.x, ks, r0, rows, true);
    la_rows_in(p, p.y, vs, r0, rows, false);
    for (unsigned int r = threadIdx.x; r < rows; r += blockDim.x) ms[r] = p.mask[r0 + r];
    __syncthreads();
    for (unsigned int t = threadIdx.x; t < rows * dh; t += blockDim.x) {
        const unsigned int r = t / dh;
        const unsigned int a = t - r * dh;
        const float mj = ms[r];
        if (mj == 0.0f) continue;  // masked rows are skipped, as on the CPU
        const float* kr = ks + r * st;
        const float* vr = vs + r * st;
        const unsigned long long off = (unsigned long long)(r0 + r) * p.d + hd * dh + a;
        // dk: row a of dS against V_j
        const float* dsrow = tl.m + a * tl.mst;
        float dot = 0.0f;
        for (unsigned int b = 0; b < dh; ++b) dot += dsrow[b] * vr[b];
        p.out[off] += mj * (tl.z[a] + dot) * la_dphi_of(kr[a]);
        // dv: column a of dS against φ(K_j)
        float dv = 0.0f;
        for (unsigned int c = 0; c < dh; ++c) dv += (mj * kr[c]) * tl.m[c * tl.mst + a];
        p.out2[off] += dv;
    }
}
