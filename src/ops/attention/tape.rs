//! Shape rules, tape records and backward of the two attentions (kept apart from the CPU loops of
//! `mod.rs` only to keep each file short).

use crate::device::Backend;
use crate::ops::shape::{expect_all, expect_len, head_dim};
use crate::tape::base::{Node, Tape, T};
use crate::{Error, Result};

/// Shape rule of the linear attention forward: out, q, k, v [n,d], mask [n], s [h·dh²], z [h·dh].
/// Returns dh, or None when d = 0 (nothing to do).
#[allow(clippy::too_many_arguments)]
pub fn check_linear_fwd(
    out: usize,
    s: usize,
    z: usize,
    q: usize,
    k: usize,
    v: usize,
    mask: usize,
    n: usize,
    d: usize,
    h: usize,
) -> Result<Option<usize>> {
    let op = "linear_attention_fwd";
    if d == 0 {
        return Ok(None);
    }
    let dh = head_dim(op, d, h)?;
    expect_all(op, &[("out", out), ("q", q), ("k", k), ("v", v)], n * d)?;
    expect_len(op, "mask", mask, n)?;
    expect_len(op, "s", s, h * dh * dh)?;
    expect_len(op, "z", z, h * dh)?;
    Ok(Some(dh))
}

/// Shape rule of the linear attention backward (`bufs`: dq, dk, dv, dout, q, k, v).
pub fn check_linear_bwd(
    bufs: [usize; 7],
    mask: usize,
    s: usize,
    z: usize,
    n: usize,
    d: usize,
    h: usize,
) -> Result<Option<usize>> {
    let op = "linear_attention_bwd";
    if d == 0 {
        return Ok(None);
    }
    let dh = head_dim(op, d, h)?;
    let names = ["dq", "dk", "dv", "dout", "q", "k", "v"];
    for (name, len) in names.iter().zip(bufs) {
        expect_len(op, name, len, n * d)?;
    }
    expect_len(op, "mask", mask, n)?;
    expect_len(op, "s", s, h * dh * dh)?;
    expect_len(op, "z", z, h * dh)?;
    Ok(Some(dh))
}

/// Shape rule of the softmax (cross-)attention forward: out, q [nq,d], k, v [nk,d], mask [nk],
/// lse [h·nq]. Returns dh, or None when nq = 0 or d = 0 (nothing to do).
#[allow(clippy::too_many_arguments)]
pub fn check_softmax_fwd(
    out: usize,
    lse: usize,
    q: usize,
    k: usize,
    v: usize,
    mask: usize,
    nq: usize,
    nk: usize,
    d: usize,
    h: usize,
) -> Result<Option<usize>> {
    let op = "softmax_attention_fwd";
    if nq == 0 || d == 0 {
        expect_all(op, &[("k", k), ("v", v)], nk * d)?;
        expect_len(op, "mask", mask, nk)?;
        return Ok(None);
    }
    let dh = head_dim(op, d, h)?;
    expect_all(op, &[("out", out), ("q", q)], nq * d)?;
    expect_all(op, &[("k", k), ("v", v)], nk * d)?;
    expect_len(op, "mask", mask, nk)?;
    expect_len(op, "lse", lse, h * nq)?;
    Ok(Some(dh))
}

/// Shape rule of the softmax (cross-)attention backward (`bufs`: dq, dk, dv, dout, out, q, k, v;
/// the query side [nq, d], the key side [nk, d]).
pub fn check_softmax_bwd(
    bufs: [usize; 8],
    lse: usize,
    mask: usize,
    nq: usize,
    nk: usize,
    d: usize,
    h: usize,
) -> Result<Option<usize>> {
    let op = "softmax_attention_bwd";
    if nq == 0 || nk == 0 || d == 0 {
        return Ok(None);
    }
    let dh = head_dim(op, d, h)?;
    let names = ["dq", "dk", "dv", "dout", "out", "q", "k", "v"];
    let rows = [nq, nk, nk, nq, nq, nq, nk, nk];
    for ((name, len), r) in names.iter().zip(bufs).zip(rows) {
        expect_len(op, name, len, r * d)?;
    }
    expect_len(op, "mask", mask, nk)?;
    expect_len(op, "lse", lse, h * nq)?;
    Ok(Some(dh))
}

