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
// Grid mapping (all but the D kernel): grid (⌈rows / QB⌉, h), thread t of a block owns row
// blockIdx.x·QB + t of head blockIdx.y (a query row in fwd and dq, a key row in dkv), QB =
// blockDim.x threads (64, 32, 16 or 8: the widest whose rows fit). On the register path the
// block's p.parts parts share its rows (one thread of each part per row; QB = blockDim.x /
// p.parts, below). Two paths, chosen by the host through `stride`: heads of width dh ≤ 32 take
// the register path (stride = 0: the thread's rows in registers, tiles read as 16-byte
// broadcasts); wider heads this shared-memory path. Dynamic shared memory
// (sized on the host to fit 48 KiB): the tile area a[tile·dh] | b[tile·dh] | s1[tile] | s2[tile]
// through which the other side's rows stream, `tile` rows at a time (≤ 32, a multiple of 4), then
// `rows` regions of QB
// rows of `stride` floats (dh rounded up to odd: thread t's row starts in bank t·stride mod 32, so
// a warp reading element a of its rows hits 32 banks): the thread's accumulators and its own input
// rows. Every global read is cooperative and coalesced (consecutive threads, consecutive columns
// of one row): the block's own rows once at the start, the tiles once per tile; a tile row of a
// masked key, or past the last row, is stored as zeros. Inner loop: keys (queries in dkv) in
// groups of 4, the 4 (or 8) dot products of a group in one pass over the head's columns (the own
// row element read once for 4 tile rows, which every thread reads at the same address: a
// broadcast), each dot product summed over a in order as one chain; then one pass updating the
// accumulators, keys in order. Two barriers per tile; threads past the last row (and masked key
// rows in dkv) only help loading.
// softmax_attention_fwd_f32: a = K, b = V, s1 = mask; rows: acc | q. Online softmax per group of
//   4 keys: the running max m moves to the group's max once (l and acc rescaled by exp(m_old − m)
//   when it grows), then p_j = exp(s_j − m), l += p_j and acc += p_j V_j in key order.
// softmax_attention_d_bwd_f32: D[hd·n + i] = dO_i·O_i, one thread per (i, hd), grid-stride.
// softmax_attention_dq_bwd_f32: a = K, b = V, s1 = mask; rows: dQ acc | q | dO.
// softmax_attention_dkv_bwd_f32: a = Q, b = dO, s1 = lse, s2 = D; rows: dK acc | dV acc | k | v.
// Each output row is written by one thread: no atomics.
#include "common.cuh"

#define SA_GROUP 4u

struct SaShared {
    float* a;
    float* b;
    float* s1;
    float* s2;
    float* own;  // region 0: [QB·stride]; region r starts at own + r·QB·stride
};

__device__ __forceinline__ SaShared sa_shared(float* base, const SoftmaxAttnParams& p) {
    SaShared s;
    const unsigned int td = p.tile * p.dh;
    s.a = base;
    s.b = base + td;
    s.s1 = base + 2u * td;
    s.s2 = s.s1 + p.tile;
    s.own = s.s2 + p.tile;
    return s;
}

// region r of the per-thread rows (all QB rows)
__device__ __forceinline__ float* sa_region(const SaShared& s, const SoftmaxAttnParams& p, unsigned int r) {
    return s.own + r * blockDim.x * p.stride;
}

// this thread's row of region r
__device__ __forceinline__ float* sa_row(const SaShared& s, const SoftmaxAttnParams& p, unsigned int r) {
    return sa_region(s, p, r) + threadIdx.x * p.stride;
}

// copies rows row0.. of head hd of x [nrows, d] into region dst, row t at dst[t·stride] (zeros
// past nrows); consecutive threads read consecutive columns
__device__ __forceinline__ void sa_load_rows(float* dst, const float* x, const SoftmaxAttnParams& p,
                                             unsigned int row0, unsigned int nrows, unsigned int hd) {
    const unsigned int dh = p.dh;
    for (unsigned int e = threadIdx.x; e < blockDim.x * dh; e += blockDim.x) {
        const unsigned int r = e / dh;
        const unsigned int a = e - r * dh;
        const unsigned int row = row0 + r;
        dst[r * p.stride + a] = row < nrows ? x[(unsigned long long)row * p.d + hd * dh + a] : 0.0f;
    }
}

