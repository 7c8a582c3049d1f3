//! MSE over present targets + λ · sparsity (SPEC §3).
//! t_ik = m_i · [y_ik not NaN]; mse = Σ t (ŷ − y)² / Σ t (0 when Σ t = 0); sparsity = mean_f g_f;
//! loss = mse + λ · sparsity. Backward with dL = 1: dyhat += 2 t (ŷ − y)/Σ t; dg += λ / f.

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossParts {
    pub loss: f32,
    pub mse: f32,
    pub sparsity: f32,
    /// Σ t: how many targets were scored
    pub count: f32,
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
    todo!()
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
    todo!()
}
