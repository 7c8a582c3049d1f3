// Elementwise ops over n floats, grid-stride, 256 threads per block, grid = min(ceil(n/256), 4096):
//   gelu_fwd_f32:  out = 0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³)))            (a = x)
//   gelu_bwd_f32:  out += dout · (0.5 (1 + th) + 0.5 x (1 − th²) √(2/π)(1 + 3·0.044715 x²))
//   sigmoid_fwd_f32: out = 1 / (1 + e⁻ˣ);  sigmoid_bwd_f32: out += dout · e⁻ˣ σ²  (e⁻ˣ clamped at
//     e^88.7 as exp_f32 on the CPU does, so σ' stays finite; NaN stays NaN)
//   elu_fwd_f32: out = x > 0 ? x : eˣ − 1;  elu_bwd_f32: out += dout · (x > 0 ? 1 : eˣ)  (α = 1;
//     eˣ with x clamped below at −87.3 as exp_f32 on the CPU; NaN stays NaN)
//   add_fwd_f32:   out = a + b
//   accumulate_fwd_f32: out += a   (the backward of add and of every fan-out)
//   dropout_fwd_f32: out = keep ? x · s : 0;  dropout_bwd_f32: out += keep ? dout · s : 0, s = 1/(1 − p)
//     keep_e iff philox_uniform(e; seed, step, tensor) ≥ p — the same mask as src/rng.rs on the CPU,
//     so nothing is saved for the backward.
//   ema_fwd_f32: ema = decay · ema + keep · w, keep = 1 − decay computed on the host in f32 (the
//     moving average of the weights, `--ema`; each product and the sum rounded on their own, as
//     src/train/ema.rs computes it on the CPU)
// In the bwd kernels a = inp (the forward's input) and b = dout.
#include "common.cuh"

#define GELU_K 0.7978845608028654f  // √(2/π)
#define GELU_C 0.044715f

extern "C" __global__ void gelu_fwd_f32(EltParams p) {
    GRID_STRIDE(i, p.n) {
        const float x = p.a[i];
        p.out[i] = 0.5f * x * (1.0f + tanhf(GELU_K * (x + GELU_C * x * x * x)));
    }
}

extern "C" __global__ void gelu_bwd_f32(EltParams p) {
    GRID_STRIDE(i, p.n) {
        const float x = p.a[i];
        const float th = tanhf(GELU_K * (x + GELU_C * x * x * x));
        const float dudx = GELU_K * (1.0f + 3.0f * GELU_C * x * x);
        p.out[i] += p.b[i] * (0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * dudx);
    }
}

// e⁻ˣ with −x clamped to 88.7 (a comparison, not fminf, so NaN propagates)
__device__ __forceinline__ float exp_neg_clamped(float x) {
    const float nx = -x;
    return expf(nx > 88.7f ? 88.7f : nx);
}

extern "C" __global__ void sigmoid_fwd_f32(EltParams p) {
    GRID_STRIDE(i, p.n) {
        p.out[i] = 1.0f / (1.0f + exp_neg_clamped(p.a[i]));
    }
}

extern "C" __global__ void sigmoid_bwd_f32(EltParams p) {
    GRID_STRIDE(i, p.n) {
        const float e = exp_neg_clamped(p.a[i]);
        const float s = 1.0f / (1.0f + e);
        p.out[i] += p.b[i] * (e * s * s);
    }
}

// eˣ for the negative branch of ELU: x clamped to [−87.3, 0] (comparisons, so NaN propagates)
__device__ __forceinline__ float elu_exp(float x) {
    const float c = x > 0.0f ? 0.0f : x;
    return expf(c < -87.3f ? -87.3f : c);
}

extern "C" __global__ void elu_fwd_f32(EltParams p) {
    GRID_STRIDE(i, p.n) {
        const float x = p.a[i];
        p.out[i] = x > 0.0f ? x : elu_exp(x) - 1.0f;
    }
}

extern "C" __global__ void elu_bwd_f32(EltParams p) {
    GRID_STRIDE(i, p.n) {
        const float x = p.a[i];
        p.out[i] += p.b[i] * (x > 0.0f ? 1.0f : elu_exp(x));
    }
}

extern "C" __global__ void add_fwd_f32(EltParams p) {
    GRID_STRIDE(i, p.n) {
        p.out[i] = p.a[i] + p.b[i];
    }
}

extern "C" __global__ void accumulate_fwd_f32(EltParams p) {
    GRID_STRIDE(i, p.n) {
        p.out[i] += p.a[i];
    }
}

extern "C" __global__ void dropout_fwd_f32(DropoutParams p) {
    GRID_STRIDE(i, p.n) {
        const float u = philox_uniform(i, p.seed_lo, p.seed_hi, p.step, p.tensor);
        p.out[i] = u >= p.p ? p.inp[i] * p.scale : 0.0f;
    }
}

extern "C" __global__ void dropout_bwd_f32(DropoutParams p) {
    GRID_STRIDE(i, p.n) {
        const float u = philox_uniform(i, p.seed_lo, p.seed_hi, p.step, p.tensor);
        // __fmul_rn: the product rounded on its own, as the CPU does (no fused multiply-add)
        if (u >= p.p) p.out[i] += __fmul_rn(p.inp[i], p.scale);
    }
}

extern "C" __global__ void ema_fwd_f32(EmaParams p) {
    GRID_STRIDE(i, p.n) {
        p.ema[i] = __fadd_rn(__fmul_rn(p.decay, p.ema[i]), __fmul_rn(p.keep, p.w[i]));
    }
}
