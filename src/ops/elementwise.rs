//! Elementwise ops: GELU (tanh form), ELU+1 (φ of linear attention), residual add, inverted dropout
//! with a Philox4x32-10 mask, sinusoidal positional encoding.
//!
//! Derivatives: GELU' = ½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3·0.044715x²), t = tanh(√(2/π)(x + 0.044715x³));
//! (elu + 1)' = 1 for x > 0, eˣ otherwise. Dropout's backward reuses the forward's mask (same key).

use super::par;
use crate::rng::{dropout_counter, philox4x32_10, unit_f32};

/// Which dropout mask: Philox keyed by seed; counter from step, tensor id and element index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropoutKey {
    pub seed: u64,
    pub step: u32,
    pub tensor: u32,
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_C: f32 = 0.044_715;

/// Elements per chunk for an elementwise op costing `flops` per element, a multiple of 4.
fn elem_chunk(len: usize, flops: usize) -> usize {
    par::chunk_rows_aligned(len, flops, 4)
}

/// out[i] = f(a[i]) over chunks in parallel.
fn map1(out: &mut [f32], a: &[f32], flops: usize, f: impl Fn(f32) -> f32 + Sync) {
    let len = out.len().min(a.len());
    if len == 0 {
        return;
    }
    let chunk = elem_chunk(len, flops);
    par::run(
        out[..len].chunks_mut(chunk).zip(a[..len].chunks(chunk)),
        |(o, a)| {
            for (ov, &av) in o.iter_mut().zip(a) {
                *ov = f(av);
            }
        },
    );
}

/// out[i] += f(a[i], b[i]) over chunks in parallel.
fn acc2(out: &mut [f32], a: &[f32], b: &[f32], flops: usize, f: impl Fn(f32, f32) -> f32 + Sync) {
    let len = out.len().min(a.len()).min(b.len());
    if len == 0 {
        return;
    }
    let chunk = elem_chunk(len, flops);
    par::run(
        out[..len]
            .chunks_mut(chunk)
            .zip(a[..len].chunks(chunk))
            .zip(b[..len].chunks(chunk)),
        |((o, a), b)| {
            for ((ov, &av), &bv) in o.iter_mut().zip(a).zip(b) {
                *ov += f(av, bv);
            }
        },
    );
}

#[inline]
fn gelu(x: f32) -> f32 {
    // 0.5·(1 + tanh v) = σ(2v): no cancellation where tanh v ≈ −1, and exp_f32 vectorises.
    let (s, _) = gelu_sigmoid(x);
    x * s
}

/// (σ(2v), 1 − σ(2v)) with v = √(2/π)(x + 0.044715x³), both without cancellation.
#[inline(always)]
fn gelu_sigmoid(x: f32) -> (f32, f32) {
    let v = SQRT_2_OVER_PI * (x + GELU_C * x * x * x);
    let e = exp_f32(-2.0 * v);
    let s = 1.0 / (1.0 + e);
    (s, e * s)
}

#[inline]
fn gelu_grad(x: f32) -> f32 {
    // d/dx x·σ(2v) = σ + 2x·σ(1 − σ)·v′ (= 0.5(1 + t) + 0.5x(1 − t²)v′ with t = tanh v)
    let (s, one_minus_s) = gelu_sigmoid(x);
    s + 2.0 * x * s * one_minus_s * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x)
}

/// φ(x) = elu(x) + 1: x + 1 for x > 0, eˣ otherwise (always > 0). Branch-free, so loops over it
/// vectorise.
#[inline(always)]
pub fn elu1(x: f32) -> f32 {
    // (not f32::min, which would turn a NaN into 0)
    let e = exp_f32(if x > 0.0 { 0.0 } else { x });
    if x > 0.0 {
        x + 1.0
    } else {
        e
    }
}

/// φ'(x): 1 for x > 0, eˣ otherwise.
#[inline(always)]
pub fn elu1_grad(x: f32) -> f32 {
    // (not f32::min, which would turn a NaN into 0)
    let e = exp_f32(if x > 0.0 { 0.0 } else { x });
    if x > 0.0 {
        1.0
    } else {
        e
    }
}

