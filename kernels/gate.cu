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
// Grid mapping:
//   column_sum_bwd_f32 (kernels/linear.cu) first sums the columns over rows in f64 into `work`
//   (Σ_i m_i x_if forward, Σ_i dxt_if x_if backward);
//   gate_fwd_f32 / gate_bwd_f32: ONE block of 256 threads (f is a feature count, ≤ a few thousand):
//   threads stride over features (then over rank columns, then over f·r), __syncthreads between the
//   stages; top-k ranks each feature against all f (O(f²) compares, no sort, no atomics).
//   work (f64 scratch): forward [f] column sums → x̄, then [r] u; backward [f] ds | [f] dℓ | [r] du.
//   gate_apply_fwd_f32: xt = x · (g · keep), grid-stride over n·f.
#include "common.cuh"

// Rust's f32::total_cmp as a signed integer order
__device__ __forceinline__ int gate_total_key(float x) {
    const int i = __float_as_int(x);
    return i ^ (int)((unsigned int)(i >> 31) >> 1);
}

extern "C" __global__ void gate_fwd_f32(GateParams p) {
    __shared__ double scratch[32];
    double* xbar64 = p.work;      // [f]: column sums on entry, x̄ after stage 1
    double* u64 = p.work + p.f;   // [r]
    double cnt = 0.0;
    for (unsigned int i = threadIdx.x; i < p.n; i += blockDim.x) {
        const float m = p.mask[i];
        if (m != 0.0f) cnt += (double)m;
    }
    cnt = block_sum(cnt, scratch);
    for (unsigned int c = threadIdx.x; c < p.f; c += blockDim.x) {
        const double xb = cnt > 0.0 ? xbar64[c] / cnt : 0.0;
        xbar64[c] = xb;
        p.xbar[c] = (float)xb;
    }
    __syncthreads();
    for (unsigned int j = threadIdx.x; j < p.r; j += blockDim.x) {
        double s = 0.0;
        for (unsigned int c = 0; c < p.f; ++c) s += (double)p.a[(unsigned long long)c * p.r + j] * xbar64[c];
        u64[j] = s;
        p.u[j] = (float)s;
    }
    __syncthreads();
    for (unsigned int c = threadIdx.x; c < p.f; c += blockDim.x) {
        double l = (double)p.w[c];
        for (unsigned int j = 0; j < p.r; ++j) l += (double)p.b[(unsigned long long)c * p.r + j] * u64[j];
        p.g[c] = (float)(1.0 / (1.0 + exp(-l)));
    }
    __syncthreads();  // every g is written before any rank is taken
    for (unsigned int c = threadIdx.x; c < p.f; c += blockDim.x) {
        const float gv = p.g[c];
        bool keep;
        if (p.mode == 0u) {
            keep = gv >= p.tau;
        } else {
            const int key = gate_total_key(gv);
            unsigned int rank = 0;
            for (unsigned int o = 0; o < p.f; ++o) {
                const int ko = gate_total_key(p.g[o]);
                rank += (ko > key || (ko == key && o < c)) ? 1u : 0u;
            }
            keep = rank < p.topk;
        }
        p.keep[c] = keep ? 1.0f : 0.0f;
    }
}

extern "C" __global__ void gate_apply_fwd_f32(GateApplyParams p) {
    const unsigned long long total = (unsigned long long)p.n * p.f;
    GRID_STRIDE(e, total) {
        const unsigned int c = (unsigned int)(e % p.f);
        p.xt[e] = p.x[e] * (p.g[c] * p.keep[c]);
    }
}

extern "C" __global__ void gate_bwd_f32(GateBwdParams p) {
    const double* ds = p.work;     // [f] Σ_i dxt x
    double* dl = p.work + p.f;     // [f]
    double* du = p.work + 2u * p.f;  // [r]
    for (unsigned int c = threadIdx.x; c < p.f; c += blockDim.x) {
        const float dg = (float)((double)p.dg[c] + ds[c] * (double)p.keep[c]);
        p.dg[c] = dg;
        const double gv = (double)p.g[c];
        const double d = (double)dg * gv * (1.0 - gv);
        dl[c] = d;
        p.dw[c] += (float)d;
    }
    if (p.r == 0u) return;  // uniform: the whole block leaves
    __syncthreads();
    for (unsigned int j = threadIdx.x; j < p.r; j += blockDim.x) {
        double s = 0.0;
        for (unsigned int c = 0; c < p.f; ++c) s += dl[c] * (double)p.b[(unsigned long long)c * p.r + j];
        du[j] = s;
    }
    __syncthreads();
    const unsigned long long total = (unsigned long long)p.f * p.r;
    for (unsigned long long e = threadIdx.x; e < total; e += blockDim.x) {
        const unsigned int c = (unsigned int)(e / p.r);
        const unsigned int j = (unsigned int)(e - (unsigned long long)c * p.r);
        p.db[e] += (float)(dl[c] * (double)p.u[j]);
        p.da[e] += (float)((double)p.xbar[c] * du[j]);
    }
}
