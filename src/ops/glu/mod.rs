//! Gated linear unit (TFT's GLU, docs/model.md), elementwise over two [n, m] tensors:
//!   out = σ(a) ⊙ b,  σ(x) = 1 / (1 + e⁻ˣ)
//! (a = W4 γ + b4, the gate; b = W5 γ + b5, the value.) Nothing is saved beyond the inputs.
//! Backward (ACCUMULATES): da += dout ⊙ b ⊙ σ'(a) with σ'(a) = e⁻ᵃ σ(a)² (no cancellation, as
//! `Unary::Sigmoid`); db += dout ⊙ σ(a). e⁻ᵃ goes through `exp_f32` (clamped at e^88.7).

use super::gemm::Simd;
use super::par;
use super::scalar::exp_f32;
use super::shape::expect_len;
use crate::device::Backend;
use crate::tape::base::{Node, Tape, T};
use crate::{Error, Result};

pub(crate) mod gpu;

/// (σ(a), e⁻ᵃ) for one element.
#[inline(always)]
fn sig(a: f32) -> (f32, f32) {
    let e = exp_f32(-a);
    (1.0 / (1.0 + e), e)
}

/// Elements per parallel chunk (a multiple of 4).
fn chunk(len: usize) -> usize {
    par::chunk_rows_aligned(len, 16, 4)
}

/// out = σ(a) ⊙ b.
pub fn glu_fwd(out: &mut [f32], a: &[f32], b: &[f32]) {
    let len = out.len().min(a.len()).min(b.len());
    if len == 0 {
        return;
    }
    let (c, simd) = (chunk(len), Simd::detect());
    par::run(
        out[..len]
            .chunks_mut(c)
            .zip(a[..len].chunks(c))
            .zip(b[..len].chunks(c)),
        |((o, a), b)| {
            simd.run(
                #[inline(always)]
                || {
                    for ((ov, &av), &bv) in o.iter_mut().zip(a).zip(b) {
                        *ov = sig(av).0 * bv;
                    }
                },
            )
        },
    );
}

/// da += dout ⊙ b ⊙ e⁻ᵃσ(a)², db += dout ⊙ σ(a).
pub fn glu_bwd(da: &mut [f32], db: &mut [f32], dout: &[f32], a: &[f32], b: &[f32]) {
    let len = da
        .len()
        .min(db.len())
        .min(dout.len())
        .min(a.len())
        .min(b.len());
    if len == 0 {
        return;
    }
    let (c, simd) = (chunk(len), Simd::detect());
    par::run(
        da[..len]
            .chunks_mut(c)
            .zip(db[..len].chunks_mut(c))
            .zip(dout[..len].chunks(c))
            .zip(a[..len].chunks(c).zip(b[..len].chunks(c))),
        |(((da, db), g), (a, b))| {
            simd.run(
                #[inline(always)]
                || {
                    for i in 0..da.len() {
                        let (s, e) = sig(a[i]);
                        da[i] += g[i] * b[i] * (e * s * s);
                        db[i] += g[i] * s;
                    }
                },
            )
        },
    );
}

/// Shape rule on every device: out, a, b [n·m] (dout too in the backward).
pub fn check(out: usize, a: usize, b: usize, n: usize, m: usize) -> Result<()> {
    let len = n
        .checked_mul(m)
        .ok_or_else(|| Error::shape(format!("glu: n·m = {n}·{m} overflows")))?;
    expect_len("glu", "out", out, len)?;
    expect_len("glu", "a", a, len)?;
    expect_len("glu", "b", b, len)
}

impl<B: Backend> Tape<B> {
    /// GLU: σ(a) ⊙ b over two [n, m] tape tensors.
    pub fn glu(&mut self, dev: &B, a: T, b: T, n: usize, m: usize) -> Result<T> {
        check(n * m, self.len_of(a), self.len_of(b), n, m)?;
        let out = self.new_tensor(dev, n * m)?;
        let mut o = self.take(out)?;
        let r = dev.glu_fwd(&mut o, self.buf(a)?, self.buf(b)?, n, m);
        self.put(out, o);
        r?;
        self.record(Node::Glu { out, a, b, n, m });
        Ok(out)
    }
}

/// Backward of [`Node::Glu`].
pub(crate) fn backward<B: Backend>(tape: &mut Tape<B>, dev: &B, node: &Node) -> Result<()> {
    let Node::Glu { out, a, b, n, m } = *node else {
        return Err(Error::device("glu::backward on another node".to_string()));
    };
    if let Some(dout) = tape.take_grad_if_any(out) {
        let mut da = tape.take_grad(dev, a)?;
        let mut db = tape.take_grad(dev, b)?;
        let r = dev.glu_bwd(&mut da, &mut db, &dout, tape.buf(a)?, tape.buf(b)?, n, m);
        tape.put_grad(a, da);
        tape.put_grad(b, db);
        dev.recycle(dout);
        r?;
    }
    tape.free(dev, out);
    Ok(())
}
