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

/// Shape rule of the softmax attention forward: out, q, k, v [n,d], mask [n], lse [h·n]. Returns
/// dh, or None when n = 0 or d = 0 (nothing to do).
#[allow(clippy::too_many_arguments)]
pub fn check_softmax_fwd(
    out: usize,
    lse: usize,
    q: usize,
    k: usize,
    v: usize,
    mask: usize,
    n: usize,
    d: usize,
    h: usize,
) -> Result<Option<usize>> {
    let op = "softmax_attention_fwd";
    if n == 0 || d == 0 {
        return Ok(None);
    }
    let dh = head_dim(op, d, h)?;
    expect_all(op, &[("out", out), ("q", q), ("k", k), ("v", v)], n * d)?;
    expect_len(op, "mask", mask, n)?;
    expect_len(op, "lse", lse, h * n)?;
    Ok(Some(dh))
}

/// Shape rule of the softmax attention backward (`bufs`: dq, dk, dv, dout, out, q, k, v).
pub fn check_softmax_bwd(
    bufs: [usize; 8],
    lse: usize,
    mask: usize,
    n: usize,
    d: usize,
    h: usize,
) -> Result<Option<usize>> {
    let op = "softmax_attention_bwd";
    if n == 0 || d == 0 {
        return Ok(None);
    }
    let dh = head_dim(op, d, h)?;
    let names = ["dq", "dk", "dv", "dout", "out", "q", "k", "v"];
    for (name, len) in names.iter().zip(bufs) {
        expect_len(op, name, len, n * d)?;
    }
    expect_len(op, "mask", mask, n)?;
    expect_len(op, "lse", lse, h * n)?;
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
        let out = self.new_tensor(dev, n * d)?;
        let lse = self.new_tensor(dev, h * n)?;
        let (mut o, mut l) = (self.take(out)?, self.take(lse)?);
        let r = dev.softmax_attention_fwd(
            &mut o,
            &mut l,
            self.buf(q)?,
            self.buf(k)?,
            self.buf(v)?,
            self.buf(mask)?,
            n,
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
            n,
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
                    n,
                    d,
                    h,
                )?;
                tape.put_grad(q, dq);
                tape.put_grad(k, dk);
                tape.put_grad(v, dv);
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
