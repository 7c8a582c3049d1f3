//! Launch recipe of the orthogonal-embedding loss for [`GpuBackend`] (`kernels/ortho_loss.cu`):
//! column statistics (one block per column), the Gram matrix (one block per entry of C), one f64
//! reduce read back once; the backward forms dZ = Z Ĝ, its two column sums, then dH.

use super::check;
use crate::device::Backend;
use crate::gpu::backend::{blocks_for, GpuBackend, GpuBuf, BLOCK, MAX_GRID};
use crate::gpu::params::{kernel, OrthoLossParams};
use crate::gpu::{LaunchCfg, Launcher};
use crate::ops::shape::u32_of;
use crate::{Error, Result};

fn dims(n: usize, d: usize) -> Result<(u32, u32)> {
    u32_of("n·d", n * d)?;
    u32_of("d·d", d * d)?;
    let d32 = u32_of("d", d)?;
    if d32 > 65_535 {
        return Err(Error::shape(format!(
            "ortho_loss: width {d} exceeds the grid's y limit 65535"
        )));
    }
    Ok((u32_of("n", n)?, d32))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn ortho_loss_fwd<L: Launcher>(
    be: &GpuBackend<L>,
    stats: &mut GpuBuf<L>,
    gmat: &mut GpuBuf<L>,
    h: &GpuBuf<L>,
    mask: &GpuBuf<L>,
    weight: f32,
    n: usize,
    d: usize,
) -> Result<f32> {
    check(h.len(), mask.len(), stats.len(), gmat.len(), None, n, d)?;
    let (n32, d32) = dims(n, d)?;
    if d == 0 {
        // no column: P = 0, stats stay zero (as on the CPU)
        return Ok(0.0);
    }
    let partial = be.scratch(d * d * 4)?;
    let parts = be.scratch(4)?;
    let p = OrthoLossParams {
        stats: stats.ptr(),
        gmat: gmat.ptr(),
        partial: partial.ptr(),
        parts: parts.ptr(),
        scratch: 0,
        dh: 0,
        h: h.ptr(),
        mask: mask.ptr(),
        n: n32,
        d: d32,
        weight,
        pad: 0,
    };
    // SAFETY: lengths checked above: h n·d, mask n, stats 2d+1, gmat and partial d·d, parts 1;
    // grid x = d columns, grid (d, d) entries of C.
    unsafe {
        be.go(
            kernel::ORTHO_LOSS_STATS_FWD_F32,
            LaunchCfg::linear(d32, BLOCK, 0),
            &p,
        )?;
        be.go(
            kernel::ORTHO_LOSS_GRAM_FWD_F32,
            LaunchCfg {
                grid: [d32, d32, 1],
                block: [BLOCK, 1, 1],
                shmem: 0,
            },
            &p,
        )?;
        be.go(
            kernel::ORTHO_LOSS_REDUCE_FWD_F32,
            LaunchCfg::linear(1, 32, 0),
            &p,
        )?;
    }
    Ok(be.download(&parts)?[0])
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn ortho_loss_bwd<L: Launcher>(
    be: &GpuBackend<L>,
    dh: &mut GpuBuf<L>,
    h: &GpuBuf<L>,
    mask: &GpuBuf<L>,
    stats: &GpuBuf<L>,
    gmat: &GpuBuf<L>,
    n: usize,
    d: usize,
) -> Result<()> {
    check(
        h.len(),
        mask.len(),
        stats.len(),
        gmat.len(),
        Some(dh.len()),
        n,
        d,
    )?;
    let (n32, d32) = dims(n, d)?;
    if n == 0 || d == 0 {
        return Ok(());
    }
    let scratch = be.scratch((n * d + 2 * d) * 4)?;
    let p = OrthoLossParams {
        stats: stats.ptr(),
        gmat: gmat.ptr(),
        partial: 0,
        parts: 0,
        scratch: scratch.ptr(),
        dh: dh.ptr(),
        h: h.ptr(),
        mask: mask.ptr(),
        n: n32,
        d: d32,
        weight: 0.0,
        pad: 0,
    };
    let elt = LaunchCfg::linear(blocks_for(n * d, BLOCK, MAX_GRID), BLOCK, 0);
    // SAFETY: lengths checked above: dh, h n·d, mask n, stats 2d+1, gmat d·d, scratch n·d + 2d.
    unsafe {
        be.go(kernel::ORTHO_LOSS_DZ_BWD_F32, elt, &p)?;
        be.go(
            kernel::ORTHO_LOSS_COLS_BWD_F32,
            LaunchCfg::linear(d32, BLOCK, 0),
            &p,
        )?;
        be.go(kernel::ORTHO_LOSS_BWD_F32, elt, &p)
    }
}