// copies `cnt` rows starting at row j0 of head hd of x [·, d] into dst [tile][dh]: zeros past cnt
// and, when mask is given, for rows whose mask is 0
__device__ __forceinline__ void sa_load_tile(float* dst, const float* x, const float* mask,
                                             const SoftmaxAttnParams& p, unsigned int j0,
                                             unsigned int cnt, unsigned int hd) {
    for (unsigned int t = threadIdx.x; t < p.tile * p.dh; t += blockDim.x) {
        const unsigned int r = t / p.dh;
        const unsigned int a = t - r * p.dh;
        const bool on = r < cnt && (mask == nullptr || mask[j0 + r] != 0.0f);
        dst[t] = on ? x[(unsigned long long)(j0 + r) * p.d + hd * p.dh + a] : 0.0f;
    }
}

// s[u] = x·y_u for the 4 rows y_u = y + u·dh, each summed over a in order
__device__ __forceinline__ void sa_dot4(const float* x, const float* y, unsigned int dh, float* s) {
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    for (unsigned int a = 0; a < dh; ++a) {
        const float xa = x[a];
        s0 += xa * y[a];
        s1 += xa * y[dh + a];
        s2 += xa * y[2u * dh + a];
        s3 += xa * y[3u * dh + a];
    }
    s[0] = s0;
    s[1] = s1;
    s[2] = s2;
    s[3] = s3;
}

// acc += Σ_u w[u]·y_u over the 4 rows y_u = y + u·dh, in row order
__device__ __forceinline__ void sa_axpy4(float* acc, const float* w, const float* y, unsigned int dh) {
    for (unsigned int a = 0; a < dh; ++a) {
        float x = acc[a];
        x += w[0] * y[a];
        x += w[1] * y[dh + a];
        x += w[2] * y[2u * dh + a];
        x += w[3] * y[3u * dh + a];
        acc[a] = x;
    }
}

__device__ __forceinline__ float sa_dot(const float* x, const float* y, unsigned int dh) {
    float s = 0.0f;
    for (unsigned int a = 0; a < dh; ++a) s += x[a] * y[a];
    return s;
}

// ---- register path (the host passes stride = 0 for heads of width dh ≤ SA_REG_DH) ----
// The thread's own rows and accumulators live in registers (arrays of SA_REG_DH, indices fixed
// after unrolling; columns past dh stay 0); the tile rows are padded to dp = dh rounded up to 4
// (zeros), so the tiles are read as 16-byte vectors: a group of 4 keys costs dp loads of 16 bytes
// per pass instead of 4·dh + dh scalar ones.
// p.parts parts of the block share its rows (a query in fwd and dq, a key in dkv): a block of
// blockDim.x threads owns QB = blockDim.x / p.parts rows (the host keeps QB a multiple of 32, so
// each part is whole warps), thread t takes row t mod QB and is in part w = t / QB, which takes
// the groups w, w + parts, … of every tile. The threads of a warp thus read the same tile address
// (broadcast). At the end every part leaves its partial results in shared memory and part 0
// combines them in part order (fwd: the online-softmax states (m, l, acc); dq, dkv: sums). On a
// 5,000-row era with 4 heads one thread per row is 20,000 threads, too few to keep a large GPU's
// schedulers busy; the host picks the parts (src/ops/attention/gpu.rs, `sa_shape`).
// Shared memory: a[tile·dp] | b[tile·dp] | s1[tile] | s2[tile], then (reused) the parts'
// partials, [parts − 1][QB][per-row values].
#define SA_REG_DH 32u

// where a thread works: the block's parts and rows (QB), the thread's part, its row within the
// block and that row's index
struct SaPlace {
    unsigned int parts, qb, part, row, index;
};
__device__ __forceinline__ SaPlace sa_place(unsigned int parts) {
    SaPlace w;
    w.parts = parts;
    w.qb = blockDim.x / parts;
    w.part = threadIdx.x / w.qb;
    w.row = threadIdx.x - w.part * w.qb;
    w.index = blockIdx.x * w.qb + w.row;
    return w;
}

