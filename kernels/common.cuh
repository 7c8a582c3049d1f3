// common.cuh — shared by every kernel in kernels/*.cu, by NVRTC (build.rs / runtime) and by the CPU
// emulator (kernels/emu, where the .cu files are compiled by g++ as C++ with emu.h force-included).
//
// Rules:
// - Every entry point is `extern "C" __global__ void <op>_{fwd,bwd}_f32(<Op>Params p)`: ONE parameter,
//   a struct defined here and mirrored by a #[repr(C)] struct in src/gpu/params.rs (pointers are
//   8 bytes, sizes `unsigned int`, scalars `float`). Keep the two in the same field order.
// - No includes but this file. Dynamic shared memory only through DYN_SHARED.
// - Block sizes are multiples of 32 (the helpers below shuffle with a full mask).
#pragma once

#ifdef ERAENGINE_EMU
// The emulator hands each block a malloc'd buffer of the launch's dynamic shared size.
#define DYN_SHARED(T, name) T* name = reinterpret_cast<T*>(emu_dyn_shared())
#else
#define DYN_SHARED(T, name)                                  \
    extern __shared__ __align__(16) unsigned char name##_raw[]; \
    T* name = reinterpret_cast<T*>(name##_raw)
#endif

#define FULL_MASK 0xffffffffu

// ---------------------------------------------------------------------------------------------
// Parameter structs (mirrored in src/gpu/params.rs)

// layer_norm_fwd_f32: out[n,d], mean[n], rstd[n] from inp[n,d], gamma[d], beta[d]
struct LayerNormFwdParams {
    float* out;
    float* mean;
    float* rstd;
    const float* inp;
    const float* gamma;
    const float* beta;
    unsigned int n;
    unsigned int d;
};

// layer_norm_bwd_f32: dinp[n,d] += ...; partial[gridDim.x][2d] = this block's (dgamma | dbeta)
struct LayerNormBwdParams {
    float* dinp;
    float* partial;
    const float* dout;
    const float* inp;
    const float* mean;
    const float* rstd;
    const float* gamma;
    unsigned int n;
    unsigned int d;
};

// layer_norm_params_bwd_f32: dgamma[d] += Σ_b partial[b][0..d], dbeta[d] += Σ_b partial[b][d..2d]
struct LayerNormParamsBwdParams {
    float* dgamma;
    float* dbeta;
    const float* partial;
    unsigned int blocks;
    unsigned int d;
};

// mse_sparsity_fwd_f32: partial[gridDim.x][3] = (Σ t (ŷ−y)², Σ t, Σ g) of this block's share
struct LossFwdParams {
    float* partial;
    const float* yhat;
    const float* y;
    const float* mask;
    const float* g;
    unsigned int n;
    unsigned int t;
    unsigned int f;
    unsigned int pad;  // explicit: the struct has no implicit padding (Rust derives Pod)
};

// mse_sparsity_reduce_fwd_f32: parts[4] = (loss, mse, sparsity, count) from partial[blocks][3]
struct LossReduceParams {
    float* parts;
    const float* partial;
    unsigned int blocks;
    unsigned int f;
    float lambda;
    unsigned int pad;  // explicit: the struct has no implicit padding (Rust derives Pod)
};

// mse_sparsity_bwd_f32: dyhat += 2 t (ŷ − y) / count, dg += λ / f; count read from parts[3]
struct LossBwdParams {
    float* dyhat;
    float* dg;
    const float* yhat;
    const float* y;
    const float* mask;
    const float* parts;
    unsigned int n;
    unsigned int t;
    unsigned int f;
    float lambda;
};

// elementwise over n: gelu/elu1 fwd (out = op(a)), bwd (out += b · op'(a), a = inp, b = dout),
// add_fwd (out = a + b), accumulate_fwd (out += a)
struct EltParams {
    float* out;
    const float* a;
    const float* b;
    unsigned int n;
    unsigned int pad;  // explicit: the struct has no implicit padding (Rust derives Pod)
};

// dropout_fwd_f32: out = keep ? inp · scale : 0;  dropout_bwd_f32: out += keep ? inp · scale : 0,
// scale = 1 / (1 − p) computed on the host in f32 (as the CPU op does)
struct DropoutParams {
    float* out;
    const float* inp;
    unsigned int n;
    float p;
    float scale;
    unsigned int seed_lo;
    unsigned int seed_hi;
    unsigned int step;
    unsigned int tensor;
    unsigned int pad;  // explicit: the struct has no implicit padding (Rust derives Pod)
};

// adam_fwd_f32: one AdamW step over n parameters; bc1 = 1 − β1^step, bc2 = 1 − β2^step (host-computed)
struct AdamParams {
    float* p;
    const float* g;
    float* m;
    float* v;
    unsigned int n;
    float lr;
    float beta1;
    float beta2;
    float eps;
    float weight_decay;
    float grad_scale;
    float bc1;
    float bc2;
    unsigned int pad;  // explicit: the struct has no implicit padding (Rust derives Pod)
};

// sum_squares_fwd_f32: partial[gridDim.x] = Σ g² (f64) of this block's share
struct SumSqParams {
    double* partial;
    const float* g;
    unsigned int n;
    unsigned int pad;  // explicit: the struct has no implicit padding (Rust derives Pod)
};

// sum_squares_reduce_fwd_f32: out[0] = Σ_b partial[b]
struct SumSqReduceParams {
    double* out;
    const double* partial;
    unsigned int blocks;
    unsigned int pad;  // explicit: the struct has no implicit padding (Rust derives Pod)
};

// linear_fwd_f32 / linear_bwd_f32 (kernels/linear.cu): C[r,c] (op)= Σ_i A(r,i) B(i,c) with
// A(r,i) = a[r·a_rs + i·a_is], B(i,c) = b[i·b_is + c·b_cs]; mode 0: out = acc + bias (bias may be
// null), 1: out += acc, 2: out[blockIdx.z][rows·cols] = acc over inner [z·k_chunk, (z+1)·k_chunk)
struct GemmParams {
    float* out;
    const float* a;
    const float* b;
    const float* bias;
    unsigned int rows;
    unsigned int cols;
    unsigned int inner;
    unsigned int a_rs;
    unsigned int a_is;
    unsigned int b_is;
    unsigned int b_cs;
    unsigned int mode;
    unsigned int k_chunk;
    unsigned int pad;  // explicit: the struct has no implicit padding (Rust derives Pod)
};

// linear_reduce_bwd_f32: out[e] += Σ_z partial[z·len + e] (f64, z order)
struct SplitReduceParams {
    float* out;
    const float* partial;
    unsigned int splits;
    unsigned int len;
};

// column_sum_bwd_f32: s[c] = Σ_i rowmask[i] · a[i,c] · b[i,c] (rowmask, b may be null) in f64;
// out_f64[c] = s when out_f64 is not null, else out_f32[c] += s
struct ColumnSumParams {
    float* out_f32;
    double* out_f64;
    const float* a;
    const float* b;
    const float* rowmask;
    unsigned int n;
    unsigned int cols;
};

// linear_attention_state_{fwd,bwd}_f32 (kernels/linear_attention.cu): per (chunk of `rows` rows,
// head) the partial sums P[a,b] = Σ_r wφ φ(x_ra) wy y_rb and Z[a] = Σ_r wφ φ(x_ra) wz_r into
// partial[(chunk·h + hd)·(dh² + dh) + e]; fwd: wφ = mask, wy = wz = 1; bwd: wφ = 1, (wy, wz) = rowscale
struct LinAttnStateParams {
    float* partial;
    const float* x;
    const float* y;
    const float* rowscale;
    const float* mask;
    unsigned int n;
    unsigned int d;
    unsigned int h;
    unsigned int dh;
    unsigned int rows;
    unsigned int pad;  // explicit: the struct has no implicit padding (Rust derives Pod)
};

// linear_attention_reduce_fwd_f32: s[hd·dh² + e] / z[hd·dh + a] = Σ_chunk partial (f64, chunk order)
struct LinAttnReduceParams {
    float* s;
    float* z;
    const float* partial;
    unsigned int chunks;
    unsigned int h;
    unsigned int dh;
    unsigned int pad;  // explicit: the struct has no implicit padding (Rust derives Pod)
};

// linear_attention_{out_fwd,rows_bwd,dq_bwd,dkv_bwd}_f32: out/out2 the written tensors, x = q or k,
// y = dout or v, s/z = S, z (or dS, dz), rowscale = (inv, dden) per (i, hd), mask [n]
struct LinAttnRowsParams {
    float* out;
    float* out2;
    const float* x;
    const float* y;
    const float* s;
    const float* z;
    float* rowscale;
    const float* mask;
    unsigned int n;
    unsigned int d;
    unsigned int h;
    unsigned int dh;
};

// gate_fwd_f32 (kernels/gate.cu, one block): work[f] holds Σ_i m_i x_if (f64) on entry; writes
// xbar, u, g, keep; mode 0: keep = g ≥ tau, 1: keep the topk largest g
struct GateParams {
    float* g;
    float* keep;
    float* xbar;
    float* u;
    double* work;
    const float* w;
    const float* a;
    const float* b;
    const float* mask;
    unsigned int n;
    unsigned int f;
    unsigned int r;
    unsigned int mode;
    float tau;
    unsigned int topk;
};

// gate_apply_fwd_f32: xt[i,c] = x[i,c] · (g[c] · keep[c])
struct GateApplyParams {
    float* xt;
    const float* x;
    const float* g;
    const float* keep;
    unsigned int n;
    unsigned int f;
};

// gate_bwd_f32 (one block): work = ds [f] (Σ_i dxt x, f64, on entry) | dℓ [f] | du [r]
struct GateBwdParams {
    float* dw;
    float* da;
    float* db;
    float* dg;
    double* work;
    const float* g;
    const float* keep;
    const float* xbar;
    const float* u;
    const float* b;
    unsigned int f;
    unsigned int r;
};

// pos_enc_add_fwd_f32 (kernels/pos_enc.cu): h[n, d] += PE
struct PosEncParams {
    float* h;
    unsigned int n;
    unsigned int d;
};

// softmax_attention_{fwd,d_bwd,dq_bwd,dkv_bwd}_f32 (kernels/softmax_attention.cu): out/out2 the
// written tensors (fwd: out, lse; dq: dq; dkv: dk, dv), dd = D [h·n] scratch, o = the forward's out,
// tile = rows per shared tile, stride = per-thread row stride in shared memory, scale = 1/√dh
struct SoftmaxAttnParams {
    float* out;
    float* out2;
    float* dd;
    const float* q;
    const float* k;
    const float* v;
    const float* dout;
    const float* o;
    const float* lse;
    const float* mask;
    unsigned int n;
    unsigned int d;
    unsigned int h;
    unsigned int dh;
    unsigned int tile;
    unsigned int stride;
    float scale;
    unsigned int pad;  // explicit: the struct has no implicit padding (Rust derives Pod)
};


// Sizes mirrored by const assertions in src/gpu/params.rs.
static_assert(sizeof(LayerNormFwdParams) == 56, "LayerNormFwdParams layout changed: update src/gpu/params.rs");
static_assert(sizeof(LayerNormBwdParams) == 64, "LayerNormBwdParams layout changed: update src/gpu/params.rs");
static_assert(sizeof(LayerNormParamsBwdParams) == 32, "LayerNormParamsBwdParams layout changed: update src/gpu/params.rs");
static_assert(sizeof(LossFwdParams) == 56, "LossFwdParams layout changed: update src/gpu/params.rs");
static_assert(sizeof(LossReduceParams) == 32, "LossReduceParams layout changed: update src/gpu/params.rs");
static_assert(sizeof(LossBwdParams) == 64, "LossBwdParams layout changed: update src/gpu/params.rs");
static_assert(sizeof(EltParams) == 32, "EltParams layout changed: update src/gpu/params.rs");
static_assert(sizeof(DropoutParams) == 48, "DropoutParams layout changed: update src/gpu/params.rs");
static_assert(sizeof(AdamParams) == 72, "AdamParams layout changed: update src/gpu/params.rs");
static_assert(sizeof(SumSqParams) == 24, "SumSqParams layout changed: update src/gpu/params.rs");
static_assert(sizeof(SumSqReduceParams) == 24, "SumSqReduceParams layout changed: update src/gpu/params.rs");
static_assert(sizeof(GemmParams) == 72, "GemmParams layout changed: update src/gpu/params.rs");
static_assert(sizeof(SplitReduceParams) == 24, "SplitReduceParams layout changed: update src/gpu/params.rs");
static_assert(sizeof(ColumnSumParams) == 48, "ColumnSumParams layout changed: update src/gpu/params.rs");
static_assert(sizeof(LinAttnStateParams) == 64, "LinAttnStateParams layout changed: update src/gpu/params.rs");
static_assert(sizeof(LinAttnReduceParams) == 40, "LinAttnReduceParams layout changed: update src/gpu/params.rs");
static_assert(sizeof(LinAttnRowsParams) == 80, "LinAttnRowsParams layout changed: update src/gpu/params.rs");
static_assert(sizeof(GateParams) == 96, "GateParams layout changed: update src/gpu/params.rs");
static_assert(sizeof(GateApplyParams) == 40, "GateApplyParams layout changed: update src/gpu/params.rs");
static_assert(sizeof(GateBwdParams) == 88, "GateBwdParams layout changed: update src/gpu/params.rs");
static_assert(sizeof(PosEncParams) == 16, "PosEncParams layout changed: update src/gpu/params.rs");
static_assert(sizeof(SoftmaxAttnParams) == 112, "SoftmaxAttnParams layout changed: update src/gpu/params.rs");

// corr_loss_{sums,means,moments,reduce}_fwd_f32 / corr_loss_bwd_f32 (kernels/corr_loss.cu):
// partial[t][blocks][3] scratch, stats[t][4], parts[2] = (corr, K); dyhat only in the backward
struct CorrLossParams {
    float* partial;
    float* stats;
    float* parts;
    float* dyhat;
    const float* yhat;
    const float* y;
    const float* mask;
    unsigned int n;
    unsigned int t;
    unsigned int blocks;
    float weight;
};

// film_fwd_f32 / film_bwd_f32 (kernels/film.cu): out[n,d], inp[n,d], gamma[d], beta[d]
struct FilmParams {
    float* out;
    const float* inp;
    const float* gamma;
    const float* beta;
    unsigned int n;
    unsigned int d;
};

static_assert(sizeof(CorrLossParams) == 72, "CorrLossParams layout changed: update src/gpu/params.rs");
static_assert(sizeof(FilmParams) == 40, "FilmParams layout changed: update src/gpu/params.rs");

// ---------------------------------------------------------------------------------------------
// Helpers

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(FULL_MASK, v, offset);
    return v;
}

