//! MSE over present targets + λ · sparsity (SPEC §3).
//! t_ik = m_i · [y_ik not NaN]; mse = Σ t (ŷ − y)² / Σ t (0 when Σ t = 0); sparsity = mean_f g_f;
//! loss = mse + λ · sparsity. Backward with dL = 1: dyhat += 2 t (ŷ − y)/Σ t; dg += λ / f.
//!
//! f is the length of g (of dg in the backward); f = 0 gives sparsity 0. Sums are f64.

use super::shape::expect_len;
use crate::device::Backend;
use crate::tape::base::{Node, Tape, T};
use crate::{Error, Result};

pub(crate) mod gpu;
pub mod parts;
pub use parts::LossParts;

/// t_ik as a weight: m_i where y_ik is present, 0 where it is NaN (or the row is padding).
#[inline]
pub(crate) fn weight(m: f32, y: f32) -> f64 {
    if m == 0.0 || y.is_nan() {
        0.0
    } else {
        m as f64
    }
}

/// Σ t over the era.
fn target_count(y: &[f32], mask: &[f32], n: usize, t: usize) -> f64 {
    let mut count = 0f64;
    for i in 0..n {
        for &yv in &y[i * t..(i + 1) * t] {
            count += weight(mask[i], yv);
        }
    }
    count
}

#[allow(clippy::too_many_arguments)]
pub fn mse_sparsity_fwd(
    yhat: &[f32],
    y: &[f32],
    mask: &[f32],
    g: &[f32],
    lambda: f32,
    n: usize,
    t: usize,
) -> LossParts {
    let mut sse = 0f64;
    let mut count = 0f64;
    for (i, &mi) in mask[..n].iter().enumerate() {
        for kk in 0..t {
            let e = i * t + kk;
            let wt = weight(mi, y[e]);
            if wt == 0.0 {
                continue;
            }
            let r = yhat[e] as f64 - y[e] as f64;
            sse += wt * r * r;
            count += wt;
        }
    }
    let mse = if count > 0.0 { sse / count } else { 0.0 };
    let sparsity = if g.is_empty() {
        0.0
    } else {
        g.iter().map(|&v| v as f64).sum::<f64>() / g.len() as f64
    };
    LossParts {
        loss: (mse + lambda as f64 * sparsity) as f32,
        mse: mse as f32,
        sparsity: sparsity as f32,
        count: count as f32,
        ortho: 0.0,
    }
}

#[allow(clippy::too_many_arguments)]
pub fn mse_sparsity_bwd(
    dyhat: &mut [f32],
    dg: &mut [f32],
    yhat: &[f32],
    y: &[f32],
    mask: &[f32],
    lambda: f32,
    n: usize,
    t: usize,
) {
    let count = target_count(y, mask, n, t);
    if count > 0.0 {
        for (i, &mi) in mask[..n].iter().enumerate() {
            for kk in 0..t {
                let e = i * t + kk;
                let wt = weight(mi, y[e]);
                if wt == 0.0 {
                    continue;
                }
                dyhat[e] += (2.0 * wt * (yhat[e] as f64 - y[e] as f64) / count) as f32;
            }
        }
    }
    if !dg.is_empty() {
        let step = (lambda as f64 / dg.len() as f64) as f32;
        for v in dg.iter_mut() {
            *v += step;
        }
    }
}

// ---- shapes, tape record and backward -------------------------------------------------------

/// Shape rule of the loss on every device: yhat, y [n,t], mask [n] (and dyhat [n,t]).
pub fn check(
    yhat: usize,
    y: usize,
    mask: usize,
    dyhat: Option<usize>,
    n: usize,
    t: usize,
) -> Result<()> {
    let op = "mse_sparsity";
    expect_len(op, "yhat", yhat, n * t)?;
    expect_len(op, "y", y, n * t)?;
    expect_len(op, "mask", mask, n)?;
    if let Some(d) = dyhat {
        expect_len("mse_sparsity_bwd", "dyhat", d, n * t)?;
    }
    Ok(())
}

impl<B: Backend> Tape<B> {
    /// MSE over present targets + λ·mean(g): the root of the graph.
    #[allow(clippy::too_many_arguments)]
    pub fn loss(
        &mut self,
        dev: &B,
        yhat: T,
        y: T,
        mask: T,
        g: T,
        lambda: f32,
        n: usize,
        t: usize,
    ) -> Result<LossParts> {
        self.loss_with(dev, yhat, y, mask, g, lambda, n, t, &[], &[])
    }

    /// [`Tape::loss`], reading back the tensors `also` and the buffers `also_bufs` in the same
    /// host wait ([`Backend::mse_sparsity_fwd_with`]): download them next, before anything else
    /// runs on the device, and a training step waits on the host once.
    #[allow(clippy::too_many_arguments)]
    pub fn loss_with(
        &mut self,
        dev: &B,
        yhat: T,
        y: T,
        mask: T,
        g: T,
        lambda: f32,
        n: usize,
        t: usize,
        also: &[T],
        also_bufs: &[&B::Buf],
    ) -> Result<LossParts> {
        let mut extra = also
            .iter()
            .map(|&a| self.buf(a))
            .collect::<Result<Vec<_>>>()?;
        extra.extend_from_slice(also_bufs);
        let parts = dev.mse_sparsity_fwd_with(
            self.buf(yhat)?,
            self.buf(y)?,
            self.buf(mask)?,
            self.buf(g)?,
            lambda,
            n,
            t,
            &extra,
        )?;
        self.record(Node::Loss {
            yhat,
            y,
            mask,
            g,
            lambda,
            n,
            t,
        });
        Ok(parts)
    }
}

/// Backward of [`Node::Loss`] (seeded with dL = 1).
pub(crate) fn backward<B: Backend>(tape: &mut Tape<B>, dev: &B, node: &Node) -> Result<()> {
    let Node::Loss {
        yhat,
        y,
        mask,
        g,
        lambda,
        n,
        t,
    } = *node
    else {
        return Err(Error::device("loss::backward on another node".to_string()));
    };
    let mut dy = tape.take_grad(dev, yhat)?;
    let mut dg = tape.take_grad(dev, g)?;
    dev.mse_sparsity_bwd(
        &mut dy,
        &mut dg,
        tape.buf(yhat)?,
        tape.buf(y)?,
        tape.buf(mask)?,
        lambda,
        n,
        t,
    )?;
    tape.put_grad(yhat, dy);
    tape.put_grad(g, dg);
    Ok(())
}
