//! Orthogonal-embedding loss (docs/model.md, "Embedding loss").
//!
//! H: [n, d] final hidden states, mask m [n]; a row counts when m_i ≠ 0 (u_i = 1), n_v = Σ u_i.
//! Column statistics over the counted rows:
//!   μ_j = Σ u_i H_ij / n_v,  σ_j = √(Σ u_i (H_ij − μ_j)² / n_v + ε),  Z_ij = (H_ij − μ_j) / σ_j,
//!   C = Σ u_i Z_iᵀ Z_i / n_v  [d, d],  P = ‖C − I‖²_F / d²,  ε = [`ORTHO_EPS`].
//! The training loss adds w · P (w = `ortho_weight`). When n_v ≤ 1 (or d = 0) P = 0 and the
//! gradient is 0.
//!
//! Backward with dL/dP = w: G = ∂(wP)/∂C = 2w (C − I)/d² (symmetric), so
//!   dZ = 2 Z G / n_v = Z Ĝ,  Ĝ = 4w (C − I) / (d² n_v)  (saved as `gmat` [d, d]),
//! and through the column standardisation (as layer norm, over rows instead of columns):
//!   dH_ij += u_i (dZ_ij − a_j / n_v − Z_ij b_j / n_v) / σ_j,  a_j = Σ u dZ_·j,  b_j = Σ u dZ_·j Z_·j.
//! The forward saves stats [2d + 1] = (μ [d], 1/σ [d], n_v) and Ĝ. Sums are f64, in row order.

use super::shape::expect_len;
use crate::device::Backend;
use crate::tape::base::{Node, Tape, T};
use crate::{Error, Result};

pub(crate) mod gpu;

/// ε inside σ_j.
pub const ORTHO_EPS: f64 = 1e-5;

/// Length of the saved statistics for width d: μ [d], 1/σ [d], n_v.
pub fn stats_len(d: usize) -> usize {
    2 * d + 1
}

#[inline]
fn counts(m: f32) -> bool {
    m != 0.0
}

/// Forward: fills `stats` [2d+1] and `gmat` [d·d] (Ĝ, scaled by `weight`) and returns the
/// unweighted penalty P. With d = 0 every output stays zero.
pub fn ortho_loss_fwd(
    stats: &mut [f32],
    gmat: &mut [f32],
    h: &[f32],
    mask: &[f32],
    weight: f32,
    n: usize,
    d: usize,
) -> f32 {
    stats.fill(0.0);
    gmat.fill(0.0);
    if d == 0 {
        return 0.0;
    }
    let rows: Vec<usize> = (0..n).filter(|&i| counts(mask[i])).collect();
    let nv = rows.len();
    stats[2 * d] = nv as f32;
    if nv <= 1 {
        return 0.0;
    }
    let nvf = nv as f64;
    let mut mean = vec![0f64; d];
    let mut rstd = vec![0f64; d];
    for j in 0..d {
        let s: f64 = rows.iter().map(|&i| h[i * d + j] as f64).sum();
        mean[j] = s / nvf;
        let v: f64 = rows
            .iter()
            .map(|&i| {
                let c = h[i * d + j] as f64 - mean[j];
                c * c
            })
            .sum::<f64>()
            / nvf;
        rstd[j] = 1.0 / (v + ORTHO_EPS).sqrt();
        stats[j] = mean[j] as f32;
        stats[d + j] = rstd[j] as f32;
    }
    // Z in f64 from the f32 statistics, as the kernels see them
    let z = standardised(h, &rows, stats, d);
    let mut p = 0f64;
    let scale = 4.0 * weight as f64 / ((d * d) as f64 * nvf);
    for j in 0..d {
        for k in 0..d {
            let c: f64 = (0..nv).map(|r| z[r * d + j] * z[r * d + k]).sum::<f64>() / nvf;
            let diff = c - if j == k { 1.0 } else { 0.0 };
            p += diff * diff;
            gmat[j * d + k] = (scale * diff) as f32;
        }
    }
    (p / (d * d) as f64) as f32
}

