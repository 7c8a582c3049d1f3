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
// linear_attention_out_fwd_f32 — one thread per output element (i, hd, b), grid-stride over n·d.
// linear_attention_rows_bwd_f32 — one thread per (i, hd): rowscale[(i·h + hd)·2 + {0,1}] = (inv, dden).
// linear_attention_dq_bwd_f32 — one thread per (i, hd, a): dq.
// linear_attention_dkv_bwd_f32 — one thread per (j, hd, a): dk[j, hd·dh + a] and dv[j, hd·dh + a]
//   (masked rows are skipped, as on the CPU).
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

extern "C" __global__ void linear_attention_out_fwd_f32(LinAttnRowsParams p) {
    const unsigned int dh = p.dh;
    const unsigned long long total = (unsigned long long)p.n * p.d;
    GRID_STRIDE(t, total) {
        const unsigned long long i = t / p.d;
        const unsigned int col = (unsigned int)(t - i * p.d);
        const unsigned int hd = col / dh;
        const unsigned int b = col - hd * dh;
        const float* q = p.x + i * p.d + hd * dh;  // φ(Q_i) of head hd
        const float* s = p.s + (unsigned long long)hd * dh * dh;
        const float* z = p.z + hd * dh;
        float den = 0.0f;
        float num = 0.0f;
        for (unsigned int a = 0; a < dh; ++a) {
            const float pa = la_phi(q[a]);
            den += pa * z[a];
            num += pa * s[a * dh + b];
        }
        p.out[t] = num * (1.0f / (den + LA_EPS));
    }
}

extern "C" __global__ void linear_attention_rows_bwd_f32(LinAttnRowsParams p) {
    const unsigned int dh = p.dh;
    const unsigned long long total = (unsigned long long)p.n * p.h;
    GRID_STRIDE(t, total) {
        const unsigned long long i = t / p.h;
        const unsigned int hd = (unsigned int)(t - i * p.h);
        const unsigned long long off = i * p.d + hd * dh;
        const float* q = p.x + off;
        const float* go = p.y + off;
        const float* s = p.s + (unsigned long long)hd * dh * dh;
        const float* z = p.z + hd * dh;
        float den = 0.0f;
        for (unsigned int a = 0; a < dh; ++a) den += la_phi(q[a]) * z[a];
        // dO·num = Σ_b dO_b Σ_a p_a S[a,b]
        float go_num = 0.0f;
        for (unsigned int b = 0; b < dh; ++b) {
            float num = 0.0f;
            for (unsigned int a = 0; a < dh; ++a) num += la_phi(q[a]) * s[a * dh + b];
            go_num += go[b] * num;
        }
        const float inv = 1.0f / (den + LA_EPS);
        p.rowscale[2ull * t] = inv;
        p.rowscale[2ull * t + 1ull] = -go_num * inv * inv;
    }
}

extern "C" __global__ void linear_attention_dq_bwd_f32(LinAttnRowsParams p) {
    const unsigned int dh = p.dh;
    const unsigned long long total = (unsigned long long)p.n * p.d;
    GRID_STRIDE(t, total) {
        const unsigned long long i = t / p.d;
        const unsigned int col = (unsigned int)(t - i * p.d);
        const unsigned int hd = col / dh;
        const unsigned int a = col - hd * dh;
        const float* go = p.y + i * p.d + hd * dh;
        const float* srow = p.s + (unsigned long long)hd * dh * dh + (unsigned long long)a * dh;
        const float inv = p.rowscale[2ull * (i * p.h + hd)];
        const float dden = p.rowscale[2ull * (i * p.h + hd) + 1ull];
        float dot = 0.0f;
        for (unsigned int b = 0; b < dh; ++b) dot += (go[b] * inv) * srow[b];
        const float dp = dden * p.z[hd * dh + a] + dot;
        p.out[t] += dp * la_dphi(p.x[t]);
    }
}

extern "C" __global__ void linear_attention_dkv_bwd_f32(LinAttnRowsParams p) {
    const unsigned int dh = p.dh;
    const unsigned long long total = (unsigned long long)p.n * p.d;
    GRID_STRIDE(t, total) {
        const unsigned long long j = t / p.d;
        const float mj = p.mask[j];
        if (mj == 0.0f) continue;
        const unsigned int col = (unsigned int)(t - j * p.d);
        const unsigned int hd = col / dh;
        const unsigned int a = col - hd * dh;
        const float* kr = p.x + j * p.d + hd * dh;
        const float* vr = p.y + j * p.d + hd * dh;
        const float* ds = p.s + (unsigned long long)hd * dh * dh;  // dS of head hd
        // dk: row a of dS against V_j
        float dot = 0.0f;
        for (unsigned int b = 0; b < dh; ++b) dot += ds[a * dh + b] * vr[b];
        const float dpk = mj * (p.z[hd * dh + a] + dot);
        p.out[t] += dpk * la_dphi(kr[a]);
        // dv: column a of dS against φ(K_j)
        float dv = 0.0f;
        for (unsigned int c = 0; c < dh; ++c) dv += (mj * la_phi(kr[c])) * ds[c * dh + a];
        p.out2[t] += dv;
    }
}
