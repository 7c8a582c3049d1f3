//! Launch recipe of the loss for [`GpuBackend`] (`kernels/loss.cu`): per-block partial sums and
//! an ordered second pass; the backward reads the count of scored targets on the device.

use super::LossParts;
use crate::gpu::backend::{blocks_for, GpuBackend, GpuBuf, BLOCK, MAX_GRID, MAX_REDUCE_BLOCKS};
use crate::gpu::params::{kernel, LossBwdParams, LossFwdParams, LossReduceParams};
use crate::gpu::{LaunchCfg, Launcher};
use crate::ops::shape::{expect_len, u32_of};
use crate::Result;

/// Loss partial sums into a fresh `parts` buffer (loss, mse, sparsity, count) on the device.
#[allow(clippy::too_many_arguments)]
pub(crate) fn loss_parts<L: Launcher>(
    be: &GpuBackend<L>,
    yhat: &GpuBuf<L>,
    y: &GpuBuf<L>,
    mask: &GpuBuf<L>,
    g: &GpuBuf<L>,
    lambda: f32,
    n: usize,
    t: usize,
) -> Result<GpuBuf<L>> {
    let op = "mse_sparsity";
    expect_len(op, "yhat", yhat.len(), n * t)?;
    expect_len(op, "y", y.len(), n * t)?;
    expect_len(op, "mask", mask.len(), n)?;
    let f = g.len();
    let blocks = blocks_for((n * t).max(f), BLOCK, MAX_REDUCE_BLOCKS);
    let partial = be.scratch(blocks as usize * 3 * 4)?;
    let parts = be.scratch(4 * 4)?;
    let p1 = LossFwdParams {
        partial: partial.ptr(),
        yhat: yhat.ptr(),
        y: y.ptr(),
        mask: mask.ptr(),
        g: g.ptr(),
        n: u32_of("n", n)?,
        t: u32_of("t", t)?,
        f: u32_of("f", f)?,
        pad: 0,
    };
    u32_of("n·t", n * t)?;
    let p2 = LossReduceParams {
        parts: parts.ptr(),
        partial: partial.ptr(),
        blocks,
        f: p1.f,
        lambda,
        pad: 0,
    };
    // SAFETY: lengths checked above; partial holds `blocks` triples, parts 4 floats.
    unsafe {
        be.go(
            kernel::MSE_SPARSITY_FWD_F32,
            LaunchCfg::linear(blocks, BLOCK, 0),
            &p1,
        )?;
        be.go(
            kernel::MSE_SPARSITY_REDUCE_FWD_F32,
            LaunchCfg::linear(1, 32, 0),
            &p2,
        )?;
    }
    Ok(parts)
}

/// The loss parts, with the gate values `g` and every buffer of `also` read back in the same host
/// wait (the step's one read-back): each host copy is kept for the next download of its buffer.
#[allow(clippy::too_many_arguments)]
pub(crate) fn mse_sparsity_fwd<L: Launcher>(
    be: &GpuBackend<L>,
    yhat: &GpuBuf<L>,
    y: &GpuBuf<L>,
    mask: &GpuBuf<L>,
    g: &GpuBuf<L>,
    lambda: f32,
    n: usize,
    t: usize,
    also: &[&GpuBuf<L>],
) -> Result<LossParts> {
    let parts = loss_parts(be, yhat, y, mask, g, lambda, n, t)?;
    let mut bufs = vec![&parts, g];
    bufs.extend_from_slice(also);
    let mut back = be.read_back(&bufs)?.into_iter();
    let v = back.next().unwrap_or_default();
    for (buf, host) in bufs[1..].iter().zip(back) {
        be.stash(buf, host);
    }
    if v.len() < 4 {
        return Err(crate::Error::device("loss parts: short read-back"));
    }
    Ok(LossParts {
        loss: v[0],
        mse: v[1],
        sparsity: v[2],
        count: v[3],
        ortho: 0.0,
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn mse_sparsity_bwd<L: Launcher>(
    be: &GpuBackend<L>,
    dyhat: &mut GpuBuf<L>,
    dg: &mut GpuBuf<L>,
    yhat: &GpuBuf<L>,
    y: &GpuBuf<L>,
    mask: &GpuBuf<L>,
    lambda: f32,
    n: usize,
    t: usize,
) -> Result<()> {
    expect_len("mse_sparsity_bwd", "dyhat", dyhat.len(), n * t)?;
    let f = dg.len();
    // the count of scored targets stays on the device: no host round trip
    let parts = loss_parts(be, yhat, y, mask, dg, lambda, n, t)?;
    let len = (n * t).max(f);
    if len == 0 {
        return Ok(());
    }
    let p = LossBwdParams {
        dyhat: dyhat.ptr(),
        dg: dg.ptr(),
        yhat: yhat.ptr(),
        y: y.ptr(),
        mask: mask.ptr(),
        parts: parts.ptr(),
        n: u32_of("n", n)?,
        t: u32_of("t", t)?,
        f: u32_of("f", f)?,
        lambda,
    };
    let cfg = LaunchCfg::linear(blocks_for(len, BLOCK, MAX_GRID), BLOCK, 0);
    // SAFETY: lengths checked in loss_parts and above.
    unsafe { be.go(kernel::MSE_SPARSITY_BWD_F32, cfg, &p) }
}
