//! Softmax (cross-)attention forward and backward on a device, for comparisons with the CPU.

use eraengine::device::Backend;

/// Runs the forward (out and lse start as 3.0: every value must be written) and the backward
/// (gradients start from g0 = dq | dk | dv and are added to); returns out, lse, dq, dk, dv.
#[allow(clippy::too_many_arguments)]
pub fn cross_run<B: Backend>(
    dev: &B,
    (nq, nk, d, h): (usize, usize, usize, usize),
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[f32],
    dout: &[f32],
    g0: &[f32],
) -> eraengine::Result<[Vec<f32>; 5]> {
    let (qb, kb, vb, mb) = (
        dev.upload(q)?,
        dev.upload(k)?,
        dev.upload(v)?,
        dev.upload(mask)?,
    );
    let mut out = dev.upload(&vec![3.0; nq * d])?;
    let mut lse = dev.upload(&vec![3.0; h * nq])?;
    dev.softmax_attention_fwd(&mut out, &mut lse, &qb, &kb, &vb, &mb, nq, nk, d, h)?;
    let dy = dev.upload(dout)?;
    let mut dq = dev.upload(&g0[..nq * d])?;
    let mut dk = dev.upload(&g0[nq * d..(nq + nk) * d])?;
    let mut dv = dev.upload(&g0[(nq + nk) * d..])?;
    dev.softmax_attention_bwd(
        &mut dq, &mut dk, &mut dv, &dy, &out, &lse, &qb, &kb, &vb, &mb, nq, nk, d, h,
    )?;
    Ok([
        dev.download(&out)?,
        dev.download(&lse)?,
        dev.download(&dq)?,
        dev.download(&dk)?,
        dev.download(&dv)?,
    ])
}
