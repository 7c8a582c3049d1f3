//! Launch recipe of the column scale for [`GpuBackend`] (`kernels/col_scale.cu`): the forward
//! grid-strides over m·k; the backward runs one thread per column (k = F threads, each summing its
//! m = d rows in order), so dg's sums have a fixed order on every launch.

use super::{check, check_bwd};
use crate::gpu::backend::{blocks_for, GpuBackend, GpuBuf, BLOCK, MAX_GRID};
use crate::gpu::params::{kernel, ColScaleParams};
use crate::gpu::{LaunchCfg, Launcher};
use crate::ops::shape::u32_of;
use crate::Result;

pub(crate) fn col_scale_fwd<L: Launcher>(
    be: &GpuBackend<L>,
    out: &mut GpuBuf<L>,
    w: &GpuBuf<L>,
    g: &GpuBuf<L>,
    keep: &GpuBuf<L>,
    m: usize,
    k: usize,
) -> Result<()> {
    check(
        "col_scale_fwd",
        out.len(),
        w.len(),
        g.len(),
        keep.len(),
        m,
        k,
    )?;
    let len = m * k;
    if len == 0 {
        return Ok(());
    }
    u32_of("m·k", len)?;
    let p = ColScaleParams {
        out: out.ptr(),
        dg: 0,
        dout: 0,
        w: w.ptr(),
        g: g.ptr(),
        keep: keep.ptr(),
        m: u32_of("m", m)?,
        k: u32_of("k", k)?,
    };
    let cfg = LaunchCfg::linear(blocks_for(len, BLOCK, MAX_GRID), BLOCK, 0);
    // SAFETY: lengths checked above; the kernel touches [0, m·k) of out/w and [0, k) of g/keep.
    unsafe { be.go(kernel::COL_SCALE_FWD_F32, cfg, &p) }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn col_scale_bwd<L: Launcher>(
    be: &GpuBackend<L>,
    dw: &mut GpuBuf<L>,
    dg: &mut GpuBuf<L>,
    dout: &GpuBuf<L>,
    w: &GpuBuf<L>,
    g: &GpuBuf<L>,
    keep: &GpuBuf<L>,
    m: usize,
    k: usize,
) -> Result<()> {
    let (gl, kl) = (g.len(), keep.len());
    check_bwd(dw.len(), dg.len(), dout.len(), w.len(), gl, kl, m, k)?;
    if m * k == 0 {
        return Ok(());
    }
    u32_of("m·k", m * k)?;
    let p = ColScaleParams {
        out: dw.ptr(),
        dg: dg.ptr(),
        dout: dout.ptr(),
        w: w.ptr(),
        g: g.ptr(),
        keep: keep.ptr(),
        m: u32_of("m", m)?,
        k: u32_of("k", k)?,
    };
    let cfg = LaunchCfg::linear(blocks_for(k, BLOCK, MAX_GRID), BLOCK, 0);
    // SAFETY: lengths checked above; each thread touches column c < k of dw/dout/w (m rows) and
    // element c of dg/g/keep.
    unsafe { be.go(kernel::COL_SCALE_BWD_F32, cfg, &p) }
}
