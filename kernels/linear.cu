// Linear map, PyTorch nn.Linear layout (SPEC §3 mapper, attention projections, FFN, head):
//   forward   out[n,m]  = inp[n,k] · w[m,k]ᵀ + b[m]
//   backward  dinp[n,k] += dout[n,m] · w[m,k];  dw[m,k] += dout[n,m]ᵀ · inp[n,k];  db[m] += Σ_i dout[i,:]
// Nothing is saved: the backward reads inp and w.
//
// All three products run through ONE tiled GEMM, C[r,c] (op)= Σ_i A(r,i) · B(i,c), with the operands
// described by strides, A(r,i) = a[r·a_rs + i·a_is], B(i,c) = b[i·b_is + c·b_cs]:
//   forward:  A = inp (a_rs = k, a_is = 1),  B(i,c) = w[c,i] (b_is = 1, b_cs = k),  rows n, cols m, inner k
//   dinp:     A = dout (a_rs = m, a_is = 1), B = w (b_is = k, b_cs = 1),           rows n, cols k, inner m
//   dw:       A(r,i) = dout[i,r] (a_rs = 1, a_is = m), B = inp (b_is = k, b_cs = 1), rows m, cols k, inner n
// Grid mapping: blockIdx.x = 64-column tile, blockIdx.y = 64-row tile, blockIdx.z = split of the inner
// dimension; 256 threads = 16 × 16, thread (tx, ty) owns the 4 × 4 outputs (ty + 16u, tx + 16v), so
// stores are coalesced and shared reads conflict-free. The inner dimension is walked in slices of 16:
// A[64 × 16] and B[16 × 64] go to static shared memory (tile loads choose the index order that reads
// global memory contiguously), then every thread does 16 rank-1 updates of its register tile.
// Modes: 0 (forward) C = acc + bias (bias may be null); 1 (dinp) C += acc; 2 (split, dw) each split z
// writes its own partial[z][rows·cols] = acc over inner [z·k_chunk, (z+1)·k_chunk), and
// linear_reduce_bwd_f32 adds Σ_z partial[z] (in z order, f64) to dw: no atomics, results do not
// depend on scheduling. One split covers 256 rows, as the CPU op sums dw in blocks of 256 rows,
// or fewer (≥ 64) where the m×k tiles alone would leave an H100's SMs idle (dw_splits in
// src/ops/linear/gpu.rs: the split size is a function of the shape only).
// db rides along (colsum = 1): db = Σ_i dout[i,:] is the dw product against an implicit column of
// ones, so the first column tile of each split also writes the split's row sums of A = doutᵀ (f32
// in row order, as the CPU sums a block of rows) behind the dw partials, and the same reduce
// adds them in split order (f64) to db: no launch of its own.
// column_sum_bwd_f32 (db only when k = 0; the gate's masked era mean and Σ_i dxt·x, film, vsn,
// mask fill and row add use it):
//   s[c] = Σ_i rowmask[i] · a[i,c] · b[i,c]  (rowmask, b optional) in f64; grid (⌈cols / 32⌉,
//   splits): block (x, z) = 32 columns × 8 row lanes over the rows of range z, [z·rows, (z+1)·rows),
//   lane l sums the range's rows l, l+8, ... in order, the 8 lanes are summed in lane order. With
//   one range the block writes out_f64[c] = s or out_f32[c] += s; with several (so that a narrow
//   sum such as db at d = 64 still fills the GPU: splits chosen on the host from n and cols only)
//   range z writes partial[z·cols + c] and column_sum_reduce_bwd_f32 adds the partials in z order:
//   the result depends on the shape, never on scheduling.
#include "common.cuh"

#define GEMM_TILE 64
#define GEMM_K 16
#define GEMM_PAD 1