/// eˣ in f32 to about 2 ulp, branch-free so a loop over a block of scores vectorises (libm's expf
/// does not): x = n·ln2 + r with |r| ≤ ln2/2, eʳ by the Cephes polynomial, 2ⁿ through the exponent
/// bits. Inputs below −87.3 give e^−87.3 ≈ 1e−38 (softmax weights that small do not matter);
/// inputs above 88.7 are clamped (scores here are ≤ 0 after subtracting the maximum); NaN stays NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln2 split in two so n·C1 is exact
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    // adding 1.5·2²³ rounds to the nearest integer without a libm call
    const ROUND: f32 = 12_582_912.0;
    let x = if x < -87.3 { -87.3 } else { x };
    let x = if x > 88.7 { 88.7 } else { x };
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * C1 - n * C2;
    let mut y = 1.987_569_2e-4;
    y = y * r + 1.398_2e-3;
    y = y * r + 8.333_452e-3;
    y = y * r + 4.166_579_6e-2;
    y = y * r + 1.666_666_5e-1;
    y = y * r + 0.5;
    let y = y * r * r + r + 1.0;
    // 2ⁿ: n + 127 in the exponent field (n ∈ [−126, 128] after the clamps)
    let pow2 = f32::from_bits(((n as i32 + 127).clamp(1, 254) as u32) << 23);
    y * pow2
}

pub fn gelu_fwd(out: &mut [f32], inp: &[f32]) {
    map1(out, inp, 20, gelu);
}
pub fn gelu_bwd(dinp: &mut [f32], dout: &[f32], inp: &[f32]) {
    acc2(dinp, dout, inp, 30, |g, x| g * gelu_grad(x));
}
pub fn elu1_fwd(out: &mut [f32], inp: &[f32]) {
    map1(out, inp, 10, elu1);
}
pub fn elu1_bwd(dinp: &mut [f32], dout: &[f32], inp: &[f32]) {
    acc2(dinp, dout, inp, 10, |g, x| g * elu1_grad(x));
}
pub fn add_fwd(out: &mut [f32], a: &[f32], b: &[f32]) {
    let len = out.len().min(a.len()).min(b.len());
    if len == 0 {
        return;
    }
    let chunk = elem_chunk(len, 1);
    par::run(
        out[..len]
            .chunks_mut(chunk)
            .zip(a[..len].chunks(chunk))
            .zip(b[..len].chunks(chunk)),
        |((o, a), b)| {
            for ((ov, &av), &bv) in o.iter_mut().zip(a).zip(b) {
                *ov = av + bv;
            }
        },
    );
}
pub fn add_bwd(da: &mut [f32], db: &mut [f32], dout: &[f32]) {
    for (d, &g) in da.iter_mut().zip(dout) {
        *d += g;
    }
    for (d, &g) in db.iter_mut().zip(dout) {
        *d += g;
    }
}

/// Calls f(e, scale_or_zero) for every element of `out`'s chunk, one Philox call per 4 elements:
/// the multiplier is 1/(1 − p) where element e is kept (u ≥ p) and 0 where it is dropped.
fn dropout_apply(out: &mut [f32], src: &[f32], p: f32, key: DropoutKey, accumulate: bool) {
    let len = out.len().min(src.len());
    if len == 0 {
        return;
    }
    let scale = 1.0 / (1.0 - p);
    // Philox costs ~ 10 rounds per 4 elements
    let chunk = elem_chunk(len, 12);
    par::run(
        out[..len]
            .chunks_mut(chunk)
            .zip(src[..len].chunks(chunk))
            .enumerate(),
        |(c, (o, s))| {
            let e0 = (c * chunk) as u64;
            for (g, (og, sg)) in o.chunks_mut(4).zip(s.chunks(4)).enumerate() {
                // e0 is a multiple of 4, so this group is one Philox counter
                let (ctr, k) = dropout_counter(key, e0 + 4 * g as u64);
                let r = philox4x32_10(ctr, k);
                for ((ov, &sv), &rv) in og.iter_mut().zip(sg).zip(&r) {
                    let kept = unit_f32(rv) >= p;
                    let y = if kept { sv * scale } else { 0.0 };
                    if accumulate {
                        *ov += y;
                    } else {
                        *ov = y;
                    }
                }
            }
        },
    );
}