// the partial results of part q ≥ 1 for the thread's row: `width` floats in shared memory at base
// ([parts − 1][QB][width], over the tiles once they are done)
__device__ __forceinline__ float* sa_partial(float* base, const SaPlace& at, unsigned int q, unsigned int width) {
    return base + ((q - 1u) * at.qb + at.row) * width;
}

struct __align__(16) SaVec4 {
    float x, y, z, w;
};

// copies `cnt` rows from row j0 of head hd of x into dst [tile][dp]: zeros past cnt, past dh and,
// when mask is given, for rows whose mask is 0
__device__ __forceinline__ void sa_load_tile_padded(float* dst, const float* x, const float* mask,
                                                    const SoftmaxAttnParams& p, unsigned int dp,
                                                    unsigned int j0, unsigned int cnt, unsigned int hd) {
    for (unsigned int t = threadIdx.x; t < p.tile * dp; t += blockDim.x) {
        const unsigned int r = t / dp;
        const unsigned int a = t - r * dp;
        const bool on = r < cnt && a < p.dh && (mask == nullptr || mask[j0 + r] != 0.0f);
        dst[t] = on ? x[(unsigned long long)(j0 + r) * p.d + hd * p.dh + a] : 0.0f;
    }
}

// s += x[0]·y.x, then x[1]·y.y, x[2]·y.z, x[3]·y.w: one chain, in column order
__device__ __forceinline__ void sa_chain4(float& s, const float* x, const SaVec4& y) {
    s += x[0] * y.x;
    s += x[1] * y.y;
    s += x[2] * y.z;
    s += x[3] * y.w;
}

// s[u] = x·y_u for the 4 padded rows y_u = y + u·dp (x in registers), each chain over a in order
__device__ __forceinline__ void sa_reg_dot4(const float* x, const float* y, unsigned int dp, float* s) {
    const SaVec4* y0 = reinterpret_cast<const SaVec4*>(y);
    const unsigned int nc = dp >> 2;
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
#pragma unroll
    for (unsigned int c = 0; c < SA_REG_DH / 4u; ++c) {
        if (c < nc) {
            const SaVec4 a = y0[c];
            const SaVec4 b = y0[nc + c];
            const SaVec4 e = y0[2u * nc + c];
            const SaVec4 f = y0[3u * nc + c];
            sa_chain4(s0, x + 4u * c, a);
            sa_chain4(s1, x + 4u * c, b);
            sa_chain4(s2, x + 4u * c, e);
            sa_chain4(s3, x + 4u * c, f);
        }
    }
    s[0] = s0;
    s[1] = s1;
    s[2] = s2;
    s[3] = s3;
}

// acc += Σ_u w[u]·y_u over the 4 padded rows, in row order per element (acc in registers)
__device__ __forceinline__ void sa_reg_axpy4(float* acc, const float* w, const float* y, unsigned int dp) {
    const SaVec4* y0 = reinterpret_cast<const SaVec4*>(y);
    const unsigned int nc = dp >> 2;
#pragma unroll
    for (unsigned int c = 0; c < SA_REG_DH / 4u; ++c) {
        if (c < nc) {
            const SaVec4 r[4] = {y0[c], y0[nc + c], y0[2u * nc + c], y0[3u * nc + c]};
#pragma unroll
            for (unsigned int u = 0; u < 4u; ++u) {
                acc[4u * c] += w[u] * r[u].x;
                acc[4u * c + 1u] += w[u] * r[u].y;
                acc[4u * c + 2u] += w[u] * r[u].z;
                acc[4u * c + 3u] += w[u] * r[u].w;
            }
        }
    }
}

// row `row` of head hd of x into registers (zeros past dh, or when !on)
__device__ __forceinline__ void sa_reg_row(float* dst, const float* x, const SoftmaxAttnParams& p,
                                           unsigned int row, unsigned int hd, bool on) {
    const unsigned long long off = (unsigned long long)row * p.d + hd * p.dh;
#pragma unroll
    for (unsigned int a = 0; a < SA_REG_DH; ++a) dst[a] = on && a < p.dh ? x[off + a] : 0.0f;
}

