//! Elementwise ops: GELU (tanh form), ELU+1 (φ of linear attention), residual add, inverted dropout
//! with a Philox4x32-10 mask, sinusoidal positional encoding; the table of plain unary maps
//! (sigmoid, …) is [`unary`].
//!
//! Derivatives: GELU' = ½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3·0.044715x²), t = tanh(√(2/π)(x + 0.044715x³));
//! (elu + 1)' = 1 for x > 0, eˣ otherwise. Dropout's backward reuses the forward's mask (same key).

use super::par;
use super::shape::expect_len;
use crate::device::Backend;
use crate::tape::base::{Node, Tape, T};
use crate::{Error, Result};
use unary::{acc2, elem_chunk, map1, map2};

#[cfg(target_arch = "x86_64")]
pub mod dropout_avx2;
#[cfg(target_arch = "x86_64")]
pub mod dropout_avx512;
pub(crate) mod gpu;
pub mod unary;
pub use super::scalar::{elu1, elu1_grad, exp_f32};
use crate::ops::gemm::Simd;
/// Moved to [`crate::rng`]; re-exported so existing paths keep working.
pub use crate::rng::DropoutKey;
use crate::rng::{dropout_counter, philox4x32_10, philox4x32_10_lanes, unit_f32, PHILOX_LANES};
pub use unary::{unary_bwd, unary_fwd, Unary};

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_C: f32 = 0.044_715;

#[inline]
fn gelu(x: f32) -> f32 {
    // 0.5·(1 + tanh v) = σ(2v): no cancellation where tanh v ≈ −1, and exp_f32 vectorises.
    let (s, _) = gelu_sigmoid(x);
    x * s
}

/// (σ(2v), 1 − σ(2v)) with v = √(2/π)(x + 0.044715x³), both without cancellation.
#[inline(always)]
fn gelu_sigmoid(x: f32) -> (f32, f32) {
    let v = SQRT_2_OVER_PI * (GELU_C * x * x).mul_add(x, x);
    let e = exp_f32(-2.0 * v);
    let s = 1.0 / (1.0 + e);
    (s, e * s)
}

#[inline]
fn gelu_grad(x: f32) -> f32 {
    // d/dx x·σ(2v) = σ + 2x·σ(1 − σ)·v′ (= 0.5(1 + t) + 0.5x(1 − t²)v′ with t = tanh v)
    let (s, one_minus_s) = gelu_sigmoid(x);
    (2.0 * x * s * one_minus_s * SQRT_2_OVER_PI).mul_add((3.0 * GELU_C * x).mul_add(x, 1.0), s)
}

pub fn gelu_fwd(out: &mut [f32], inp: &[f32]) {
    map1(out, inp, 20, gelu);
}
pub fn gelu_bwd(dinp: &mut [f32], dout: &[f32], inp: &[f32]) {
    acc2(dinp, dout, inp, 30, |g, x| g * gelu_grad(x));
}
/// [`gelu_bwd`] into a fresh gradient (`Backend::gelu_bwd_fresh`): dinp = dout · GELU'(inp).
pub fn gelu_bwd_fresh(dinp: &mut [f32], dout: &[f32], inp: &[f32]) {
    map2(dinp, dout, inp, 30, |g, x| g * gelu_grad(x));
}
pub fn elu1_fwd(out: &mut [f32], inp: &[f32]) {
    map1(out, inp, 10, elu1);
}
pub fn elu1_bwd(dinp: &mut [f32], dout: &[f32], inp: &[f32]) {
    acc2(dinp, dout, inp, 10, |g, x| g * elu1_grad(x));
}
pub fn add_fwd(out: &mut [f32], a: &[f32], b: &[f32]) {
    map2(out, a, b, 1, |x, y| x + y);
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
    dropout_apply_on(Simd::detect(), out, src, p, key, accumulate);
}