/// Z [rows.len(), d] (f64) of the counted rows from the saved μ, 1/σ.
fn standardised(h: &[f32], rows: &[usize], stats: &[f32], d: usize) -> Vec<f64> {
    let mut z = vec![0f64; rows.len() * d];
    for (r, &i) in rows.iter().enumerate() {
        for j in 0..d {
            z[r * d + j] = (h[i * d + j] as f64 - stats[j] as f64) * stats[d + j] as f64;
        }
    }
    z
}

/// Backward: ACCUMULATES ∂(w P)/∂H into dh [n, d].
pub fn ortho_loss_bwd(
    dh: &mut [f32],
    h: &[f32],
    mask: &[f32],
    stats: &[f32],
    gmat: &[f32],
    n: usize,
    d: usize,
) {
    let nv = stats[2 * d] as usize;
    if nv <= 1 || d == 0 {
        return;
    }
    let rows: Vec<usize> = (0..n).filter(|&i| counts(mask[i])).collect();
    let nvf = nv as f64;
    let z = standardised(h, &rows, stats, d);
    let mut dz = vec![0f64; rows.len() * d];
    for r in 0..rows.len() {
        for j in 0..d {
            dz[r * d + j] = (0..d).map(|k| z[r * d + k] * gmat[k * d + j] as f64).sum();
        }
    }
    for j in 0..d {
        let (mut a, mut b) = (0f64, 0f64);
        for r in 0..rows.len() {
            a += dz[r * d + j];
            b += dz[r * d + j] * z[r * d + j];
        }
        let rs = stats[d + j] as f64;
        for (r, &i) in rows.iter().enumerate() {
            let e = r * d + j;
            dh[i * d + j] += (rs * (dz[e] - a / nvf - z[e] * b / nvf)) as f32;
        }
    }
}

// ---- shapes, tape record and backward -------------------------------------------------------

/// Shape rule on every device: h [n,d], mask [n], stats [2d+1], gmat [d·d] (and dh [n,d]).
pub fn check(
    h: usize,
    mask: usize,
    stats: usize,
    gmat: usize,
    dh: Option<usize>,
    n: usize,
    d: usize,
) -> Result<()> {
    let op = "ortho_loss";
    expect_len(op, "h", h, n * d)?;
    expect_len(op, "mask", mask, n)?;
    expect_len(op, "stats", stats, stats_len(d))?;
    expect_len(op, "gmat", gmat, d * d)?;
    if let Some(x) = dh {
        expect_len("ortho_loss_bwd", "dh", x, n * d)?;
    }
    Ok(())
}

impl<B: Backend> Tape<B> {
    /// The embedding loss term w · P (module doc). Record it before `loss`, which stays the root
    /// of the graph. Returns the unweighted penalty P.
    pub fn ortho_loss(
        &mut self,
        dev: &B,
        h: T,
        mask: T,
        weight: f32,
        n: usize,
        d: usize,
    ) -> Result<f32> {
        let stats = self.new_tensor(dev, stats_len(d))?;
        let gmat = self.new_tensor(dev, d * d)?;
        let mut sb = self.take(stats)?;
        let mut gb = self.take(gmat)?;
        let r = dev.ortho_loss_fwd(
            &mut sb,
            &mut gb,
            self.buf(h)?,
            self.buf(mask)?,
            weight,
            n,
            d,
        );
        self.put(stats, sb);
        self.put(gmat, gb);
        let p = r?;
        self.record(Node::OrthoLoss {
            h,
            mask,
            stats,
            gmat,
            n,
            d,
        });
        Ok(p)
    }
}

/// Backward of [`Node::OrthoLoss`]: adds ∂(w P)/∂H into H's gradient.
pub(crate) fn backward<B: Backend>(tape: &mut Tape<B>, dev: &B, node: &Node) -> Result<()> {
    let Node::OrthoLoss {
        h,
        mask,
        stats,
        gmat,
        n,
        d,
    } = *node
    else {
        return Err(Error::device(
            "ortho_loss::backward on another node".to_string(),
        ));
    };
    if tape.requires_grad(h) {
        let mut dh = tape.take_grad(dev, h)?;
        let r = dev.ortho_loss_bwd(
            &mut dh,
            tape.buf(h)?,
            tape.buf(mask)?,
            tape.buf(stats)?,
            tape.buf(gmat)?,
            n,
            d,
        );
        tape.put_grad(h, dh);
        r?;
    }
    tape.free(dev, stats);
    tape.free(dev, gmat);
    Ok(())
}
