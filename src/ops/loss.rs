//! MSE over present targets + λ · sparsity (SPEC §3).
//! t_ik = m_i · [y_ik not NaN]; mse = Σ t (ŷ − y)² / Σ t (0 when Σ t = 0); sparsity = mean_f g_f;
//! loss = mse + λ · sparsity. Backward with dL = 1: dyhat += 2 t (ŷ − y)/Σ t; dg += λ / f.
//!
//! f is the length of g (of dg in the backward); f = 0 gives sparsity 0. Sums are f64.

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossParts {
    pub loss: f32,
    pub mse: f32,
    pub sparsity: f32,
    /// Σ t: how many targets were scored
    pub count: f32,
}

/// t_ik as a weight: m_i where y_ik is present, 0 where it is NaN (or the row is padding).
#[inline]
fn weight(m: f32, y: f32) -> f64 {
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
