//! Masked multi-head attention, fused: never materialises an n × n matrix.
//! q, k, v, out: [n, d]; head k owns columns [k·dh, (k+1)·dh).
//!
//! Linear (SPEC §3): φ = elu + 1, S = Σ_j m_j φ(K_j) V_jᵀ [dh,dh], z = Σ_j m_j φ(K_j) [dh],
//! O_i = φ(Q_i)ᵀ S / (φ(Q_i)ᵀ z + eps). Saves s[h·dh·dh] and z[h·dh].
//! Softmax: O_i = Σ_j m_j softmax_j(Q_i·K_j/√dh) V_j (online softmax); saves lse[h·n].

pub const ATTN_EPS: f32 = 1e-6;

#[allow(clippy::too_many_arguments)]
pub fn linear_attention_fwd(
    out: &mut [f32],
    s: &mut [f32],
    z: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    n: usize,
    d: usize,
    h: usize,
) {
    todo!()
}

#[allow(clippy::too_many_arguments)]
pub fn linear_attention_bwd(
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    s: &[f32],
    z: &[f32],
    n: usize,
    d: usize,
    h: usize,
) {
    todo!()
}

#[allow(clippy::too_many_arguments)]
pub fn softmax_attention_fwd(
    out: &mut [f32],
    lse: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    n: usize,
    d: usize,
    h: usize,
) {
    todo!()
}

#[allow(clippy::too_many_arguments)]
pub fn softmax_attention_bwd(
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    dout: &[f32],
    out: &[f32],
    lse: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    n: usize,
    d: usize,
    h: usize,
) {
    todo!()
}