__device__ __forceinline__ void sa_fwd_reg(const SoftmaxAttnParams& p, float* base) {
    const unsigned int dp = (p.dh + 3u) & ~3u;
    float* ta = base;
    float* tb = base + p.tile * dp;
    float* tm = tb + p.tile * dp;
    const unsigned int hd = blockIdx.y;
    const SaPlace at = sa_place(p.parts);
    const unsigned int part = at.part;
    const unsigned int i = at.index;
    const bool active = i < p.n;
    float qr[SA_REG_DH];
    float acc[SA_REG_DH];
    sa_reg_row(qr, p.q, p, i, hd, active);
#pragma unroll
    for (unsigned int a = 0; a < SA_REG_DH; ++a) acc[a] = 0.0f;
    const float neg_inf = __int_as_float((int)0xff800000u);
    float m = neg_inf;
    float l = 0.0f;
    for (unsigned int j0 = 0; j0 < p.nk; j0 += p.tile) {
        const unsigned int cnt = min(p.tile, p.nk - j0);
        sa_load_tile_padded(ta, p.k, p.mask, p, dp, j0, cnt, hd);
        sa_load_tile_padded(tb, p.v, p.mask, p, dp, j0, cnt, hd);
        for (unsigned int t = threadIdx.x; t < p.tile; t += blockDim.x) tm[t] = t < cnt ? p.mask[j0 + t] : 0.0f;
        __syncthreads();
        if (active) {
            for (unsigned int t0 = part * SA_GROUP; t0 < cnt; t0 += p.parts * SA_GROUP) {
                float s[SA_GROUP];
                sa_reg_dot4(qr, ta + t0 * dp, dp, s);
                float mg = m;
                bool any = false;
#pragma unroll
                for (unsigned int u = 0; u < SA_GROUP; ++u) {
                    const bool on = tm[t0 + u] != 0.0f;
                    s[u] = p.scale * s[u];
                    if (on) mg = fmaxf(mg, s[u]);
                    any = any || on;
                }
                if (!any) continue;
                const bool grow = mg > m;
                const float corr = grow ? expf(m - mg) : 1.0f;
                l *= corr;
                float pw[SA_GROUP];
#pragma unroll
                for (unsigned int u = 0; u < SA_GROUP; ++u) {
                    pw[u] = tm[t0 + u] != 0.0f ? expf(s[u] - mg) : 0.0f;
                    l += pw[u];
                }
                m = mg;
                if (grow) {
#pragma unroll
                    for (unsigned int a = 0; a < SA_REG_DH; ++a) acc[a] *= corr;
                }
                sa_reg_axpy4(acc, pw, tb + t0 * dp, dp);
            }
        }
        __syncthreads();  // the tile is overwritten next
    }
    // parts 1.. leave (m, l, acc) in shared memory; part 0 merges them in order (a part that saw
    // no key, m = −inf, weighs 0)
    const unsigned int w = dp + 2u;
    if (part > 0u) {
        float* mine = sa_partial(base, at, part, w);
        mine[0] = m;
        mine[1] = l;
#pragma unroll
        for (unsigned int a = 0; a < SA_REG_DH; ++a) {
            if (a < dp) mine[2u + a] = acc[a];
        }
    }
    __syncthreads();
    if (part > 0u || !active) return;
    for (unsigned int q = 1u; q < at.parts; ++q) {
        const float* other = sa_partial(base, at, q, w);
        const float mo = other[0];
        const float mn = fmaxf(m, mo);
        const float ca = m == neg_inf ? 0.0f : expf(m - mn);
        const float cb = mo == neg_inf ? 0.0f : expf(mo - mn);
        l = l * ca + other[1] * cb;
#pragma unroll
        for (unsigned int a = 0; a < SA_REG_DH; ++a) {
            if (a < dp) acc[a] = acc[a] * ca + other[2u + a] * cb;
        }
        m = mn;
    }
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    const unsigned long long off = (unsigned long long)i * p.d + hd * p.dh;
#pragma unroll
    for (unsigned int a = 0; a < SA_REG_DH; ++a) {
        if (a < p.dh) p.out[off + a] = acc[a] * inv;
    }
    p.out2[(unsigned long long)hd * p.n + i] = l > 0.0f ? m + logf(l) : 0.0f;
}

