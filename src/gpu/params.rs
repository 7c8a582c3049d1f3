//! `#[repr(C)]` mirrors of the kernel parameter structs of `kernels/common.cuh`, same field order.
//! Device pointers are `u64`; every struct spells out its padding (`pad`) so it derives `Pod` and its
//! bytes are exactly the C struct's; the sizes are asserted here and by `static_assert` in C.

use bytemuck::{Pod, Zeroable};

macro_rules! params {
    ($(#[$doc:meta])* $name:ident, $size:expr, { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
        pub struct $name {
            $(pub $field: $ty),*
        }
        const _: () = assert!(std::mem::size_of::<$name>() == $size);
    };
}

params!(
    /// `layer_norm_fwd_f32`
    LayerNormFwdParams, 56, { out: u64, mean: u64, rstd: u64, inp: u64, gamma: u64, beta: u64, n: u32, d: u32 }
);
params!(
    /// `layer_norm_bwd_f32`: partial is `[blocks][2d]` scratch
    LayerNormBwdParams, 64, { dinp: u64, partial: u64, dout: u64, inp: u64, mean: u64, rstd: u64, gamma: u64, n: u32, d: u32 }
);
params!(
    /// `layer_norm_params_bwd_f32`
    LayerNormParamsBwdParams, 32, { dgamma: u64, dbeta: u64, partial: u64, blocks: u32, d: u32 }
);
params!(
    /// `mse_sparsity_fwd_f32`: partial is `[blocks][3]` scratch
    LossFwdParams, 56, { partial: u64, yhat: u64, y: u64, mask: u64, g: u64, n: u32, t: u32, f: u32, pad: u32 }
);
params!(
    /// `mse_sparsity_reduce_fwd_f32`: parts = (loss, mse, sparsity, count)
    LossReduceParams, 32, { parts: u64, partial: u64, blocks: u32, f: u32, lambda: f32, pad: u32 }
);
params!(
    /// `mse_sparsity_bwd_f32`
    LossBwdParams, 64, { dyhat: u64, dg: u64, yhat: u64, y: u64, mask: u64, parts: u64, n: u32, t: u32, f: u32, lambda: f32 }
);
params!(
    /// gelu/elu1/add/accumulate kernels
    EltParams, 32, { out: u64, a: u64, b: u64, n: u32, pad: u32 }
);
params!(
    /// `dropout_fwd_f32` / `dropout_bwd_f32`
    DropoutParams, 48, { out: u64, inp: u64, n: u32, p: f32, scale: f32, seed_lo: u32, seed_hi: u32, step: u32, tensor: u32, pad: u32 }
);
params!(
    /// `adam_fwd_f32`
    AdamParams, 72, { p: u64, g: u64, m: u64, v: u64, n: u32, lr: f32, beta1: f32, beta2: f32, eps: f32, weight_decay: f32, grad_scale: f32, bc1: f32, bc2: f32, pad: u32 }
);
params!(
    /// `sum_squares_fwd_f32`: partial is `[blocks]` f64 scratch
    SumSqParams, 24, { partial: u64, g: u64, n: u32, pad: u32 }
);
params!(
    /// `sum_squares_reduce_fwd_f32`
    SumSqReduceParams, 24, { out: u64, partial: u64, blocks: u32, pad: u32 }
);
params!(
    /// `linear_fwd_f32` / `linear_bwd_f32`: the tiled GEMM (mode 0 forward with bias, 1 `+=`, 2 split partials)
    GemmParams, 72, { out: u64, a: u64, b: u64, bias: u64, rows: u32, cols: u32, inner: u32, a_rs: u32, a_is: u32, b_is: u32, b_cs: u32, mode: u32, k_chunk: u32, pad: u32 }
);
params!(
    /// `linear_reduce_bwd_f32`: out += Σ_z partial[z]
    SplitReduceParams, 24, { out: u64, partial: u64, splits: u32, len: u32 }
);
params!(
    /// `column_sum_bwd_f32`: out_f64 = Σ_i rowmask·a·b, or out_f32 += it
    ColumnSumParams, 48, { out_f32: u64, out_f64: u64, a: u64, b: u64, rowmask: u64, n: u32, cols: u32 }
);
params!(
    /// `linear_attention_state_{fwd,bwd}_f32`: per-(chunk, head) partial sums of S, z (or dS, dz)
    LinAttnStateParams, 64, { partial: u64, x: u64, y: u64, rowscale: u64, mask: u64, n: u32, d: u32, h: u32, dh: u32, rows: u32, pad: u32 }
);
params!(
    /// `linear_attention_reduce_fwd_f32`: chunk partials → s, z
    LinAttnReduceParams, 40, { s: u64, z: u64, partial: u64, chunks: u32, h: u32, dh: u32, pad: u32 }
);
params!(
    /// `linear_attention_{out_fwd,rows_bwd,dq_bwd,dkv_bwd}_f32`
    LinAttnRowsParams, 80, { out: u64, out2: u64, x: u64, y: u64, s: u64, z: u64, rowscale: u64, mask: u64, n: u32, d: u32, h: u32, dh: u32 }
);
params!(
    /// `gate_fwd_f32`: work = f64 scratch [f + r]
    GateParams, 96, { g: u64, keep: u64, xbar: u64, u: u64, work: u64, w: u64, a: u64, b: u64, mask: u64, n: u32, f: u32, r: u32, mode: u32, tau: f32, topk: u32 }
);
params!(
    /// `gate_apply_fwd_f32`
    GateApplyParams, 40, { xt: u64, x: u64, g: u64, keep: u64, n: u32, f: u32 }
);
params!(
    /// `gate_bwd_f32`: work = f64 scratch [2f + r]
    GateBwdParams, 88, { dw: u64, da: u64, db: u64, dg: u64, work: u64, g: u64, keep: u64, xbar: u64, u: u64, b: u64, f: u32, r: u32 }
);
params!(
    /// `pos_enc_add_fwd_f32`
    PosEncParams, 16, { h: u64, n: u32, d: u32 }
);
params!(
    /// `softmax_attention_{fwd,d_bwd,dq_bwd,dkv_bwd}_f32`
    SoftmaxAttnParams, 112, { out: u64, out2: u64, dd: u64, q: u64, k: u64, v: u64, dout: u64, o: u64, lse: u64, mask: u64, n: u32, d: u32, h: u32, dh: u32, tile: u32, stride: u32, scale: f32, pad: u32 }
);
