//! LayerNorm per row over d: (x − μ)/√(σ² + eps) ⊙ γ + β, biased variance, eps = 1e-5 (SPEC §3).
//! Saves mean[n] and rstd[n] for the backward. (The CPU backward recomputes both in f64 from the
//! row, which costs two passes over d and keeps the digits the f32 copies lose; they stay in the
//! signature for the devices that use them.)
//!
//! Backward with x̂ = (x − μ)·rstd and dx̂ = dout ⊙ γ:
//! dx += rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)) (or dx = …, into a fresh gradient);
//! dγ += Σ_rows dout ⊙ x̂; dβ += Σ_rows dout.
//! Row statistics and the sums over rows are accumulated in f64.

use super::gemm::Simd;
use super::par;
use super::shape::expect_len;
use crate::device::Backend;
use crate::params::{ParamId, Params};
use crate::tape::base::{two_mut, Node, Tape, T};
use crate::{Error, Result};

pub(crate) mod gpu;
#[cfg(target_arch = "x86_64")]
mod simd;

pub const LN_EPS: f32 = 1e-5;

/// (μ, 1/√(σ² + eps)) of one row, in f64 (two passes, each in 8 interleaved partial sums so
/// the loops vectorise).
#[inline(always)]
fn row_stats(x: &[f32]) -> (f64, f64) {
    let d = x.len().max(1) as f64;
    let m = sum8(x, |v| v as f64) / d;
    let var = sum8(x, |v| {
        let c = v as f64 - m;
        c * c
    }) / d;
    (m, 1.0 / (var + LN_EPS as f64).sqrt())
}

/// Σ f(x_i) in f64 over 8 interleaved partial sums, combined pairwise, then the tail.
#[inline(always)]
fn sum8(x: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let mut it = x.chunks_exact(8);
    for c in &mut it {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    let mut s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for &v in it.remainder() {
        s += f(v);
    }
    s
}

#[allow(clippy::too_many_arguments)]
pub fn layer_norm_fwd(
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    inp: &[f32],
    gamma: &[f32],
    beta: &[f32],
    n: usize,
    d: usize,
) {
    layer_norm_fwd_on(Simd::detect(), out, mean, rstd, inp, gamma, beta, n, d)
}

/// [`layer_norm_fwd`] on the `simd` path (a path the CPU lacks runs the baseline loops). Every
/// path computes the same operations in the same order, so all give the same bits (tested).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_fwd_on(
    simd: Simd,
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    inp: &[f32],
    gamma: &[f32],
    beta: &[f32],
    n: usize,
    d: usize,
) {
    if n == 0 || d == 0 {
        return;
    }
    let chunk = par::chunk_rows(n, 8 * d);
    let items = out[..n * d]
        .chunks_mut(chunk * d)
        .zip(mean[..n].chunks_mut(chunk))
        .zip(rstd[..n].chunks_mut(chunk))
        .enumerate();
    par::run(items, |(c, ((o, mu), rs))| {
        // the row loops of `simd.rs` on AVX-512 and AVX2 (the same bits as the loops below)
        #[cfg(target_arch = "x86_64")]
        {
            let r0 = c * chunk;
            let x = &inp[r0 * d..(r0 + mu.len()) * d];
            if simd::fwd_rows(simd, o, mu, rs, x, gamma, beta, d) {
                return;
            }
        }
        simd.run(
            #[inline(always)]
            || {
                let r0 = c * chunk;
                for (ii, orow) in o.chunks_mut(d).enumerate() {
                    let x = &inp[(r0 + ii) * d..(r0 + ii + 1) * d];
                    let (m, r) = row_stats(x);
                    mu[ii] = m as f32;
                    rs[ii] = r as f32;
                    for (((ov, &xv), &gv), &bv) in orow.iter_mut().zip(x).zip(gamma).zip(beta) {
                        *ov = ((xv as f64 - m) * r) as f32 * gv + bv;
                    }
                }
            },
        )
    });
}

#[allow(clippy::too_many_arguments)]
pub fn layer_norm_bwd(
    dinp: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    mean: &[f32],
    rstd: &[f32],
    gamma: &[f32],
    n: usize,
    d: usize,
) {
    layer_norm_bwd_on(
        Simd::detect(),
        true,
        dinp,
        dgamma,
        dbeta,
        dout,
        inp,
        mean,
        rstd,
        gamma,
        n,
        d,
    )
}

