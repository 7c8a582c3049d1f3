//! Launch recipe of the correlation loss for [`GpuBackend`] (`kernels/corr_loss.cu`): two passes
//! over the rows (means, then centred moments) with per-block partials per target column, reduced
//! in f64 in a fixed order; the forward leaves (corr, K) on the device (read back with the loss in
//! training), the backward is elementwise.

use super::{check, CorrParts, CORR_STATS};
use crate::device::Backend;
use crate::gpu::backend::{blocks_for, GpuBackend, GpuBuf, BLOCK, MAX_GRID, MAX_REDUCE_BLOCKS};
use crate::gpu::params::{kernel, CorrLossParams};
use crate::gpu::{LaunchCfg, Launcher};
use crate::ops::shape::{expect_len, u32_of};
use crate::Result;

/// Grid (blocks, t) over the rows, one column of targets per blockIdx.y.
fn per_column(blocks: u32, t: u32) -> LaunchCfg {
    LaunchCfg {
        grid: [blocks, t, 1],
        block: [BLOCK, 1, 1],
        shmem: 0,
    }
}

pub(crate) fn corr_loss_fwd<L: Launcher>(
    be: &GpuBackend<L>,
    stats: &mut GpuBuf<L>,
    yhat: &GpuBuf<L>,
    y: &GpuBuf<L>,
    mask: &GpuBuf<L>,
    n: usize,
    t: usize,
) -> Result<CorrParts> {
    let mut parts = be.scratch(2 * 4)?;
    corr_loss_fwd_dev(be, stats, &mut parts, yhat, y, mask, n, t)?;
    let v = be.download(&parts)?;
    Ok(CorrParts {
        corr: v[0],
        heads: v[1],
    })
}

/// The forward with (corr, K) left in `parts` [2] on the device (no host wait).
#[allow(clippy::too_many_arguments)]
pub(crate) fn corr_loss_fwd_dev<L: Launcher>(
    be: &GpuBackend<L>,
    stats: &mut GpuBuf<L>,
    parts: &mut GpuBuf<L>,
    yhat: &GpuBuf<L>,
    y: &GpuBuf<L>,
    mask: &GpuBuf<L>,
    n: usize,
    t: usize,
) -> Result<()> {
    check(yhat.len(), y.len(), mask.len(), stats.len(), None, n, t)?;
    expect_len("corr_loss", "parts", parts.len(), 2)?;
    if t == 0 {
        return be.fill_zero(parts);
    }
    let blocks = blocks_for(n.max(1), BLOCK, MAX_REDUCE_BLOCKS);
    let t32 = u32_of("t", t)?;
    if t32 > 65_535 {
        return Err(crate::Error::shape(format!(
            "corr_loss: {t} target columns exceed the grid's y limit 65535"
        )));
    }
    u32_of("n·t", n * t)?;
    let partial = be.scratch(blocks as usize * t * 3 * 4)?;
    let p = CorrLossParams {
        partial: partial.ptr(),
        stats: stats.ptr(),
        parts: parts.ptr(),
        dyhat: 0,
        yhat: yhat.ptr(),
        y: y.ptr(),
        mask: mask.ptr(),
        n: u32_of("n", n)?,
        t: t32,
        blocks,
        weight: 0.0,
    };
    // SAFETY: lengths checked above; partial holds t·blocks triples, stats t·4 floats, parts 2.
    unsafe {
        be.go(kernel::CORR_LOSS_SUMS_FWD_F32, per_column(blocks, t32), &p)?;
        be.go(
            kernel::CORR_LOSS_MEANS_FWD_F32,
            LaunchCfg {
                grid: [1, t32, 1],
                block: [32, 1, 1],
                shmem: 0,
            },
            &p,
        )?;
        be.go(
            kernel::CORR_LOSS_MOMENTS_FWD_F32,
            per_column(blocks, t32),
            &p,
        )?;
        be.go(
            kernel::CORR_LOSS_REDUCE_FWD_F32,
            LaunchCfg::linear(1, 32, 0),
            &p,
        )?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn corr_loss_bwd<L: Launcher>(
    be: &GpuBackend<L>,
    dyhat: &mut GpuBuf<L>,
    yhat: &GpuBuf<L>,
    y: &GpuBuf<L>,
    mask: &GpuBuf<L>,
    stats: &GpuBuf<L>,
    weight: f32,
    n: usize,
    t: usize,
) -> Result<()> {
    check(
        yhat.len(),
        y.len(),
        mask.len(),
        stats.len(),
        Some(dyhat.len()),
        n,
        t,
    )?;
    let len = n * t;
    if len == 0 {
        return Ok(());
    }
    debug_assert_eq!(stats.len(), t * CORR_STATS);
    let p = CorrLossParams {
        partial: 0,
        stats: stats.ptr(),
        parts: 0,
        dyhat: dyhat.ptr(),
        yhat: yhat.ptr(),
        y: y.ptr(),
        mask: mask.ptr(),
        n: u32_of("n", n)?,
        t: u32_of("t", t)?,
        blocks: 0,
        weight,
    };
    let cfg = LaunchCfg::linear(blocks_for(len, BLOCK, MAX_GRID), BLOCK, 0);
    // SAFETY: lengths checked above; the kernel touches [0, n·t) of dyhat/yhat/y, n of mask, t·4
    // of stats.
    unsafe { be.go(kernel::CORR_LOSS_BWD_F32, cfg, &p) }
}
