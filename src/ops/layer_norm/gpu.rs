//! Launch recipe of layer norm for [`GpuBackend`] (`kernels/layer_norm.cu`): one warp per row
//! forward; backward per-block partial dγ/dβ in shared memory, then an ordered second pass.

use super::{check_bwd, check_fwd};
use crate::gpu::backend::{
    blocks_for, GpuBackend, GpuBuf, BLOCK, MAX_DYN_SHARED, MAX_REDUCE_BLOCKS,
};
use crate::gpu::params::{
    kernel, LayerNormBwdParams, LayerNormFwdParams, LayerNormParamsBwdParams,
};
use crate::gpu::{LaunchCfg, Launcher};
use crate::ops::shape::u32_of;
use crate::{Error, Result};

#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm_fwd<L: Launcher>(
    be: &GpuBackend<L>,
    out: &mut GpuBuf<L>,
    mean: &mut GpuBuf<L>,
    rstd: &mut GpuBuf<L>,
    inp: &GpuBuf<L>,
    gamma: &GpuBuf<L>,
    beta: &GpuBuf<L>,
    n: usize,
    d: usize,
) -> Result<()> {
    check_fwd(
        out.len(),
        mean.len(),
        rstd.len(),
        inp.len(),
        gamma.len(),
        beta.len(),
        n,
        d,
    )?;
    if n == 0 || d == 0 {
        return Ok(());
    }
    let p = LayerNormFwdParams {
        out: out.ptr(),
        mean: mean.ptr(),
        rstd: rstd.ptr(),
        inp: inp.ptr(),
        gamma: gamma.ptr(),
        beta: beta.ptr(),
        n: u32_of("n", n)?,
        d: u32_of("d", d)?,
    };
    u32_of("n·d", n * d)?;
    let warps = BLOCK / 32;
    let cfg = LaunchCfg::linear(n.div_ceil(warps as usize) as u32, BLOCK, 0);
    // SAFETY: lengths checked above; one warp per row.
    unsafe { be.go(kernel::LAYER_NORM_FWD_F32, cfg, &p) }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm_bwd<L: Launcher>(
    be: &GpuBackend<L>,
    dinp: &mut GpuBuf<L>,
    dgamma: &mut GpuBuf<L>,
    dbeta: &mut GpuBuf<L>,
    dout: &GpuBuf<L>,
    inp: &GpuBuf<L>,
    mean: &GpuBuf<L>,
    rstd: &GpuBuf<L>,
    gamma: &GpuBuf<L>,
    n: usize,
    d: usize,
) -> Result<()> {
    let op = "layer_norm_bwd";
    check_bwd(
        dinp.len(),
        dgamma.len(),
        dbeta.len(),
        dout.len(),
        inp.len(),
        mean.len(),
        rstd.len(),
        gamma.len(),
        n,
        d,
    )?;
    if n == 0 || d == 0 {
        return Ok(());
    }
    // each warp keeps 2d floats of dγ/dβ in shared memory
    let warps = (MAX_DYN_SHARED / (8 * d)).min(8);
    if warps == 0 {
        return Err(Error::shape(format!(
            "{op}: d = {d} needs more shared memory than a block has"
        )));
    }
    let blocks = blocks_for(n, warps as u32, MAX_REDUCE_BLOCKS);
    let partial = be.scratch(blocks as usize * 2 * d * 4)?;
    let p1 = LayerNormBwdParams {
        dinp: dinp.ptr(),
        partial: partial.ptr(),
        dout: dout.ptr(),
        inp: inp.ptr(),
        mean: mean.ptr(),
        rstd: rstd.ptr(),
        gamma: gamma.ptr(),
        n: u32_of("n", n)?,
        d: u32_of("d", d)?,
    };
    u32_of("n·d", n * d)?;
    let p2 = LayerNormParamsBwdParams {
        dgamma: dgamma.ptr(),
        dbeta: dbeta.ptr(),
        partial: partial.ptr(),
        blocks,
        d: p1.d,
    };
    let shmem = (warps * 8 * d) as u32;
    // SAFETY: lengths checked above; partial holds blocks·2d floats.
    unsafe {
        be.go(
            kernel::LAYER_NORM_BWD_F32,
            LaunchCfg::linear(blocks, warps as u32 * 32, shmem),
            &p1,
        )?;
        be.go(
            kernel::LAYER_NORM_PARAMS_BWD_F32,
            LaunchCfg::linear(blocks_for(d, BLOCK, u32::MAX), BLOCK, 0),
            &p2,
        )
    }
}