// the parts' sums of x [SA_REG_DH] (first dp values) into part 0's x, in part order, through
// shared memory (sa_partial, dp floats each); every thread of the block must call it
__device__ __forceinline__ void sa_parts_sum(float* x, float* base, unsigned int dp, const SaPlace& at) {
    if (at.part > 0u) {
        float* mine = sa_partial(base, at, at.part, dp);
#pragma unroll
        for (unsigned int a = 0; a < SA_REG_DH; ++a) {
            if (a < dp) mine[a] = x[a];
        }
    }
    __syncthreads();
    if (at.part > 0u) return;
    for (unsigned int q = 1u; q < at.parts; ++q) {
        const float* other = sa_partial(base, at, q, dp);
#pragma unroll
        for (unsigned int a = 0; a < SA_REG_DH; ++a) {
            if (a < dp) x[a] += other[a];
        }
    }
}

__device__ __forceinline__ void sa_dq_reg(const SoftmaxAttnParams& p, float* base) {
    const unsigned int dp = (p.dh + 3u) & ~3u;
    float* ta = base;
    float* tb = base + p.tile * dp;
    float* tm = tb + p.tile * dp;
    const unsigned int hd = blockIdx.y;
    const SaPlace at = sa_place(p.parts);
    const unsigned int part = at.part;
    const unsigned int i = at.index;
    const bool active = i < p.n;
    float qr[SA_REG_DH];
    float go[SA_REG_DH];
    float acc[SA_REG_DH];
    sa_reg_row(qr, p.q, p, i, hd, active);
    sa_reg_row(go, p.dout, p, i, hd, active);
#pragma unroll
    for (unsigned int a = 0; a < SA_REG_DH; ++a) acc[a] = 0.0f;
    const float lse = active ? p.lse[(unsigned long long)hd * p.n + i] : 0.0f;
    const float di = active ? p.dd[(unsigned long long)hd * p.n + i] : 0.0f;
    for (unsigned int j0 = 0; j0 < p.nk; j0 += p.tile) {
        const unsigned int cnt = min(p.tile, p.nk - j0);
        sa_load_tile_padded(ta, p.k, p.mask, p, dp, j0, cnt, hd);
        sa_load_tile_padded(tb, p.v, p.mask, p, dp, j0, cnt, hd);
        for (unsigned int t = threadIdx.x; t < p.tile; t += blockDim.x) tm[t] = t < cnt ? p.mask[j0 + t] : 0.0f;
        __syncthreads();
        if (active) {
            for (unsigned int t0 = part * SA_GROUP; t0 < cnt; t0 += p.parts * SA_GROUP) {
                float sq[SA_GROUP];
                float sv[SA_GROUP];
                sa_reg_dot4(qr, ta + t0 * dp, dp, sq);
                sa_reg_dot4(go, tb + t0 * dp, dp, sv);
                float ds[SA_GROUP];
                bool any = false;
#pragma unroll
                for (unsigned int u = 0; u < SA_GROUP; ++u) {
                    const bool on = tm[t0 + u] != 0.0f;
                    const float pw = on ? expf(p.scale * sq[u] - lse) : 0.0f;
                    ds[u] = pw * (sv[u] - di);
                    any = any || on;
                }
                if (any) sa_reg_axpy4(acc, ds, ta + t0 * dp, dp);
            }
        }
        __syncthreads();
    }
    sa_parts_sum(acc, base, dp, at);
    if (part > 0u || !active) return;
    const unsigned long long off = (unsigned long long)i * p.d + hd * p.dh;
#pragma unroll
    for (unsigned int a = 0; a < SA_REG_DH; ++a) {
        if (a < p.dh) p.out[off + a] += p.scale * acc[a];
    }
}

