//! Column scale of a weight by the feature gate, and the gated linear map built on it
//! (docs/model.md, "Feature gate"). The mapper's first layer is h = x̃ W₀ᵀ + b₀ with x̃ = x ⊙ s,
//! s = g ⊙ keep; it is computed as h = x (W₀ ⊙ s)ᵀ + b₀, the same sum in another order, so that
//! neither x̃ [n, F] nor its gradient is ever formed: the backward needs dW' = dhᵀ x only, and
//!   dW₀ += dW' ⊙ s,   dg_c += keep_c · Σ_r dW'_rc W₀_rc
//! (= keep_c · Σ_i dx̃_ic x_ic, the gate's own formula). Saves an n × F × d GEMM and two n × F
//! passes per step.
//!
//! w, out, dw, dout: [m, k] (nn.Linear layout: m outputs, k features); g, keep, dg: [k].
//!   col_scale_fwd: out_rc = w_rc · (g_c keep_c)
//!   col_scale_bwd (ACCUMULATES): dw_rc += dout_rc · (g_c keep_c); dg_c += keep_c Σ_r dout_rc w_rc,
//!     the sum over rows in f64 in row order.

use super::shape::expect_len;
use crate::device::Backend;
use crate::params::{ParamId, Params};
use crate::tape::base::{two_mut, Node, Tape, T};
use crate::{Error, Result};

pub(crate) mod gpu;

/// Shape rule on every device: w, out [m·k]; g, keep [k].
pub fn check(
    op: &str,
    out: usize,
    w: usize,
    g: usize,
    keep: usize,
    m: usize,
    k: usize,
) -> Result<()> {
    let len = m
        .checked_mul(k)
        .ok_or_else(|| Error::shape(format!("{op}: m·k = {m}·{k} overflows")))?;
    expect_len(op, "out", out, len)?;
    expect_len(op, "w", w, len)?;
    expect_len(op, "g", g, k)?;
    expect_len(op, "keep", keep, k)
}

