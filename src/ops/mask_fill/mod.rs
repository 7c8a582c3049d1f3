//! Mask fill: the masked-feature input of pretraining (docs/model.md).
//!
//! x: [n, f], fill: [n, f] (1 where an entry is masked, 0 elsewhere), mv: [f] the learned mask
//! value (parameter `pretrain.mask_value`):
//!   out_if = (1 − fill_if) x_if + fill_if mv_f.
//! Backward: dx_if += (1 − fill_if) dout_if (when x takes a gradient), dmv_f += Σ_i fill_if dout_if
//! (f64, row order). Nothing is saved beyond the inputs.

use super::shape::expect_len;
use crate::device::Backend;
use crate::params::{ParamId, Params};
use crate::tape::base::{Node, Tape, T};
use crate::{Error, Result};

pub(crate) mod gpu;

pub fn mask_fill_fwd(out: &mut [f32], x: &[f32], fill: &[f32], mv: &[f32], n: usize, f: usize) {
    for i in 0..n {
        for (j, &v) in mv.iter().enumerate().take(f) {
            let e = i * f + j;
            let m = fill[e];
            out[e] = (1.0 - m) * x[e] + m * v;
        }
    }
}

/// ACCUMULATES into dx (when given) and dmv.
pub fn mask_fill_bwd(
    dx: Option<&mut [f32]>,
    dmv: &mut [f32],
    dout: &[f32],
    fill: &[f32],
    n: usize,
    f: usize,
) {
    if let Some(dx) = dx {
        for e in 0..n * f {
            dx[e] += (1.0 - fill[e]) * dout[e];
        }
    }
    for (j, g) in dmv.iter_mut().enumerate().take(f) {
        let s: f64 = (0..n)
            .map(|i| fill[i * f + j] as f64 * dout[i * f + j] as f64)
            .sum();
        *g += s as f32;
    }
}

/// Shape rule on every device: out (or dout), x (or dx), fill [n,f], mv (or dmv) [f].
pub fn check(out: usize, x: usize, fill: usize, mv: usize, n: usize, f: usize) -> Result<()> {
    let op = "mask_fill";
    expect_len(op, "out", out, n * f)?;
    expect_len(op, "x", x, n * f)?;
    expect_len(op, "fill", fill, n * f)?;
    expect_len(op, "mask value", mv, f)
}

impl<B: Backend> Tape<B> {
    /// out = (1 − fill) x + fill · mv (module doc); `mv` is a parameter [f].
    #[allow(clippy::too_many_arguments)]
    pub fn mask_fill(
        &mut self,
        dev: &B,
        p: &Params<B>,
        x: T,
        fill: T,
        mv: ParamId,
        n: usize,
        f: usize,
    ) -> Result<T> {
        let out = self.new_tensor(dev, n * f)?;
        let mut ob = self.take(out)?;
        let r = dev.mask_fill_fwd(
            &mut ob,
            self.buf(x)?,
            self.buf(fill)?,
            &p.values[mv.0],
            n,
            f,
        );
        self.put(out, ob);
        r?;
        self.record(Node::MaskFill {
            out,
            x,
            fill,
            mv,
            n,
            f,
        });
        Ok(out)
    }
}

/// Backward of [`Node::MaskFill`].
pub(crate) fn backward<B: Backend>(
    tape: &mut Tape<B>,
    dev: &B,
    p: &mut Params<B>,
    node: &Node,
) -> Result<()> {
    let Node::MaskFill {
        out,
        x,
        fill,
        mv,
        n,
        f,
    } = *node
    else {
        return Err(Error::device(
            "mask_fill::backward on another node".to_string(),
        ));
    };
    if let Some(dout) = tape.take_grad_if_any(out) {
        let mut dx = if tape.requires_grad(x) {
            Some(tape.take_grad(dev, x)?)
        } else {
            None
        };
        let dmv = p
            .grads
            .get_mut(mv.0)
            .ok_or_else(|| Error::device(format!("parameter id {} does not exist", mv.0)))?;
        let r = dev.mask_fill_bwd(dx.as_mut(), dmv, &dout, tape.buf(fill)?, n, f);
        if let Some(d) = dx {
            tape.put_grad(x, d);
        }
        dev.recycle(dout);
        r?;
    }
    tape.free(dev, out);
    Ok(())
}