__device__ __forceinline__ void sa_dkv_reg(const SoftmaxAttnParams& p, float* base) {
    const unsigned int dp = (p.dh + 3u) & ~3u;
    float* ta = base;
    float* tb = base + p.tile * dp;
    float* t1 = tb + p.tile * dp;
    float* t2 = t1 + p.tile;
    const unsigned int hd = blockIdx.y;
    const SaPlace at = sa_place(p.parts);
    const unsigned int part = at.part;
    const unsigned int j = at.index;
    const bool active = j < p.nk && p.mask[j] != 0.0f;
    float kr[SA_REG_DH];
    float vr[SA_REG_DH];
    float dk[SA_REG_DH];
    float dv[SA_REG_DH];
    sa_reg_row(kr, p.k, p, j, hd, active);
    sa_reg_row(vr, p.v, p, j, hd, active);
#pragma unroll
    for (unsigned int a = 0; a < SA_REG_DH; ++a) {
        dk[a] = 0.0f;
        dv[a] = 0.0f;
    }
    for (unsigned int i0 = 0; i0 < p.n; i0 += p.tile) {
        const unsigned int cnt = min(p.tile, p.n - i0);
        sa_load_tile_padded(ta, p.q, nullptr, p, dp, i0, cnt, hd);
        sa_load_tile_padded(tb, p.dout, nullptr, p, dp, i0, cnt, hd);
        for (unsigned int t = threadIdx.x; t < p.tile; t += blockDim.x) {
            t1[t] = t < cnt ? p.lse[(unsigned long long)hd * p.n + i0 + t] : 0.0f;
            t2[t] = t < cnt ? p.dd[(unsigned long long)hd * p.n + i0 + t] : 0.0f;
        }
        __syncthreads();
        if (active) {
            for (unsigned int t0 = part * SA_GROUP; t0 < cnt; t0 += p.parts * SA_GROUP) {
                float sq[SA_GROUP];
                float sv[SA_GROUP];
                sa_reg_dot4(kr, ta + t0 * dp, dp, sq);
                sa_reg_dot4(vr, tb + t0 * dp, dp, sv);
                float pw[SA_GROUP];
                float ds[SA_GROUP];
#pragma unroll
                for (unsigned int u = 0; u < SA_GROUP; ++u) {
                    pw[u] = t0 + u < cnt ? expf(p.scale * sq[u] - t1[t0 + u]) : 0.0f;
                    ds[u] = pw[u] * (sv[u] - t2[t0 + u]);
                }
                sa_reg_axpy4(dk, ds, ta + t0 * dp, dp);
                sa_reg_axpy4(dv, pw, tb + t0 * dp, dp);
            }
        }
        __syncthreads();
    }
    sa_parts_sum(dk, base, dp, at);
    __syncthreads();  // part 0 has read the dk partials
    sa_parts_sum(dv, base, dp, at);
    if (part > 0u || !active) return;
    const unsigned long long off = (unsigned long long)j * p.d + hd * p.dh;
#pragma unroll
    for (unsigned int a = 0; a < SA_REG_DH; ++a) {
        if (a < p.dh) {
            p.out[off + a] += p.scale * dk[a];
            p.out2[off + a] += dv[a];
        }
    }
}