/// [`dropout_fwd`] (`accumulate` false) or [`dropout_bwd`]'s masked add (true) on the given SIMD
/// path (a path this CPU lacks runs the portable loops); every path draws the same mask.
pub fn dropout_apply_on(
    simd: Simd,
    out: &mut [f32],
    src: &[f32],
    p: f32,
    key: DropoutKey,
    accumulate: bool,
) {
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
            #[cfg(target_arch = "x86_64")]
            let (o, s, e0) = {
                let done = match simd {
                    _ if !simd.available() => 0,
                    // SAFETY: AVX-512F is available (checked by the guard above).
                    Simd::Avx512 => unsafe {
                        dropout_avx512::dropout_rows(o, s, e0, p, scale, key, accumulate)
                    },
                    // SAFETY: AVX2 is available (checked by the guard above).
                    Simd::Avx2 => unsafe {
                        dropout_avx2::dropout_rows(o, s, e0, p, scale, key, accumulate)
                    },
                    Simd::Portable => 0,
                };
                (&mut o[done..], &s[done..], e0 + done as u64)
            };
            // whole groups of 16 counters (64 elements) through the vectorised Philox
            let wide = 4 * PHILOX_LANES;
            let full = o.len() / wide * wide;
            simd.run(
                #[inline(always)]
                || {
                    for (b, (ob, sb)) in o[..full]
                        .chunks_exact_mut(wide)
                        .zip(s[..full].chunks_exact(wide))
                        .enumerate()
                    {
                        let g0 = (e0 + (b * wide) as u64) / 4;
                        let (ctr, k) = dropout_counter(key, 4 * g0);
                        let mut c0 = [0u32; PHILOX_LANES];
                        let mut c1 = [0u32; PHILOX_LANES];
                        for l in 0..PHILOX_LANES {
                            let g = g0 + l as u64;
                            c0[l] = g as u32;
                            c1[l] = (g >> 32) as u32;
                        }
                        let r = philox4x32_10_lanes(c0, c1, ctr[2], ctr[3], k);
                        // back to element order (element 4l + w is word w of counter l), so the
                        // select below runs over contiguous elements
                        let mut bits = [0u32; 4 * PHILOX_LANES];
                        for (l, b4) in bits.chunks_exact_mut(4).enumerate() {
                            for (w, b) in b4.iter_mut().enumerate() {
                                *b = r[w][l];
                            }
                        }
                        for ((ov, &sv), &rb) in ob.iter_mut().zip(sb).zip(&bits) {
                            let kept = unit_f32(rb) >= p;
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
            let e0 = e0 + full as u64;
            let (o, s) = (&mut o[full..], &s[full..]);
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
/// [`dropout_bwd`] into a fresh gradient (`Backend::dropout_bwd_fresh`): dinp = the forward's mask
/// applied to dout, which is the forward itself.
pub fn dropout_bwd_fresh(dinp: &mut [f32], dout: &[f32], p: f32, key: DropoutKey) {
    dropout_fwd(dinp, dout, p, key);
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

// ---- shapes, tape records and backward ------------------------------------------------------

/// The shape rule of every elementwise op on every device: each input as long as the output.
pub fn check_same(op: &str, out: usize, inputs: &[(&str, usize)]) -> Result<()> {
    for &(name, len) in inputs {
        expect_len(op, name, len, out)?;
    }
    Ok(())
}

/// The shape rule of the positional encoding: h [n,d].
pub fn check_pos_enc(h: usize, n: usize, d: usize) -> Result<()> {
    expect_len("pos_enc_add", "h", h, n * d)
}

impl<B: Backend> Tape<B> {
    pub fn gelu(&mut self, dev: &B, inp: T) -> Result<T> {
        let out = self.new_tensor(dev, self.len_of(inp))?;
        let mut o = self.take(out)?;
        let r = dev.gelu_fwd(&mut o, self.buf(inp)?);
        self.put(out, o);
        r?;
        self.record(Node::Gelu { out, inp });
        Ok(out)
    }

    /// y = f(x) for a map of the [`Unary`] table.
    pub fn unary(&mut self, dev: &B, op: Unary, inp: T) -> Result<T> {
        let out = self.new_tensor(dev, self.len_of(inp))?;
        let mut o = self.take(out)?;
        let r = dev.unary_fwd(op, &mut o, self.buf(inp)?);
        self.put(out, o);
        r?;
        self.record(Node::Unary { op, out, inp });
        Ok(out)
    }

    pub fn add(&mut self, dev: &B, a: T, b: T) -> Result<T> {
        if self.len_of(a) != self.len_of(b) {
            return Err(Error::shape(format!(
                "add of {} and {} elements",
                self.len_of(a),
                self.len_of(b)
            )));
        }
        let out = self.new_tensor(dev, self.len_of(a))?;
        let mut o = self.take(out)?;
        let r = dev.add_fwd(&mut o, self.buf(a)?, self.buf(b)?);
        self.put(out, o);
        r?;
        self.record(Node::Add { out, a, b });
        Ok(out)
    }

    /// Inverted dropout; p = 0 records nothing and returns `inp`.
    pub fn dropout(&mut self, dev: &B, inp: T, p: f32, key: DropoutKey) -> Result<T> {
        if p <= 0.0 {
            return Ok(inp);
        }
        let out = self.new_tensor(dev, self.len_of(inp))?;
        let mut o = self.take(out)?;
        let r = dev.dropout_fwd(&mut o, self.buf(inp)?, p, key);
        self.put(out, o);
        r?;
        self.record(Node::Dropout { out, inp, p, key });
        Ok(out)
    }

    /// Adds the sinusoidal positional encoding in place (its gradient is the identity).
    pub fn pos_enc_add(&mut self, dev: &B, h: T, n: usize, d: usize) -> Result<()> {
        let buf = self.buf_mut(h)?;
        dev.pos_enc_add(buf, n, d)
    }
}

/// Backward of the elementwise nodes ([`Node::Gelu`], [`Node::Unary`], [`Node::Add`],
/// [`Node::Dropout`]).
pub(crate) fn backward<B: Backend>(tape: &mut Tape<B>, dev: &B, node: &Node) -> Result<()> {
    match *node {
        Node::Gelu { out, inp } => {
            if let Some(dout) = tape.take_grad_if_any(out) {
                let (mut dinp, fresh) = tape.take_grad_fresh(dev, inp)?;
                if fresh {
                    dev.gelu_bwd_fresh(&mut dinp, &dout, tape.buf(inp)?)?;
                } else {
                    dev.gelu_bwd(&mut dinp, &dout, tape.buf(inp)?)?;
                }
                tape.put_grad(inp, dinp);
                dev.recycle(dout);
            }
            tape.free(dev, out);
        }
        Node::Unary { op, out, inp } => {
            if let Some(dout) = tape.take_grad_if_any(out) {
                let mut dinp = tape.take_grad(dev, inp)?;
                dev.unary_bwd(op, &mut dinp, &dout, tape.buf(inp)?)?;
                tape.put_grad(inp, dinp);
                dev.recycle(dout);
            }
            tape.free(dev, out);
        }
        Node::Add { out, a, b } => {
            if let Some(dout) = tape.take_grad_if_any(out) {
                // an input with no gradient yet takes a copy of dout (the last one dout itself)
                // instead of zeros plus dout: the same values, without a memset and a pass
                let targets: Vec<T> = [a, b]
                    .into_iter()
                    .filter(|&x| tape.requires_grad(x))
                    .collect();
                let mut dout = Some(dout);
                for (i, &x) in targets.iter().enumerate() {
                    let Some(d) = dout.as_ref() else { break };
                    match tape.take_grad_if_any(x) {
                        Some(mut dx) => {
                            dev.accumulate(&mut dx, d)?;
                            tape.put_grad(x, dx);
                        }
                        None if i + 1 == targets.len() => {
                            if let Some(d) = dout.take() {
                                tape.put_grad(x, d);
                            }
                        }
                        None => {
                            let mut dx = dev.unset(dev.len(d))?;
                            dev.copy(&mut dx, d)?;
                            tape.put_grad(x, dx);
                        }
                    }
                }
                if let Some(d) = dout {
                    dev.recycle(d);
                }
            }
            tape.free(dev, out);
        }
        Node::Dropout {
            out,
            inp,
            p: prob,
            key,
        } => {
            if let Some(dout) = tape.take_grad_if_any(out) {
                let (mut dinp, fresh) = tape.take_grad_fresh(dev, inp)?;
                if fresh {
                    dev.dropout_bwd_fresh(&mut dinp, &dout, prob, key)?;
                } else {
                    dev.dropout_bwd(&mut dinp, &dout, prob, key)?;
                }
                tape.put_grad(inp, dinp);
                dev.recycle(dout);
            }
            tape.free(dev, out);
        }
        _ => {
            return Err(Error::device(
                "elementwise::backward on another node".to_string(),
            ))
        }
    }
    Ok(())
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
