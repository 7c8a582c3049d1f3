//! Era-dependent feature gate (SPEC §3), x: [n,f] preprocessed features, a, b: [f,r].
//! x̄ = Σ_i m_i x_i / Σ_i m_i (zeros if no real row); u = Aᵀ x̄ [r]; ℓ = w + B u; g = sigmoid(ℓ);
//! keep_f = 1[g_f ≥ τ] (or top-k: the k largest g, ties to the lower index); xt = x ⊙ (g ⊙ keep).
//! Saves xbar[f], u[r], g[f], keep[f] (1.0/0.0).
//! Backward (keep is a constant): ds_f = Σ_i dxt_if x_if; dg_f (input, e.g. from the sparsity term)
//! += ds_f keep_f; dℓ = dg ⊙ g(1−g); dw += dℓ; db[f,j] += dℓ_f u_j; dA[f,j] += x̄_f Σ_f' dℓ_f' B[f',j].

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GateSelect {
    /// keep g ≥ τ (τ = 0 keeps everything)
    Threshold(f32),
    /// keep the k largest gates
    TopK(usize),
}

#[allow(clippy::too_many_arguments)]
pub fn gate_fwd(
    xt: &mut [f32],
    g: &mut [f32],
    keep: &mut [f32],
    xbar: &mut [f32],
    u: &mut [f32],
    x: &[f32],
    mask: &[f32],
    w: &[f32],
    a: &[f32],
    b: &[f32],
    select: GateSelect,
    n: usize,
    f: usize,
    r: usize,
) {
    todo!()
}

/// `dg` holds the gradient already flowing into g (from the sparsity term) and is consumed.
#[allow(clippy::too_many_arguments)]
pub fn gate_bwd(
    dw: &mut [f32],
    da: &mut [f32],
    db: &mut [f32],
    dg: &mut [f32],
    dxt: &[f32],
    x: &[f32],
    xbar: &[f32],
    u: &[f32],
    g: &[f32],
    keep: &[f32],
    b: &[f32],
    n: usize,
    f: usize,
    r: usize,
) {
    todo!()
}