extern "C" __global__ void softmax_attention_fwd_f32(SoftmaxAttnParams p) {
    DYN_SHARED(float, base);
    if (p.stride == 0u) {  // dh ≤ SA_REG_DH: the register path
        sa_fwd_reg(p, base);
        return;
    }
    const SaShared sh = sa_shared(base, p);
    const unsigned int dh = p.dh;
    const unsigned int hd = blockIdx.y;
    const unsigned int row0 = blockIdx.x * blockDim.x;
    const unsigned int i = row0 + threadIdx.x;
    const bool active = i < p.n;
    float* acc = sa_row(sh, p, 0);
    const float* qr = sa_row(sh, p, 1);
    sa_load_rows(sa_region(sh, p, 1), p.q, p, row0, p.n, hd);  // read after the first barrier
    for (unsigned int a = 0; a < dh; ++a) acc[a] = 0.0f;
    float m = __int_as_float((int)0xff800000u);  // −inf
    float l = 0.0f;
    for (unsigned int j0 = 0; j0 < p.nk; j0 += p.tile) {
        const unsigned int cnt = min(p.tile, p.nk - j0);
        sa_load_tile(sh.a, p.k, p.mask, p, j0, cnt, hd);
        sa_load_tile(sh.b, p.v, p.mask, p, j0, cnt, hd);
        for (unsigned int t = threadIdx.x; t < p.tile; t += blockDim.x) sh.s1[t] = t < cnt ? p.mask[j0 + t] : 0.0f;
        __syncthreads();
        if (active) {
            for (unsigned int t0 = 0; t0 < cnt; t0 += SA_GROUP) {
                float s[SA_GROUP];
                sa_dot4(qr, sh.a + t0 * dh, dh, s);
                float mg = m;
                bool any = false;
#pragma unroll
                for (unsigned int u = 0; u < SA_GROUP; ++u) {
                    const bool on = sh.s1[t0 + u] != 0.0f;
                    s[u] = p.scale * s[u];
                    if (on) mg = fmaxf(mg, s[u]);
                    any = any || on;
                }
                if (!any) continue;
                const bool grow = mg > m;
                // rescale what was summed under the old maximum (exp(−inf) = 0 the first time)
                const float corr = grow ? expf(m - mg) : 1.0f;
                l *= corr;
                float pw[SA_GROUP];
#pragma unroll
                for (unsigned int u = 0; u < SA_GROUP; ++u) {
                    pw[u] = sh.s1[t0 + u] != 0.0f ? expf(s[u] - mg) : 0.0f;
                    l += pw[u];
                }
                m = mg;
                if (grow) {
                    for (unsigned int a = 0; a < dh; ++a) acc[a] *= corr;
                }
                sa_axpy4(acc, pw, sh.b + t0 * dh, dh);
            }
        }
        __syncthreads();  // the tile is overwritten next
    }
    if (!active) return;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    const unsigned long long off = (unsigned long long)i * p.d + hd * dh;
    for (unsigned int a = 0; a < dh; ++a) p.out[off + a] = acc[a] * inv;
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
    if (p.stride == 0u) {  // dh ≤ SA_REG_DH: the register path
        sa_dq_reg(p, base);
        return;
    }
    const SaShared sh = sa_shared(base, p);
    const unsigned int dh = p.dh;
    const unsigned int hd = blockIdx.y;
    const unsigned int row0 = blockIdx.x * blockDim.x;
    const unsigned int i = row0 + threadIdx.x;
    const bool active = i < p.n;
    float* acc = sa_row(sh, p, 0);
    const float* qr = sa_row(sh, p, 1);
    const float* go = sa_row(sh, p, 2);
    sa_load_rows(sa_region(sh, p, 1), p.q, p, row0, p.n, hd);
    sa_load_rows(sa_region(sh, p, 2), p.dout, p, row0, p.n, hd);
    for (unsigned int a = 0; a < dh; ++a) acc[a] = 0.0f;
    const float lse = active ? p.lse[(unsigned long long)hd * p.n + i] : 0.0f;
    const float di = active ? p.dd[(unsigned long long)hd * p.n + i] : 0.0f;
    for (unsigned int j0 = 0; j0 < p.nk; j0 += p.tile) {
        const unsigned int cnt = min(p.tile, p.nk - j0);
        sa_load_tile(sh.a, p.k, p.mask, p, j0, cnt, hd);
        sa_load_tile(sh.b, p.v, p.mask, p, j0, cnt, hd);
        for (unsigned int t = threadIdx.x; t < p.tile; t += blockDim.x) sh.s1[t] = t < cnt ? p.mask[j0 + t] : 0.0f;
        __syncthreads();
        if (active) {
            for (unsigned int t0 = 0; t0 < cnt; t0 += SA_GROUP) {
                float sq[SA_GROUP];
                float sv[SA_GROUP];
                sa_dot4(qr, sh.a + t0 * dh, dh, sq);
                sa_dot4(go, sh.b + t0 * dh, dh, sv);
                float ds[SA_GROUP];
                bool any = false;
#pragma unroll
                for (unsigned int u = 0; u < SA_GROUP; ++u) {
                    const bool on = sh.s1[t0 + u] != 0.0f;
                    const float pw = on ? expf(p.scale * sq[u] - lse) : 0.0f;
                    ds[u] = pw * (sv[u] - di);
                    any = any || on;
                }
                if (any) sa_axpy4(acc, ds, sh.a + t0 * dh, dh);
            }
        }
        __syncthreads();
    }
    if (!active) return;
    const unsigned long long off = (unsigned long long)i * p.d + hd * dh;
    for (unsigned int a = 0; a < dh; ++a) p.out[off + a] += p.scale * acc[a];
}