/// [`layer_norm_bwd`] on the `simd` path (see [`layer_norm_fwd_on`]), dx added to `dinp`
/// (`accumulate`) or written over it.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_bwd_on(
    simd: Simd,
    accumulate: bool,
    dinp: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    mean: &[f32],
    rstd: &[f32],
    gamma: &[f32],
    n: usize,
    d: usize,
) {
    if n == 0 || d == 0 {
        return;
    }
    // the saved statistics are recomputed in f64 below (see the module doc)
    let _ = (mean, rstd);
    let chunk = par::chunk_rows(n, 12 * d);
    // each chunk returns its partial [dγ | dβ] in f64
    let partials = par::run(
        dinp[..n * d].chunks_mut(chunk * d).enumerate(),
        |(c, di)| {
            simd.run(
                #[inline(always)]
                || {
                    let r0 = c * chunk;
                    let mut acc = vec![0f64; 2 * d];
                    // x̂ and dx̂ = dy·γ of the current row, computed once and used by all three passes
                    let mut xhat = vec![0f64; d];
                    let mut dxhat = vec![0f64; d];
                    // the row loops of `simd.rs` on AVX-512 and AVX2 (the same bits)
                    #[cfg(target_arch = "x86_64")]
                    {
                        let rows = r0 * d..r0 * d + di.len();
                        let (x, g) = (&inp[rows.clone()], &dout[rows]);
                        let (a, xh, dxh) = (&mut acc, &mut xhat, &mut dxhat);
                        if simd::bwd_rows(simd, accumulate, di, a, xh, dxh, x, g, gamma, d) {
                            return acc;
                        }
                    }
                    for (ii, drow) in di.chunks_mut(d).enumerate() {
                        let i = r0 + ii;
                        let x = &inp[i * d..(i + 1) * d];
                        let g = &dout[i * d..(i + 1) * d];
                        // the row's statistics again, in f64: for a row whose spread is small next to
                        // √eps the gradient is a difference of nearly equal terms, and the saved f32
                        // mean and rstd alone would cost it 3–4 digits
                        let (mu, rs) = row_stats(x);
                        for kk in 0..d {
                            let xh = (x[kk] as f64 - mu) * rs;
                            let gk = g[kk] as f64;
                            xhat[kk] = xh;
                            dxhat[kk] = gk * gamma[kk] as f64;
                            acc[kk] += gk * xh;
                            acc[d + kk] += gk;
                        }
                        // Σ dx̂ and Σ dx̂·x̂ in 8 interleaved partial sums each (vectorised)
                        let (mut s1, mut s2) = ([0f64; 8], [0f64; 8]);
                        let full = d / 8 * 8;
                        for k0 in (0..full).step_by(8) {
                            for t in 0..8 {
                                let kk = k0 + t;
                                s1[t] += dxhat[kk];
                                s2[t] += dxhat[kk] * xhat[kk];
                            }
                        }
                        let pair = |a: [f64; 8]| {
                            ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
                        };
                        let (mut sum_dxh, mut sum_dxh_xh) = (pair(s1), pair(s2));
                        for kk in full..d {
                            sum_dxh += dxhat[kk];
                            sum_dxh_xh += dxhat[kk] * xhat[kk];
                        }
                        let mean_dxh = sum_dxh / d as f64;
                        let mean_dxh_xh = sum_dxh_xh / d as f64;
                        for ((dv, &dxh), &xh) in drow.iter_mut().zip(&dxhat).zip(&xhat) {
                            let t = (rs * (dxh - mean_dxh - xh * mean_dxh_xh)) as f32;
                            *dv = if accumulate { *dv + t } else { t };
                        }
                    }
                    acc
                },
            )
        },
    );
    let mut total = vec![0f64; 2 * d];
    for p in partials {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    for kk in 0..d {
        dgamma[kk] = (dgamma[kk] as f64 + total[kk]) as f32;
        dbeta[kk] = (dbeta[kk] as f64 + total[d + kk]) as f32;
    }
}

// ---- shapes, tape record and backward -------------------------------------------------------

/// The forward's shape rule on every device: out, inp [n,d]; mean, rstd [n]; gamma, beta [d].
#[allow(clippy::too_many_arguments)]
pub fn check_fwd(
    out: usize,
    mean: usize,
    rstd: usize,
    inp: usize,
    gamma: usize,
    beta: usize,
    n: usize,
    d: usize,
) -> Result<()> {
    let op = "layer_norm_fwd";
    expect_len(op, "out", out, n * d)?;
    expect_len(op, "inp", inp, n * d)?;
    expect_len(op, "mean", mean, n)?;
    expect_len(op, "rstd", rstd, n)?;
    expect_len(op, "gamma", gamma, d)?;
    expect_len(op, "beta", beta, d)
}

/// The backward's shape rule on every device (`lens` in the order of [`layer_norm_bwd`]'s slices).
#[allow(clippy::too_many_arguments)]
pub fn check_bwd(
    dinp: usize,
    dgamma: usize,
    dbeta: usize,
    dout: usize,
    inp: usize,
    mean: usize,
    rstd: usize,
    gamma: usize,
    n: usize,
    d: usize,
) -> Result<()> {
    let op = "layer_norm_bwd";
    expect_len(op, "dinp", dinp, n * d)?;
    expect_len(op, "dout", dout, n * d)?;
    expect_len(op, "inp", inp, n * d)?;
    expect_len(op, "mean", mean, n)?;
    expect_len(op, "rstd", rstd, n)?;
    expect_len(op, "gamma", gamma, d)?;
    expect_len(op, "dgamma", dgamma, d)?;
    expect_len(op, "dbeta", dbeta, d)
}

/// The CPU backend's `layer_norm_fwd`: the shape rule every device shares, then the forward.
#[allow(clippy::too_many_arguments)]
pub(crate) fn cpu_fwd(
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    inp: &[f32],
    gamma: &[f32],
    beta: &[f32],
    n: usize,
    d: usize,
) -> Result<()> {
    let (o, mu, rs) = (out.len(), mean.len(), rstd.len());
    check_fwd(o, mu, rs, inp.len(), gamma.len(), beta.len(), n, d)?;
    layer_norm_fwd(out, mean, rstd, inp, gamma, beta, n, d);
    Ok(())
}

/// The CPU backend's `layer_norm_bwd` (`fresh` false) and `layer_norm_bwd_fresh` (true: dinp is
/// written): the shape rule every device shares, then the backward.
#[allow(clippy::too_many_arguments)]
pub(crate) fn cpu_bwd(
    dinp: &mut [f32],
    fresh: bool,
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    mean: &[f32],
    rstd: &[f32],
    gamma: &[f32],
    n: usize,
    d: usize,
) -> Result<()> {
    let (di, dg, db) = (dinp.len(), dgamma.len(), dbeta.len());
    let (mu, rs) = (mean.len(), rstd.len());
    check_bwd(di, dg, db, dout.len(), inp.len(), mu, rs, gamma.len(), n, d)?;
    let simd = Simd::detect();
    layer_norm_bwd_on(
        simd, !fresh, dinp, dgamma, dbeta, dout, inp, mean, rstd, gamma, n, d,
    );
    Ok(())
}

impl<B: Backend> Tape<B> {
    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm(
        &mut self,
        dev: &B,
        p: &Params<B>,
        inp: T,
        gamma: ParamId,
        beta: ParamId,
        n: usize,
        d: usize,
    ) -> Result<T> {
        let out = self.new_tensor(dev, n * d)?;
        let mean = self.new_tensor(dev, n)?;
        let rstd = self.new_tensor(dev, n)?;
        let (mut o, mut mu, mut rs) = (self.take(out)?, self.take(mean)?, self.take(rstd)?);
        let r = dev.layer_norm_fwd(
            &mut o,
            &mut mu,
            &mut rs,
            self.buf(inp)?,
            &p.values[gamma.0],
            &p.values[beta.0],
            n,
            d,
        );
        self.put(out, o);
        self.put(mean, mu);
        self.put(rstd, rs);
        r?;
        self.record(Node::LayerNorm {
            out,
            mean,
            rstd,
            inp,
            gamma,
            beta,
            n,
            d,
        });
        Ok(out)
    }
}

/// Backward of [`Node::LayerNorm`].
pub(crate) fn backward<B: Backend>(
    tape: &mut Tape<B>,
    dev: &B,
    p: &mut Params<B>,
    node: &Node,
) -> Result<()> {
    let Node::LayerNorm {
        out,
        mean,
        rstd,
        inp,
        gamma,
        beta,
        n,
        d,
    } = *node
    else {
        return Err(Error::device(
            "layer_norm::backward on another node".to_string(),
        ));
    };
    if let Some(dout) = tape.take_grad_if_any(out) {
        let (mut dinp, fresh) = tape.take_grad_fresh(dev, inp)?;
        let (pw, pg) = (&p.values, &mut p.grads);
        let (dgamma, dbeta) = two_mut(pg, gamma.0, beta.0)?;
        let (x, mu, rs) = (tape.buf(inp)?, tape.buf(mean)?, tape.buf(rstd)?);
        let g = &pw[gamma.0];
        if fresh {
            dev.layer_norm_bwd_fresh(&mut dinp, dgamma, dbeta, &dout, x, mu, rs, g, n, d)?;
        } else {
            dev.layer_norm_bwd(&mut dinp, dgamma, dbeta, &dout, x, mu, rs, g, n, d)?;
        }
        tape.put_grad(inp, dinp);
        dev.recycle(dout);
    }
    tape.free(dev, out);
    tape.free(dev, mean);
    tape.free(dev, rstd);
    Ok(())
}
