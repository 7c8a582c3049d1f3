//! Unary elementwise maps y = f(x), one table for every device: the CPU loops here, one kernel
//! pair `<name>_fwd_f32` / `<name>_bwd_f32` per entry in `kernels/elementwise.cu`, one tape node
//! kind ([`crate::tape::Node::Unary`]). Adding a map is a variant here, its kernels, and its
//! kernel ids in `gpu.rs` (see docs/architecture.md).
//!
//! Forward: out = f(inp). Backward: dinp += dout · f'(inp) (accumulates, as every backward).
//! (A leaf of the module graph: the `Backend` trait and the tape name [`Unary`].)

use crate::ops::gemm::Simd;
use crate::ops::par;
use crate::ops::scalar::exp_f32;

/// Which unary map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unary {
    /// σ(x) = 1 / (1 + e⁻ˣ); σ'(x) = σ(1 − σ), computed as e⁻ˣ·σ² (no cancellation on either
    /// side; e⁻ˣ saturates at e^88.7 through [`exp_f32`], so σ' stays finite).
    Sigmoid,
    /// ELU with α = 1 (TFT's gated residual network, docs/model.md): x for x > 0, eˣ − 1
    /// otherwise; f'(x) = 1 for x > 0, eˣ otherwise (eˣ through [`exp_f32`], so x ≤ −87.3 gives
    /// f = −1, f' ≈ 1e−38; NaN stays NaN).
    Elu,
}

impl Unary {
    /// Every map, for tests and the bench.
    pub const ALL: &'static [Unary] = &[Unary::Sigmoid, Unary::Elu];

    /// Name as in the kernels (`<name>_fwd_f32`).
    pub fn name(self) -> &'static str {
        match self {
            Unary::Sigmoid => "sigmoid",
            Unary::Elu => "elu",
        }
    }

    /// f(x).
    #[inline(always)]
    pub fn f(self, x: f32) -> f32 {
        match self {
            Unary::Sigmoid => 1.0 / (1.0 + exp_f32(-x)),
            Unary::Elu => {
                // (a comparison, not f32::min, so a NaN stays NaN)
                let e = exp_f32(if x > 0.0 { 0.0 } else { x });
                if x > 0.0 {
                    x
                } else {
                    e - 1.0
                }
            }
        }
    }

    /// f'(x).
    #[inline(always)]
    pub fn grad(self, x: f32) -> f32 {
        match self {
            Unary::Sigmoid => {
                let e = exp_f32(-x);
                let s = 1.0 / (1.0 + e);
                e * s * s
            }
            Unary::Elu => {
                let e = exp_f32(if x > 0.0 { 0.0 } else { x });
                if x > 0.0 {
                    1.0
                } else {
                    e
                }
            }
        }
    }

    /// Rough cost per element (sizes the parallel chunks).
    fn flops(self) -> usize {
        match self {
            Unary::Sigmoid => 12,
            Unary::Elu => 10,
        }
    }
}

/// out = f(inp) elementwise. (The map is chosen once, outside the loop: matched per element, it
/// kept the loop from vectorising, 4× slower.)
pub fn unary_fwd(op: Unary, out: &mut [f32], inp: &[f32]) {
    match op {
        Unary::Sigmoid => map1(out, inp, op.flops(), |x| Unary::Sigmoid.f(x)),
        Unary::Elu => map1(out, inp, op.flops(), |x| Unary::Elu.f(x)),
    }
}

/// dinp += dout · f'(inp) elementwise (the map chosen outside the loop, as in [`unary_fwd`]).
pub fn unary_bwd(op: Unary, dinp: &mut [f32], dout: &[f32], inp: &[f32]) {
    let flops = op.flops() + 2;
    match op {
        Unary::Sigmoid => acc2(dinp, dout, inp, flops, |g, x| g * Unary::Sigmoid.grad(x)),
        Unary::Elu => acc2(dinp, dout, inp, flops, |g, x| g * Unary::Elu.grad(x)),
    }
}

/// Elements per chunk for an elementwise op costing `flops` per element, a multiple of 4.
pub(crate) fn elem_chunk(len: usize, flops: usize) -> usize {
    par::chunk_rows_aligned(len, flops, 4)
}

/// out[i] = f(a[i]) over chunks in parallel.
pub(crate) fn map1(out: &mut [f32], a: &[f32], flops: usize, f: impl Fn(f32) -> f32 + Sync) {
    let len = out.len().min(a.len());
    if len == 0 {
        return;
    }
    let chunk = elem_chunk(len, flops);
    let simd = Simd::detect();
    par::run(
        out[..len].chunks_mut(chunk).zip(a[..len].chunks(chunk)),
        |(o, a)| map_on(simd, o, a, &f),
    );
}

/// out[i] = f(a[i], b[i]) over chunks in parallel.
pub(crate) fn map2(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    flops: usize,
    f: impl Fn(f32, f32) -> f32 + Sync,
) {
    zip2(out, a, b, flops, false, f)
}

/// out[i] += f(a[i], b[i]) over chunks in parallel.
pub(crate) fn acc2(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    flops: usize,
    f: impl Fn(f32, f32) -> f32 + Sync,
) {
    zip2(out, a, b, flops, true, f)
}

/// [`map2`] (`accumulate` false) or [`acc2`].
fn zip2(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    flops: usize,
    accumulate: bool,
    f: impl Fn(f32, f32) -> f32 + Sync,
) {
    let len = out.len().min(a.len()).min(b.len());
    if len == 0 {
        return;
    }
    let chunk = elem_chunk(len, flops);
    let simd = Simd::detect();
    par::run(
        out[..len]
            .chunks_mut(chunk)
            .zip(a[..len].chunks(chunk))
            .zip(b[..len].chunks(chunk)),
        |((o, a), b)| {
            if accumulate {
                acc_on(simd, o, a, b, &f)
            } else {
                simd.run(
                    #[inline(always)]
                    || {
                        for ((ov, &av), &bv) in o.iter_mut().zip(a).zip(b) {
                            *ov = f(av, bv);
                        }
                    },
                )
            }
        },
    );
}

// The loops are compiled for AVX-512, AVX2 + FMA and the baseline and picked at run time, so the
// maps (exp_f32 and its neighbours are branch-free) vectorise at the machine's width. Each element
// is computed by the same IEEE operations on every path (Rust never contracts a·b + c into an FMA
// by itself), so the three paths give identical bits.

#[inline(always)]
fn map_loop<F: Fn(f32) -> f32>(o: &mut [f32], a: &[f32], f: &F) {
    for (ov, &av) in o.iter_mut().zip(a) {
        *ov = f(av);
    }
}

#[inline(always)]
fn acc_loop<F: Fn(f32, f32) -> f32>(o: &mut [f32], a: &[f32], b: &[f32], f: &F) {
    for ((ov, &av), &bv) in o.iter_mut().zip(a).zip(b) {
        *ov += f(av, bv);
    }
}

/// [`map_loop`] on the `simd` path ([`Simd::run`]; a path the CPU lacks runs the baseline).
pub fn map_on<F: Fn(f32) -> f32>(simd: Simd, o: &mut [f32], a: &[f32], f: &F) {
    simd.run(
        #[inline(always)]
        || map_loop(o, a, f),
    )
}

/// [`acc_loop`] on the `simd` path ([`Simd::run`]; a path the CPU lacks runs the baseline).
pub fn acc_on<F: Fn(f32, f32) -> f32>(simd: Simd, o: &mut [f32], a: &[f32], b: &[f32], f: &F) {
    simd.run(
        #[inline(always)]
        || acc_loop(o, a, b, f),
    )
}
