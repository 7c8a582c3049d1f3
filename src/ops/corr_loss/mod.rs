//! Per-era Pearson correlation loss (docs/model.md, "Correlation loss").
//!
//! For each target column k of ŷ, y: [n, t] with weights t_ik = m_i · [y_ik not NaN]:
//!   N_k = Σ_i t_ik,  ŷ̄_k = Σ t ŷ / N_k,  ȳ_k = Σ t y / N_k,  a = ŷ − ŷ̄_k,  b = y − ȳ_k,
//!   S_ab = Σ t a b,  S_aa = Σ t a²,  S_bb = Σ t b²,  s_a = √(S_aa + ε),  s_b = √(S_bb + ε),
//!   ρ_k = S_ab / (s_a s_b),  ε = [`CORR_EPS`].
//! A column counts when N_k ≥ 2 and S_bb > 0 (a constant target has no correlation); K = the number
//! of counted columns; corr = Σ_counted ρ_k / K (0 when K = 0).
//!
//! The training loss adds w · (1 − corr) (w = `corr_weight`). Backward with dL/dcorr = −w: the
//! centring terms cancel (Σ t a = Σ t b = 0), leaving
//!   dŷ_ik += −w · t_ik · (b_ik · c1_k − a_ik · c2_k),  c1_k = 1/(K s_a s_b),  c2_k = S_ab/(K s_a³ s_b).
//! The forward saves stats[t, 4] = (ŷ̄_k, ȳ_k, c1_k, c2_k) (zeros for a column that does not count),
//! exactly what the backward needs. Sums are f64, in row order.

use super::shape::expect_len;
use crate::device::Backend;
use crate::tape::base::{Node, Tape, T};
use crate::{Error, Result};

pub(crate) mod gpu;
pub mod parts;

pub use parts::CorrParts;

/// ε inside the square roots of the correlation loss.
pub const CORR_EPS: f64 = 1e-8;

/// Floats saved per target column.
pub const CORR_STATS: usize = 4;

use super::loss::weight;

/// Forward: fills `stats` [t · CORR_STATS] and returns the mean correlation.
pub fn corr_loss_fwd(
    stats: &mut [f32],
    yhat: &[f32],
    y: &[f32],
    mask: &[f32],
    n: usize,
    t: usize,
) -> CorrParts {
    let mut rho = vec![0f64; t];
    let mut counted = vec![false; t];
    let mut moments = vec![(0f64, 0f64, 0f64, 0f64, 0f64); t];
    for (k, mo) in moments.iter_mut().enumerate() {
        let (mut sw, mut sp, mut sy) = (0f64, 0f64, 0f64);
        for (i, &mi) in mask[..n].iter().enumerate() {
            let e = i * t + k;
            let w = weight(mi, y[e]);
            if w == 0.0 {
                continue;
            }
            sw += w;
            sp += w * yhat[e] as f64;
            sy += w * y[e] as f64;
        }
        if sw < 2.0 {
            continue;
        }
        let (mp, my) = (sp / sw, sy / sw);
        let (mut sab, mut saa, mut sbb) = (0f64, 0f64, 0f64);
        for (i, &mi) in mask[..n].iter().enumerate() {
            let e = i * t + k;
            let w = weight(mi, y[e]);
            if w == 0.0 {
                continue;
            }
            let a = yhat[e] as f64 - mp;
            let b = y[e] as f64 - my;
            sab += w * a * b;
            saa += w * a * a;
            sbb += w * b * b;
        }
        if sbb <= 0.0 {
            continue;
        }
        counted[k] = true;
        let (sa, sb) = ((saa + CORR_EPS).sqrt(), (sbb + CORR_EPS).sqrt());
        rho[k] = sab / (sa * sb);
        *mo = (mp, my, sa, sb, sab);
    }
    let heads = counted.iter().filter(|&&c| c).count();
    for k in 0..t {
        let s = &mut stats[k * CORR_STATS..(k + 1) * CORR_STATS];
        if !counted[k] {
            s.fill(0.0);
            continue;
        }
        let (mp, my, sa, sb, sab) = moments[k];
        let kk = heads as f64;
        s[0] = mp as f32;
        s[1] = my as f32;
        s[2] = (1.0 / (kk * sa * sb)) as f32;
        s[3] = (sab / (kk * sa * sa * sa * sb)) as f32;
    }
    let corr = if heads > 0 {
        (0..t).filter(|&k| counted[k]).map(|k| rho[k]).sum::<f64>() / heads as f64
    } else {
        0.0
    };
    CorrParts {
        corr: corr as f32,
        heads: heads as f32,
    }
}

