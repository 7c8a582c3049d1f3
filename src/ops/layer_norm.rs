//! LayerNorm per row over d: (x − μ)/√(σ² + eps) ⊙ γ + β, biased variance, eps = 1e-5 (SPEC §3).
//! Saves mean[n] and rstd[n] for the backward.
//!
//! Backward with x̂ = (x − μ)·rstd and dx̂ = dout ⊙ γ:
//! dx += rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)); dγ += Σ_rows dout ⊙ x̂; dβ += Σ_rows dout.
//! Row statistics and the sums over rows are accumulated in f64.

use super::par;

pub const LN_EPS: f32 = 1e-5;

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
        let r0 = c * chunk;
        for (ii, orow) in o.chunks_mut(d).enumerate() {
            let x = &inp[(r0 + ii) * d..(r0 + ii + 1) * d];
            let m = x.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = x
                .iter()
                .map(|&v| {
                    let c = v as f64 - m;
                    c * c
                })
                .sum::<f64>()
                / d as f64;
            let r = 1.0 / (var + LN_EPS as f64).sqrt();
            mu[ii] = m as f32;
            rs[ii] = r as f32;
            for (((ov, &xv), &gv), &bv) in orow.iter_mut().zip(x).zip(gamma).zip(beta) {
                *ov = ((xv as f64 - m) * r) as f32 * gv + bv;
            }
        }
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
    if n == 0 || d == 0 {
        return;
    }
    let chunk = par::chunk_rows(n, 12 * d);
    // each chunk returns its partial [dγ | dβ] in f64
    let partials = par::run(
        dinp[..n * d].chunks_mut(chunk * d).enumerate(),
        |(c, di)| {
            let r0 = c * chunk;
            let mut acc = vec![0f64; 2 * d];
            for (ii, drow) in di.chunks_mut(d).enumerate() {
                let i = r0 + ii;
                let x = &inp[i * d..(i + 1) * d];
                let g = &dout[i * d..(i + 1) * d];
                let (mu, rs) = (mean[i], rstd[i]);
                let mut sum_dxh = 0f64;
                let mut sum_dxh_xh = 0f64;
                for kk in 0..d {
                    let xh = (x[kk] - mu) * rs;
                    let dxh = g[kk] * gamma[kk];
                    sum_dxh += dxh as f64;
                    sum_dxh_xh += (dxh * xh) as f64;
                    acc[kk] += (g[kk] * xh) as f64;
                    acc[d + kk] += g[kk] as f64;
                }
                let mean_dxh = (sum_dxh / d as f64) as f32;
                let mean_dxh_xh = (sum_dxh_xh / d as f64) as f32;
                for kk in 0..d {
                    let xh = (x[kk] - mu) * rs;
                    let dxh = g[kk] * gamma[kk];
                    drow[kk] += rs * (dxh - mean_dxh - xh * mean_dxh_xh);
                }
            }
            acc
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
