//! LayerNorm per row over d: (x − μ)/√(σ² + eps) ⊙ γ + β, biased variance, eps = 1e-5 (SPEC §3).
//! Saves mean[n] and rstd[n] for the backward.

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
    todo!()
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
    todo!()
}
