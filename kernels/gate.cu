// Era-dependent feature gate (SPEC §3), x: [n, f] preprocessed features, mask: [n], w: [f], a, b: [f, r]:
//   x̄ = Σ_i m_i x_i / Σ_i m_i (zeros when no row is real);  u = Aᵀ x̄ [r];  ℓ = w + B u;  g = sigmoid(ℓ)
//   keep_f = 1[g_f ≥ τ], or top-k: the k largest g (ties to the lower index, the order of Rust's
//   f32::total_cmp);  xt = x ⊙ (g ⊙ keep)
// Saved for the backward: xbar[f], u[r], g[f], keep[f] (1.0 / 0.0), as the CPU op (src/ops/gate.rs).
// Backward (keep constant): ds_f = Σ_i dxt_if x_if; dg_f += ds_f keep_f (dg also carries the sparsity
// gradient and is updated in place); dℓ = dg g (1 − g); dw += dℓ; db[f,j] += dℓ_f u_j;
// dA[f,j] += x̄_f Σ_f' dℓ_f' B[f',j]. r = 0 is the static gate: ℓ = w and a, b, da, db are empty.
// Like the CPU op, x̄, u, ℓ, ds, dℓ and du are computed in f64.
//
// Grid mapping: `parts` = ⌈f / 256⌉ blocks of 256 threads, thread blockIdx.x·256 + t owns feature c,
// for every per-feature stage; each reduction over features is a block sum (block_sum: fixed tree)
// into per-block partials, added in block order by whoever needs the total: every block that needs
// it adds the same partials in the same order, so results depend on f and r, never on scheduling.
//   column_sum_bwd_f32 (kernels/linear.cu) first sums the columns over rows in f64 into `work`
//   (Σ_i m_i x_if forward, Σ_i dxt_if x_if backward);
//   gate_fwd_f32: every block sums the mask (cnt); x̄_c = work[c] / cnt (in place) for its features;
//     partial u_j = Σ_{c of the block} a[c,j] x̄_c into work[f + block·r + j];
//   gate_logit_fwd_f32: u_j = Σ_blocks partial (block 0 writes u), 256 at a time through shared
//     memory; ℓ_c = w_c + Σ_j b[c,j] u_j in j order; g; threshold mode: keep;
//   gate_rank_fwd_f32 (top-k only): a warp per feature, the lanes count the features ahead of it,
//     rank_c = #{o : key_o > key_c or (key_o = key_c and o < c)} (key: f32::total_cmp order), i.e.
//     its place in a stable descending sort, exactly; keep = rank < topk. O(f²) compares over
//     f/8 blocks, no sort, no atomics.
//   gate_bwd_f32: dg, dℓ (into work[f + c]), dw per feature; partial du_j = Σ_{c of the block}
//     dℓ_c b[c,j] into work[2f + block·r + j];
//   gate_params_bwd_f32 (r > 0): grid-stride over f·r; du_j = Σ_blocks partial (in block order),
//     db[c,j] += dℓ_c u_j, da[c,j] += x̄_c du_j.
//   gate_apply_fwd_f32: xt = x · (g · keep), grid-stride over n·f.
#include "common.cuh"

// Rust's f32::total_cmp as a signed integer order
__device__ __forceinline__ int gate_total_key(float x) {
    const int i = __float_as_int(x);
    return i ^ (int)((unsigned int)(i >> 31) >> 1);
}

extern "C" __global__ void gate_fwd_f32(GateParams p) {
    __shared__ double scratch[32];
    double* xbar64 = p.work;              // [f]: column sums on entry, x̄ after
    double* part = p.work + p.f;          // [parts][r]
    double cnt = 0.0;
    for (unsigned int i = threadIdx.x; i < p.n; i += blockDim.x) {
        const float m = p.mask[i];
        if (m != 0.0f) cnt += (double)m;
    }
    cnt = block_sum(cnt, scratch);
    const unsigned int c = blockIdx.x * blockDim.x + threadIdx.x;
    double xb = 0.0;
    if (c < p.f) {
        xb = cnt > 0.0 ? xbar64[c] / cnt : 0.0;
        xbar64[c] = xb;
        p.xbar[c] = (float)xb;
    }
    for (unsigned int j = 0; j < p.r; ++j) {  // uniform over the block: block_sum's barriers
        const double v = c < p.f ? (double)p.a[(unsigned long long)c * p.r + j] * xb : 0.0;
        const double s = block_sum(v, scratch);
        if (threadIdx.x == 0) part[(unsigned long long)blockIdx.x * p.r + j] = s;
    }
}

