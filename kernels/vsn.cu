// Variable selection (src/ops/vsn, docs/model.md): z, x, v, xt [n, F]; mask [n]; m, keep, s [F].
//   v_i = softmax(z_i) (max-subtracted, Σ in f64);  W = Σ_i mask_i;  m_f = Σ_i mask_i v_if / W (0 if W = 0)
//   keep_f = 1[m_f ≥ τ/F] or top-k (the k largest m, ties to the lower index: f32::total_cmp order)
//   xt_if = x_if · (F · v_if · keep_f);  s_f = −F m_f ln(m_f + ε) / ln F (0 when F = 1), ε = 1e−12
// Backward (ACCUMULATES into dz): μ_f = dm_f + ds_f s'(m_f), s'(m) = −F (ln(m + ε) + m/(m + ε)) / ln F;
//   dv_if = F keep_f x_if dxt_if + mask_i μ_f / W;  dz_if += v_if (dv_if − Σ_f' v_if' dv_if')  (f64)
// Grid mapping:
//   vsn_softmax_fwd_f32, vsn_rows_bwd_f32: one warp per row, 8 warps per block, warps stride over rows.
//   column_sum_bwd_f32 (kernels/linear.cu) sums mask_i v_if over rows into work[F] (f64).
//   vsn_select_fwd_f32: ONE block of 256 threads (as gate_fwd_f32): W, m, s, wsum, then keep.
//   vsn_apply_fwd_f32: grid-stride over n·F.  vsn_dm_bwd_f32: one thread per feature, work[F] = μ.
#include "common.cuh"

#define VSN_EPS 1e-12

__device__ __forceinline__ float vsn_warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        const float o = __shfl_xor_sync(FULL_MASK, v, offset);
        v = o > v ? o : v;
    }
    return v;
}

// Rust's f32::total_cmp as a signed integer order
__device__ __forceinline__ int vsn_total_key(float x) {
    const int i = __float_as_int(x);
    return i ^ (int)((unsigned int)(i >> 31) >> 1);
}

extern "C" __global__ void vsn_softmax_fwd_f32(VsnParams p) {
    const unsigned int lane = threadIdx.x & 31u;
    const unsigned int warps = blockDim.x >> 5;
    for (unsigned int row = blockIdx.x * warps + (threadIdx.x >> 5); row < p.n; row += gridDim.x * warps) {
        const unsigned long long base = (unsigned long long)row * p.f;
        float mx = __int_as_float((int)0xff800000u);  // −∞
        for (unsigned int j = lane; j < p.f; j += 32u) {
            const float zv = p.z[base + j];
            mx = zv > mx ? zv : mx;
        }
        mx = vsn_warp_max(mx);
        double sum = 0.0;
        for (unsigned int j = lane; j < p.f; j += 32u) {
            const float e = expf(p.z[base + j] - mx);
            p.v[base + j] = e;
            sum += (double)e;
        }
        sum = warp_sum(sum);
        for (unsigned int j = lane; j < p.f; j += 32u) {
            p.v[base + j] = (float)((double)p.v[base + j] / sum);
        }
    }
}

extern "C" __global__ void vsn_select_fwd_f32(VsnParams p) {
    __shared__ double scratch[32];
    double w = 0.0;
    for (unsigned int i = threadIdx.x; i < p.n; i += blockDim.x) {
        const float mi = p.mask[i];
        if (mi != 0.0f) w += (double)mi;
    }
    w = block_sum(w, scratch);
    if (threadIdx.x == 0) p.wsum[0] = (float)w;
    const double ff = (double)p.f;
    for (unsigned int c = threadIdx.x; c < p.f; c += blockDim.x) {
        const double mv = w > 0.0 ? p.work[c] / w : 0.0;
        p.m[c] = (float)mv;
        p.s[c] = p.f > 1u ? (float)(-ff * mv * log(mv + VSN_EPS) / log(ff)) : 0.0f;
    }
    __syncthreads();  // every m is written before any rank is taken
    for (unsigned int c = threadIdx.x; c < p.f; c += blockDim.x) {
        const float mv = p.m[c];
        bool keep;
        if (p.mode == 0u) {
            keep = mv >= p.tau_f;
        } else {
            const int key = vsn_total_key(mv);
            unsigned int rank = 0;
            for (unsigned int o = 0; o < p.f; ++o) {
                const int ko = vsn_total_key(p.m[o]);
                rank += (ko > key || (ko == key && o < c)) ? 1u : 0u;
            }
            keep = rank < p.topk;
        }
        p.keep[c] = keep ? 1.0f : 0.0f;
    }
}

extern "C" __global__ void vsn_apply_fwd_f32(VsnParams p) {
    const unsigned long long total = (unsigned long long)p.n * p.f;
    const float ff = (float)p.f;
    GRID_STRIDE(e, total) {
        const unsigned int c = (unsigned int)(e % p.f);
        p.xt[e] = p.x[e] * (ff * p.v[e] * p.keep[c]);
    }
}

extern "C" __global__ void vsn_dm_bwd_f32(VsnBwdParams p) {
    const double ff = (double)p.f;
    GRID_STRIDE(c, p.f) {
        double mu = (double)p.dm[c];
        if (p.f > 1u) {
            const double mv = (double)p.m[c];
            mu += (double)p.ds[c] * (-ff * (log(mv + VSN_EPS) + mv / (mv + VSN_EPS)) / log(ff));
        }
        p.work[c] = mu;
    }
}

extern "C" __global__ void vsn_rows_bwd_f32(VsnBwdParams p) {
    const unsigned int lane = threadIdx.x & 31u;
    const unsigned int warps = blockDim.x >> 5;
    const double w = (double)p.wsum[0];
    const double ff = (double)p.f;
    for (unsigned int row = blockIdx.x * warps + (threadIdx.x >> 5); row < p.n; row += gridDim.x * warps) {
        const unsigned long long base = (unsigned long long)row * p.f;
        const double wi = w > 0.0 ? (double)p.mask[row] / w : 0.0;
        double dot = 0.0;
        for (unsigned int j = lane; j < p.f; j += 32u) {
            const double dv = ff * (double)p.keep[j] * (double)p.x[base + j] * (double)p.dxt[base + j] +
                              wi * p.work[j];
            dot += (double)p.v[base + j] * dv;
        }
        dot = warp_sum(dot);
        for (unsigned int j = lane; j < p.f; j += 32u) {
            const double dv = ff * (double)p.keep[j] * (double)p.x[base + j] * (double)p.dxt[base + j] +
                              wi * p.work[j];
            p.dz[base + j] = (float)((double)p.dz[base + j] + (double)p.v[base + j] * (dv - dot));
        }
    }
}
