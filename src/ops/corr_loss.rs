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

/// ε inside the square roots of the correlation loss.
pub const CORR_EPS: f64 = 1e-8;

/// Floats saved per target column.
pub const CORR_STATS: usize = 4;

/// What the correlation loss's forward reports.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CorrParts {
    /// mean Pearson correlation over the counted target columns (0 when none counts)
    pub corr: f32,
    /// K: how many target columns counted
    pub heads: f32,
}

#[inline]
fn weight(m: f32, y: f32) -> f64 {
    if m == 0.0 || y.is_nan() {
        0.0
    } else {
        m as f64
    }
}

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
        for i in 0..n {
            let e = i * t + k;
            let w = weight(mask[i], y[e]);
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
        for i in 0..n {
            let e = i * t + k;
            let w = weight(mask[i], y[e]);
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
    for i in 0..n {
        for k in 0..t {
            let e = i * t + k;
            let w = weight(mask[i], y[e]);
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
