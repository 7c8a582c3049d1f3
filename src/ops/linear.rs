//! Linear map (GEMM with bias), PyTorch `nn.Linear` layout.
//! out[n,m] = inp[n,k] · w[m,k]ᵀ + b[m].
//! Backward: dinp[n,k] += dout · w; dw[m,k] += doutᵀ · inp; db[m] += Σ_rows dout.

pub fn linear_fwd(
    out: &mut [f32],
    inp: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    n: usize,
    k: usize,
    m: usize,
) {
    todo!()
}

#[allow(clippy::too_many_arguments)]
pub fn linear_bwd(
    dinp: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    dout: &[f32],
    inp: &[f32],
    w: &[f32],
    n: usize,
    k: usize,
    m: usize,
) {
    todo!()
}