extern "C" __global__ void __launch_bounds__(256) gate_logit_fwd_f32(GateParams p) {
    __shared__ double us[256];
    const double* part = p.work + p.f;
    const unsigned int c = blockIdx.x * blockDim.x + threadIdx.x;
    double l = c < p.f ? (double)p.w[c] : 0.0;
    for (unsigned int j0 = 0; j0 < p.r; j0 += blockDim.x) {  // uniform over the block
        const unsigned int j = j0 + threadIdx.x;
        if (j < p.r) {
            double s = 0.0;
            for (unsigned int q = 0; q < p.parts; ++q) s += part[(unsigned long long)q * p.r + j];
            us[threadIdx.x] = s;
            if (blockIdx.x == 0) p.u[j] = (float)s;
        }
        __syncthreads();
        if (c < p.f) {
            const unsigned int jn = min(p.r - j0, blockDim.x);
            const float* br = p.b + (unsigned long long)c * p.r + j0;
            for (unsigned int t = 0; t < jn; ++t) l += (double)br[t] * us[t];
        }
        __syncthreads();  // us is overwritten next
    }
    if (c >= p.f) return;
    const float gv = (float)(1.0 / (1.0 + exp(-l)));
    p.g[c] = gv;
    if (p.mode == 0u) p.keep[c] = gv >= p.tau ? 1.0f : 0.0f;
}

extern "C" __global__ void gate_rank_fwd_f32(GateParams p) {
    const unsigned int lane = threadIdx.x & 31u;
    const unsigned int c = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (c >= p.f) return;  // the whole warp
    const int key = gate_total_key(p.g[c]);
    unsigned int ahead = 0;
    for (unsigned int o = lane; o < p.f; o += 32u) {
        const int ko = gate_total_key(p.g[o]);
        ahead += (ko > key || (ko == key && o < c)) ? 1u : 0u;
    }
    ahead = warp_sum(ahead);
    if (lane == 0u) p.keep[c] = ahead < p.topk ? 1.0f : 0.0f;
}

extern "C" __global__ void gate_apply_fwd_f32(GateApplyParams p) {
    const unsigned long long total = (unsigned long long)p.n * p.f;
    GRID_STRIDE(e, total) {
        const unsigned int c = (unsigned int)(e % p.f);
        p.xt[e] = p.x[e] * (p.g[c] * p.keep[c]);
    }
}

extern "C" __global__ void gate_bwd_f32(GateBwdParams p) {
    __shared__ double scratch[32];
    const double* ds = p.work;         // [f] Σ_i dxt x
    double* dl = p.work + p.f;         // [f]
    double* part = p.work + 2u * p.f;  // [parts][r]
    const unsigned int c = blockIdx.x * blockDim.x + threadIdx.x;
    double d = 0.0;
    if (c < p.f) {
        const float dg = (float)((double)p.dg[c] + ds[c] * (double)p.keep[c]);
        p.dg[c] = dg;
        const double gv = (double)p.g[c];
        d = (double)dg * gv * (1.0 - gv);
        dl[c] = d;
        p.dw[c] += (float)d;
    }
    for (unsigned int j = 0; j < p.r; ++j) {  // uniform over the block: block_sum's barriers
        const double v = c < p.f ? d * (double)p.b[(unsigned long long)c * p.r + j] : 0.0;
        const double s = block_sum(v, scratch);
        if (threadIdx.x == 0) part[(unsigned long long)blockIdx.x * p.r + j] = s;
    }
}

extern "C" __global__ void gate_params_bwd_f32(GateBwdParams p) {
    const double* dl = p.work + p.f;
    const double* part = p.work + 2u * p.f;
    const unsigned long long total = (unsigned long long)p.f * p.r;
    GRID_STRIDE(e, total) {
        const unsigned int c = (unsigned int)(e / p.r);
        const unsigned int j = (unsigned int)(e - (unsigned long long)c * p.r);
        double du = 0.0;
        for (unsigned int q = 0; q < p.parts; ++q) du += part[(unsigned long long)q * p.r + j];
        p.db[e] += (float)(dl[c] * (double)p.u[j]);
        p.da[e] += (float)((double)p.xbar[c] * du);
    }
}