/// keep element e iff philox_uniform(key, e) >= p; out = inp / (1 − p) where kept, else 0.
/// p ≤ 0 copies inp; p ≥ 1 drops everything.
pub fn dropout_fwd(out: &mut [f32], inp: &[f32], p: f32, key: DropoutKey) {
    if p <= 0.0 {
        let len = out.len().min(inp.len());
        out[..len].copy_from_slice(&inp[..len]);
        return;
    }
    dropout_apply(out, inp, p, key, false);
}
pub fn dropout_bwd(dinp: &mut [f32], dout: &[f32], p: f32, key: DropoutKey) {
    if p <= 0.0 {
        for (d, &g) in dinp.iter_mut().zip(dout) {
            *d += g;
        }
        return;
    }
    dropout_apply(dinp, dout, p, key, true);
}

/// 1 / 10000^(2j/d) for column c ∈ {2j, 2j + 1}.
fn inv_freq(c: usize, d: usize) -> f64 {
    1.0 / 10000f64.powf((c - c % 2) as f64 / d as f64)
}

/// PE(i, c) of SPEC §3: sin(i / 10000^(2j/d)) for c = 2j, cos(...) for c = 2j + 1 (computed in f64).
pub fn pos_enc(i: usize, c: usize, d: usize) -> f32 {
    let angle = i as f64 * inv_freq(c, d);
    if c.is_multiple_of(2) {
        angle.sin() as f32
    } else {
        angle.cos() as f32
    }
}

/// h[i, :] += PE(i, :) for the sinusoidal encoding of SPEC §3.
pub fn pos_enc_add(h: &mut [f32], n: usize, d: usize) {
    if n == 0 || d == 0 {
        return;
    }
    // 1 / 10000^(2j/d) per column, shared by every row
    let freqs: Vec<f64> = (0..d).map(|c| inv_freq(c, d)).collect();
    let freqs = &freqs;
    let chunk = par::chunk_rows(n, 20 * d);
    par::run(h[..n * d].chunks_mut(chunk * d).enumerate(), |(ci, hc)| {
        let r0 = ci * chunk;
        for (ii, row) in hc.chunks_mut(d).enumerate() {
            let i = (r0 + ii) as f64;
            for (c, v) in row.iter_mut().enumerate() {
                let angle = i * freqs[c];
                *v += if c.is_multiple_of(2) {
                    angle.sin()
                } else {
                    angle.cos()
                } as f32;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    fn gelu64(x: f64) -> f64 {
        let v = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
        // = 0.5·x·(1 + tanh v), written so that f64 itself does not cancel for x ≪ 0
        x / (1.0 + (-2.0 * v).exp())
    }

    /// GELU and its derivative through σ(2v) against the tanh form in f64, over [−12, 12]
    /// (the far negative side is where 1 + tanh cancels).
    #[test]
    fn gelu_and_grad_match_the_tanh_form() {
        for i in -240_000..=240_000 {
            let x = i as f32 * 5e-5;
            let xd = x as f64;
            let want = gelu64(xd);
            let got = super::gelu(x) as f64;
            // f32 rounding of v alone moves σ(2v) by ~|2v|·6e-8 relative in the far tail
            let v = (2.0 / std::f64::consts::PI).sqrt() * (xd + 0.044715 * xd * xd * xd);
            let cond = 1.0 + 2.0 * v.abs();
            assert!(
                (got - want).abs() <= 4e-7 * cond * want.abs() + 1e-37,
                "gelu({x}) = {got}, want {want}"
            );
            let h = 1e-6 * xd.abs().max(1.0);
            let dwant = (gelu64(xd + h) - gelu64(xd - h)) / (2.0 * h);
            let dgot = super::gelu_grad(x) as f64;
            assert!(
                (dgot - dwant).abs() <= 1e-6 * cond * dwant.abs().max(0.1),
                "gelu'({x}) = {dgot}, want {dwant}"
            );
        }
        assert!(super::gelu(f32::NAN).is_nan());
    }
}