pub fn col_scale_fwd(out: &mut [f32], w: &[f32], g: &[f32], keep: &[f32], m: usize, k: usize) {
    for r in 0..m {
        let (o, wr) = (&mut out[r * k..(r + 1) * k], &w[r * k..(r + 1) * k]);
        for (((ov, &wv), &gv), &kv) in o.iter_mut().zip(wr).zip(g).zip(keep) {
            *ov = wv * (gv * kv);
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn col_scale_bwd(
    dw: &mut [f32],
    dg: &mut [f32],
    dout: &[f32],
    w: &[f32],
    g: &[f32],
    keep: &[f32],
    m: usize,
    k: usize,
) {
    let mut acc = vec![0f64; k];
    for r in 0..m {
        let row = r * k..(r + 1) * k;
        let (d, dr, wr) = (&mut dw[row.clone()], &dout[row.clone()], &w[row]);
        for c in 0..k {
            d[c] += dr[c] * (g[c] * keep[c]);
            acc[c] += dr[c] as f64 * wr[c] as f64;
        }
    }
    for c in 0..k {
        dg[c] = (dg[c] as f64 + keep[c] as f64 * acc[c]) as f32;
    }
}

/// Shape rule of the backward on every device: dw, dout, w [m·k]; dg, g, keep [k].
#[allow(clippy::too_many_arguments)]
pub fn check_bwd(
    dw: usize,
    dg: usize,
    dout: usize,
    w: usize,
    g: usize,
    keep: usize,
    m: usize,
    k: usize,
) -> Result<()> {
    check("col_scale_bwd", dw, w, g, keep, m, k)?;
    expect_len("col_scale_bwd", "dout", dout, m * k)?;
    expect_len("col_scale_bwd", "dg", dg, k)
}

/// [`col_scale_fwd`] after the shape rule (the CPU backend's op).
pub fn fwd_checked(
    out: &mut [f32],
    w: &[f32],
    g: &[f32],
    keep: &[f32],
    m: usize,
    k: usize,
) -> Result<()> {
    check(
        "col_scale_fwd",
        out.len(),
        w.len(),
        g.len(),
        keep.len(),
        m,
        k,
    )?;
    col_scale_fwd(out, w, g, keep, m, k);
    Ok(())
}

/// [`col_scale_bwd`] after the shape rule (the CPU backend's op).
#[allow(clippy::too_many_arguments)]
pub fn bwd_checked(
    dw: &mut [f32],
    dg: &mut [f32],
    dout: &[f32],
    w: &[f32],
    g: &[f32],
    keep: &[f32],
    m: usize,
    k: usize,
) -> Result<()> {
    let (gl, kl) = (g.len(), keep.len());
    check_bwd(dw.len(), dg.len(), dout.len(), w.len(), gl, kl, m, k)?;
    col_scale_bwd(dw, dg, dout, w, g, keep, m, k);
    Ok(())
}

impl<B: Backend> Tape<B> {
    /// out = x (W ⊙ s)ᵀ + b with s = g ⊙ keep (g, keep: the gate's outputs [k]): the mapper's
    /// first layer on the gated input without forming x ⊙ s. x [n, k], W [m, k], b [m]. `codes`:
    /// x as its era codes packed four to a word ([`crate::model::EraInputs::codes`]), which the
    /// weight gradient reads in place of x where given (the same bits from a quarter of the
    /// bytes; the forward reads x, in place).
    #[allow(clippy::too_many_arguments)]
    pub fn gated_linear(
        &mut self,
        dev: &B,
        p: &Params<B>,
        (x, codes): (T, Option<T>),
        (g, keep): (T, T),
        (w, b): (ParamId, ParamId),
        n: usize,
        k: usize,
        m: usize,
    ) -> Result<T> {
        let ws = self.new_tensor(dev, m * k)?;
        let mut wsb = self.take(ws)?;
        let r = dev.col_scale_fwd(
            &mut wsb,
            &p.values[w.0],
            self.buf(g)?,
            self.buf(keep)?,
            m,
            k,
        );
        self.put(ws, wsb);
        r?;
        let out = self.new_tensor(dev, n * m)?;
        let mut o = self.take(out)?;
        let (xb, wsb, bias) = (self.buf(x)?, self.buf(ws)?, Some(&p.values[b.0]));
        let r = dev.linear_fwd(&mut o, xb, wsb, bias, n, k, m);
        self.put(out, o);
        r?;
        self.record(Node::GatedLinear {
            out,
            x,
            codes,
            ws,
            g,
            keep,
            w,
            b,
            n,
            k,
            m,
        });
        Ok(out)
    }
}

/// Backward of [`Node::GatedLinear`].
pub(crate) fn backward<B: Backend>(
    tape: &mut Tape<B>,
    dev: &B,
    p: &mut Params<B>,
    node: &Node,
) -> Result<()> {
    let Node::GatedLinear {
        out,
        x,
        codes,
        ws,
        g,
        keep,
        w,
        b,
        n,
        k,
        m,
    } = *node
    else {
        return Err(Error::device(
            "col_scale::backward on another node".to_string(),
        ));
    };
    if let Some(dout) = tape.take_grad_if_any(out) {
        let mut dx = if tape.requires_grad(x) {
            Some(tape.take_grad(dev, x)?)
        } else {
            None
        };
        // dW' = doutᵀ x (and db, dx through W ⊙ s) by the linear op's backward, into scratch
        let mut dws = dev.zeros(m * k)?;
        let (pw, pg) = (&p.values, &mut p.grads);
        let (dw, db) = two_mut(pg, w.0, b.0)?;
        let wsb = tape.buf(ws)?;
        let r = match (codes, dx.as_mut()) {
            (Some(c), None) => {
                let cb = tape.buf(c)?;
                dev.linear_bwd_codes(&mut dws, Some(db), &dout, cb, wsb, n, k, m)
            }
            (_, dx) => dev.linear_bwd(dx, &mut dws, Some(db), &dout, tape.buf(x)?, wsb, n, k, m),
        };
        dev.recycle(dout);
        if let Some(d) = dx {
            tape.put_grad(x, d);
        }
        r?;
        let mut dg = tape.take_grad(dev, g)?;
        let r = dev.col_scale_bwd(
            dw,
            &mut dg,
            &dws,
            &pw[w.0],
            tape.buf(g)?,
            tape.buf(keep)?,
            m,
            k,
        );
        tape.put_grad(g, dg);
        dev.recycle(dws);
        r?;
    }
    tape.free(dev, out);
    tape.free(dev, ws);
    Ok(())
}