extern "C" __global__ void softmax_attention_dkv_bwd_f32(SoftmaxAttnParams p) {
    DYN_SHARED(float, base);
    if (p.stride == 0u) {  // dh ≤ SA_REG_DH: the register path
        sa_dkv_reg(p, base);
        return;
    }
    const SaShared sh = sa_shared(base, p);
    const unsigned int dh = p.dh;
    const unsigned int hd = blockIdx.y;
    const unsigned int row0 = blockIdx.x * blockDim.x;
    const unsigned int j = row0 + threadIdx.x;
    // only real keys receive gradient; the other threads help load the query tiles
    const bool active = j < p.nk && p.mask[j] != 0.0f;
    float* dk = sa_row(sh, p, 0);
    float* dv = sa_row(sh, p, 1);
    const float* kr = sa_row(sh, p, 2);
    const float* vr = sa_row(sh, p, 3);
    sa_load_rows(sa_region(sh, p, 2), p.k, p, row0, p.nk, hd);
    sa_load_rows(sa_region(sh, p, 3), p.v, p, row0, p.nk, hd);
    for (unsigned int a = 0; a < dh; ++a) {
        dk[a] = 0.0f;
        dv[a] = 0.0f;
    }
    for (unsigned int i0 = 0; i0 < p.n; i0 += p.tile) {
        const unsigned int cnt = min(p.tile, p.n - i0);
        sa_load_tile(sh.a, p.q, nullptr, p, i0, cnt, hd);
        sa_load_tile(sh.b, p.dout, nullptr, p, i0, cnt, hd);
        for (unsigned int t = threadIdx.x; t < p.tile; t += blockDim.x) {
            sh.s1[t] = t < cnt ? p.lse[(unsigned long long)hd * p.n + i0 + t] : 0.0f;
            sh.s2[t] = t < cnt ? p.dd[(unsigned long long)hd * p.n + i0 + t] : 0.0f;
        }
        __syncthreads();
        if (active) {
            for (unsigned int t0 = 0; t0 < cnt; t0 += SA_GROUP) {
                float sq[SA_GROUP];
                float sv[SA_GROUP];
                sa_dot4(kr, sh.a + t0 * dh, dh, sq);
                sa_dot4(vr, sh.b + t0 * dh, dh, sv);
                float pw[SA_GROUP];
                float ds[SA_GROUP];
#pragma unroll
                for (unsigned int u = 0; u < SA_GROUP; ++u) {
                    // query rows past cnt (zeros in the tile) take no part
                    pw[u] = t0 + u < cnt ? expf(p.scale * sq[u] - sh.s1[t0 + u]) : 0.0f;
                    ds[u] = pw[u] * (sv[u] - sh.s2[t0 + u]);
                }
                sa_axpy4(dk, ds, sh.a + t0 * dh, dh);
                sa_axpy4(dv, pw, sh.b + t0 * dh, dh);
            }
        }
        __syncthreads();
    }
    if (!active) return;
    const unsigned long long off = (unsigned long long)j * p.d + hd * dh;
    for (unsigned int a = 0; a < dh; ++a) {
        p.out[off + a] += p.scale * dk[a];
        p.out2[off + a] += dv[a];
    }
}