/// Backward of `weight · (1 − corr)`: ACCUMULATES into dyhat [n, t].
#[allow(clippy::too_many_arguments)]
pub fn corr_loss_bwd(
    dyhat: &mut [f32],
    yhat: &[f32],
    y: &[f32],
    mask: &[f32],
    stats: &[f32],
    weight_corr: f32,
    n: usize,
    t: usize,
) {
    for (i, &mi) in mask[..n].iter().enumerate() {
        for k in 0..t {
            let e = i * t + k;
            let w = weight(mi, y[e]);
            if w == 0.0 {
                continue;
            }
            let s = &stats[k * CORR_STATS..(k + 1) * CORR_STATS];
            let a = yhat[e] - s[0];
            let b = y[e] - s[1];
            dyhat[e] += -weight_corr * w as f32 * (b * s[2] - a * s[3]);
        }
    }
}

// ---- shapes, tape record and backward -------------------------------------------------------

/// Shape rule on every device: yhat, y [n,t], mask [n], stats [t·CORR_STATS] (and dyhat [n,t]).
pub fn check(
    yhat: usize,
    y: usize,
    mask: usize,
    stats: usize,
    dyhat: Option<usize>,
    n: usize,
    t: usize,
) -> Result<()> {
    let op = "corr_loss";
    expect_len(op, "yhat", yhat, n * t)?;
    expect_len(op, "y", y, n * t)?;
    expect_len(op, "mask", mask, n)?;
    expect_len(op, "stats", stats, t * CORR_STATS)?;
    if let Some(d) = dyhat {
        expect_len("corr_loss_bwd", "dyhat", d, n * t)?;
    }
    Ok(())
}

impl<B: Backend> Tape<B> {
    /// The correlation loss term w · (1 − corr) (docs/model.md). Record it before `loss`, which
    /// stays the root of the graph. Returns the tensor [2] holding (corr, K) on the device: pass
    /// it to [`Tape::loss_with`] and read it with [`CorrParts::from_host`] of its download.
    #[allow(clippy::too_many_arguments)]
    pub fn corr_loss(
        &mut self,
        dev: &B,
        yhat: T,
        y: T,
        mask: T,
        weight: f32,
        n: usize,
        t: usize,
    ) -> Result<T> {
        let stats = self.new_tensor(dev, t * CORR_STATS)?;
        let parts = self.new_tensor(dev, 2)?;
        let mut sb = self.take(stats)?;
        let mut pb = match self.take(parts) {
            Ok(b) => b,
            Err(e) => {
                self.put(stats, sb);
                return Err(e);
            }
        };
        let r = dev.corr_loss_fwd_dev(
            &mut sb,
            &mut pb,
            self.buf(yhat)?,
            self.buf(y)?,
            self.buf(mask)?,
            n,
            t,
        );
        self.put(stats, sb);
        self.put(parts, pb);
        r?;
        self.record(Node::CorrLoss {
            yhat,
            y,
            mask,
            stats,
            weight,
            n,
            t,
        });
        Ok(parts)
    }
}

/// Backward of [`Node::CorrLoss`]: adds ∂(w (1 − corr))/∂ŷ into ŷ's gradient.
pub(crate) fn backward<B: Backend>(tape: &mut Tape<B>, dev: &B, node: &Node) -> Result<()> {
    let Node::CorrLoss {
        yhat,
        y,
        mask,
        stats,
        weight,
        n,
        t,
    } = *node
    else {
        return Err(Error::device(
            "corr_loss::backward on another node".to_string(),
        ));
    };
    let mut dy = tape.take_grad(dev, yhat)?;
    let r = dev.corr_loss_bwd(
        &mut dy,
        tape.buf(yhat)?,
        tape.buf(y)?,
        tape.buf(mask)?,
        tape.buf(stats)?,
        weight,
        n,
        t,
    );
    tape.put_grad(yhat, dy);
    r?;
    tape.free(dev, stats);
    Ok(())
}