template <bool COLSUM>
__device__ __forceinline__ void gemm_tile(const GemmParams& p) {
    __shared__ float as[GEMM_K][GEMM_TILE + GEMM_PAD];
    __shared__ float bs[GEMM_K][GEMM_TILE + GEMM_PAD];
    const unsigned int tid = threadIdx.x;
    const unsigned int tx = tid & 15u;
    const unsigned int ty = tid >> 4;
    const unsigned int r0 = blockIdx.y * GEMM_TILE;
    const unsigned int c0 = blockIdx.x * GEMM_TILE;
    const unsigned int k_begin = blockIdx.z * p.k_chunk;
    const unsigned int k_end = min(p.inner, k_begin + p.k_chunk);
    float acc[4][4];
#pragma unroll
    for (int u = 0; u < 4; ++u)
#pragma unroll
        for (int v = 0; v < 4; ++v) acc[u][v] = 0.0f;
    // db (mode 2 with colsum): the first column tile's threads 0..63 also sum row r0 + tid of A over
    // the split's inner range, one slice after the other, in inner order (f32, as the CPU op sums
    // a block of 256 rows); out-of-range entries of the tile are zeros
    const bool colsum = COLSUM && p.mode == 2u && p.colsum != 0u && blockIdx.x == 0u && tid < GEMM_TILE;
    float rowsum = 0.0f;

    for (unsigned int i0 = k_begin; i0 < k_end; i0 += GEMM_K) {
        // 64 × 16 elements of each operand, 4 per thread; the fast index follows the unit stride
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const unsigned int idx = tid + 256u * e;
            unsigned int rr, kk;
            if (p.a_is == 1u) {
                kk = idx & 15u;
                rr = idx >> 4;
            } else {
                rr = idx & 63u;
                kk = idx >> 6;
            }
            const unsigned int r = r0 + rr;
            const unsigned int i = i0 + kk;
            as[kk][rr] = (r < p.rows && i < k_end)
                             ? p.a[(unsigned long long)r * p.a_rs + (unsigned long long)i * p.a_is]
                             : 0.0f;
            unsigned int cc;
            if (p.b_cs == 1u) {
                cc = idx & 63u;
                kk = idx >> 6;
            } else {
                kk = idx & 15u;
                cc = idx >> 4;
            }
            const unsigned int c = c0 + cc;
            const unsigned int ib = i0 + kk;
            bs[kk][cc] = (c < p.cols && ib < k_end)
                             ? p.b[(unsigned long long)ib * p.b_is + (unsigned long long)c * p.b_cs]
                             : 0.0f;
        }
        __syncthreads();
        if (colsum) {
#pragma unroll 1
            for (int kk = 0; kk < GEMM_K; ++kk) rowsum += as[kk][tid];
        }
#pragma unroll
        for (int kk = 0; kk < GEMM_K; ++kk) {
            float av[4], bv[4];
#pragma unroll
            for (int u = 0; u < 4; ++u) av[u] = as[kk][ty + 16u * u];
#pragma unroll
            for (int v = 0; v < 4; ++v) bv[v] = bs[kk][tx + 16u * v];
#pragma unroll
            for (int u = 0; u < 4; ++u)
#pragma unroll
                for (int v = 0; v < 4; ++v) acc[u][v] += av[u] * bv[v];
        }
        __syncthreads();  // the tiles are overwritten by the next slice
    }

    // seek to this split's partial (mode 2) or to the output itself
    float* out = p.out + (p.mode == 2u ? (unsigned long long)blockIdx.z * p.rows * p.cols : 0ull);
    if (colsum && r0 + tid < p.rows) {
        const unsigned long long sums = (unsigned long long)gridDim.z * p.rows * p.cols;
        p.out[sums + (unsigned long long)blockIdx.z * p.rows + r0 + tid] = rowsum;
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
        const unsigned int r = r0 + ty + 16u * u;
        if (r >= p.rows) continue;
#pragma unroll
        for (int v = 0; v < 4; ++v) {
            const unsigned int c = c0 + tx + 16u * v;
            if (c >= p.cols) continue;
            const unsigned long long o = (unsigned long long)r * p.cols + c;
            if (p.mode == 1u) {
                out[o] += acc[u][v];
            } else if (p.mode == 0u && p.bias != nullptr) {
                out[o] = acc[u][v] + p.bias[c];
            } else {
                out[o] = acc[u][v];
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(256) linear_fwd_f32(GemmParams p) { gemm_tile<false>(p); }

extern "C" __global__ void __launch_bounds__(256) linear_bwd_f32(GemmParams p) { gemm_tile<true>(p); }

// dw (the first len entries) and db (db_len more, from the row sums behind the splits' partials)
extern "C" __global__ void linear_reduce_bwd_f32(SplitReduceParams p) {
    GRID_STRIDE(e, (unsigned long long)p.len + p.db_len) {
        const bool w = e < p.len;
        const unsigned long long stride = w ? p.len : p.db_len;
        const float* part = w ? p.partial + e : p.partial + (unsigned long long)p.splits * p.len + (e - p.len);
        double s = 0.0;
        for (unsigned int z = 0; z < p.splits; ++z) s += (double)part[(unsigned long long)z * stride];
        float* o = w ? p.out + e : p.db + (e - p.len);
        *o = (float)((double)*o + s);
    }
}

// Rows [z·rows, min(n, (z+1)·rows)) of 32 columns per block (blockIdx.x: column group, blockIdx.y:
// range z), 8 row lanes of 32 columns; each lane sums its rows in order, then the 8 lanes in order.
extern "C" __global__ void column_sum_bwd_f32(ColumnSplitParams p) {
    __shared__ double lanes[8][32];
    const unsigned int col = threadIdx.x & 31u;
    const unsigned int lane = threadIdx.x >> 5;
    const unsigned int c = blockIdx.x * 32u + col;
    const unsigned int i0 = blockIdx.y * p.rows;
    const unsigned int i1 = min(p.n, i0 + p.rows);
    double s = 0.0;
    if (c < p.cols) {
        for (unsigned int i = i0 + lane; i < i1; i += 8u) {
            const float m = p.rowmask != nullptr ? p.rowmask[i] : 1.0f;
            if (m == 0.0f) continue;
            const unsigned long long e = (unsigned long long)i * p.cols + c;
            const double v = (double)p.a[e] * (p.b != nullptr ? (double)p.b[e] : 1.0);
            s += (double)m * v;
        }
    }
    lanes[lane][col] = s;
    __syncthreads();
    if (lane == 0u && c < p.cols) {
        double t = 0.0;
        for (unsigned int l = 0; l < 8u; ++l) t += lanes[l][col];
        if (p.splits > 1u) {
            p.partial[(unsigned long long)blockIdx.y * p.cols + c] = t;
        } else if (p.out_f64 != nullptr) {
            p.out_f64[c] = t;
        } else {
            p.out_f32[c] = (float)((double)p.out_f32[c] + t);
        }
    }
}

// the ranges' partials of column c summed in range order (only launched with splits > 1)
extern "C" __global__ void column_sum_reduce_bwd_f32(ColumnSplitParams p) {
    GRID_STRIDE(c, p.cols) {
        double t = 0.0;
        for (unsigned int z = 0; z < p.splits; ++z) t += p.partial[(unsigned long long)z * p.cols + c];
        if (p.out_f64 != nullptr) {
            p.out_f64[c] = t;
        } else {
            p.out_f32[c] = (float)((double)p.out_f32[c] + t);
        }
    }
}