// Sum over the block; the result is valid in every thread. `scratch` holds 32 T in shared memory.
// Every thread of the block must call it (it holds two barriers).
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
    const unsigned int lane = threadIdx.x & 31u;
    const unsigned int warp = threadIdx.x >> 5;
    const unsigned int warps = (blockDim.x + 31u) >> 5;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    T total = lane < warps ? scratch[lane] : T(0);
    total = warp_sum(total);
    __syncthreads();  // scratch may be reused right after
    return total;
}

// Philox4x32-10 (Salmon et al. 2011, Random123 constants), identical to src/rng.rs.
struct Philox4 {
    unsigned int v[4];
};

__device__ __forceinline__ Philox4 philox4x32_10(unsigned int c0, unsigned int c1, unsigned int c2,
                                                 unsigned int c3, unsigned int k0, unsigned int k1) {
    for (int round = 0; round < 10; ++round) {
        const unsigned int hi0 = __umulhi(0xD2511F53u, c0);
        const unsigned int lo0 = 0xD2511F53u * c0;
        const unsigned int hi1 = __umulhi(0xCD9E8D57u, c2);
        const unsigned int lo1 = 0xCD9E8D57u * c2;
        const unsigned int n0 = hi1 ^ c1 ^ k0;
        const unsigned int n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    Philox4 r;
    r.v[0] = c0;
    r.v[1] = c1;
    r.v[2] = c2;
    r.v[3] = c3;
    return r;
}

// uniform in [0, 1) with 24 bits for element e of (seed, step, tensor): counter = [(e/4) lo,
// (e/4) hi, step, tensor], key = [seed lo, seed hi], word e % 4.
__device__ __forceinline__ float philox_uniform(unsigned long long e, unsigned int seed_lo,
                                                unsigned int seed_hi, unsigned int step,
                                                unsigned int tensor) {
    const unsigned long long block = e >> 2;
    const Philox4 r = philox4x32_10((unsigned int)(block & 0xffffffffull), (unsigned int)(block >> 32),
                                    step, tensor, seed_lo, seed_hi);
    return (float)(r.v[e & 3ull] >> 8) * (1.0f / 16777216.0f);
}