impl<B: Backend> Tape<B> {
    #[allow(clippy::too_many_arguments)]
    pub fn linear_attention(
        &mut self,
        dev: &B,
        q: T,
        k: T,
        v: T,
        mask: T,
        n: usize,
        d: usize,
        h: usize,
    ) -> Result<T> {
        let dh = d / h;
        let out = self.new_tensor(dev, n * d)?;
        let s = self.new_tensor(dev, h * dh * dh)?;
        let z = self.new_tensor(dev, h * dh)?;
        let (mut o, mut sb, mut zb) = (self.take(out)?, self.take(s)?, self.take(z)?);
        let r = dev.linear_attention_fwd(
            &mut o,
            &mut sb,
            &mut zb,
            self.buf(q)?,
            self.buf(k)?,
            self.buf(v)?,
            self.buf(mask)?,
            n,
            d,
            h,
        );
        self.put(out, o);
        self.put(s, sb);
        self.put(z, zb);
        r?;
        self.record(Node::LinearAttention {
            out,
            s,
            z,
            q,
            k,
            v,
            mask,
            n,
            d,
            h,
        });
        Ok(out)
    }

    /// Softmax self-attention over n rows, the row mask as the key mask (every row is a query).
    #[allow(clippy::too_many_arguments)]
    pub fn softmax_attention(
        &mut self,
        dev: &B,
        q: T,
        k: T,
        v: T,
        mask: T,
        n: usize,
        d: usize,
        h: usize,
    ) -> Result<T> {
        self.cross_attention(dev, q, k, v, mask, n, n, d, h)
    }

    /// Softmax cross-attention: queries q [nq, d] over keys k and values v [nk, d], key j taking
    /// part iff mask[j] ≠ 0 (mask [nk]); out [nq, d]. A query with no valid key outputs 0.
    #[allow(clippy::too_many_arguments)]
    pub fn cross_attention(
        &mut self,
        dev: &B,
        q: T,
        k: T,
        v: T,
        mask: T,
        nq: usize,
        nk: usize,
        d: usize,
        h: usize,
    ) -> Result<T> {
        let out = self.new_tensor(dev, nq * d)?;
        let lse = self.new_tensor(dev, h * nq)?;
        let (mut o, mut l) = (self.take(out)?, self.take(lse)?);
        let r = dev.softmax_attention_fwd(
            &mut o,
            &mut l,
            self.buf(q)?,
            self.buf(k)?,
            self.buf(v)?,
            self.buf(mask)?,
            nq,
            nk,
            d,
            h,
        );
        self.put(out, o);
        self.put(lse, l);
        r?;
        self.record(Node::SoftmaxAttention {
            out,
            lse,
            q,
            k,
            v,
            mask,
            nq,
            nk,
            d,
            h,
        });
        Ok(out)
    }
}

/// Backward of [`Node::LinearAttention`] and [`Node::SoftmaxAttention`].
pub(crate) fn backward<B: Backend>(tape: &mut Tape<B>, dev: &B, node: &Node) -> Result<()> {
    match *node {
        Node::LinearAttention {
            out,
            s,
            z,
            q,
            k,
            v,
            mask,
            n,
            d,
            h,
        } => {
            if let Some(dout) = tape.take_grad_if_any(out) {
                let (mut dq, mut dk, mut dv) = (
                    tape.take_grad(dev, q)?,
                    tape.take_grad(dev, k)?,
                    tape.take_grad(dev, v)?,
                );
                dev.linear_attention_bwd(
                    &mut dq,
                    &mut dk,
                    &mut dv,
                    &dout,
                    tape.buf(q)?,
                    tape.buf(k)?,
                    tape.buf(v)?,
                    tape.buf(mask)?,
                    tape.buf(s)?,
                    tape.buf(z)?,
                    n,
                    d,
                    h,
                )?;
                tape.put_grad(q, dq);
                tape.put_grad(k, dk);
                tape.put_grad(v, dv);
                dev.recycle(dout);
            }
            tape.free(dev, out);
            tape.free(dev, s);
            tape.free(dev, z);
        }
        Node::SoftmaxAttention {
            out,
            lse,
            q,
            k,
            v,
            mask,
            nq,
            nk,
            d,
            h,
        } => {
            if let Some(dout) = tape.take_grad_if_any(out) {
                let (mut dq, mut dk, mut dv) = (
                    tape.take_grad(dev, q)?,
                    tape.take_grad(dev, k)?,
                    tape.take_grad(dev, v)?,
                );
                dev.softmax_attention_bwd(
                    &mut dq,
                    &mut dk,
                    &mut dv,
                    &dout,
                    tape.buf(out)?,
                    tape.buf(lse)?,
                    tape.buf(q)?,
                    tape.buf(k)?,
                    tape.buf(v)?,
                    tape.buf(mask)?,
                    nq,
                    nk,
                    d,
                    h,
                )?;
                tape.put_grad(q, dq);
                tape.put_grad(k, dk);
                tape.put_grad(v, dv);
                dev.recycle(dout);
            }
            tape.free(dev, out);
            tape.free(dev, lse);
        }
        _ => {
            return Err(Error::device(
                "attention::backward on another node".to_string(),
            ))
        }
    }
    Ok(())
}
