//! Launch recipe of the GLU for [`GpuBackend`] (`kernels/glu.cu`): grid-stride over n·m.

use super::check;
use crate::gpu::backend::{blocks_for, GpuBackend, GpuBuf, BLOCK, MAX_GRID};
use crate::gpu::params::{kernel, GluParams};
use crate::gpu::{LaunchCfg, Launcher};
use crate::ops::shape::{expect_len, u32_of};
use crate::Result;

pub(crate) fn glu_fwd<L: Launcher>(
    be: &GpuBackend<L>,
    out: &mut GpuBuf<L>,
    a: &GpuBuf<L>,
    b: &GpuBuf<L>,
    n: usize,
    m: usize,
) -> Result<()> {
    check(out.len(), a.len(), b.len(), n, m)?;
    let len = n * m;
    if len == 0 {
        return Ok(());
    }
    let p = GluParams {
        out: out.ptr(),
        out2: 0,
        a: a.ptr(),
        b: b.ptr(),
        dout: 0,
        n: u32_of("n·m", len)?,
        pad: 0,
    };
    let cfg = LaunchCfg::linear(blocks_for(len, BLOCK, MAX_GRID), BLOCK, 0);
    // SAFETY: lengths checked above; the kernel touches [0, n·m) of out, a, b.
    unsafe { be.go(kernel::GLU_FWD_F32, cfg, &p) }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn glu_bwd<L: Launcher>(
    be: &GpuBackend<L>,
    da: &mut GpuBuf<L>,
    db: &mut GpuBuf<L>,
    dout: &GpuBuf<L>,
    a: &GpuBuf<L>,
    b: &GpuBuf<L>,
    n: usize,
    m: usize,
) -> Result<()> {
    check(da.len(), a.len(), b.len(), n, m)?;
    expect_len("glu_bwd", "db", db.len(), n * m)?;
    expect_len("glu_bwd", "dout", dout.len(), n * m)?;
    let len = n * m;
    if len == 0 {
        return Ok(());
    }
    let p = GluParams {
        out: da.ptr(),
        out2: db.ptr(),
        a: a.ptr(),
        b: b.ptr(),
        dout: dout.ptr(),
        n: u32_of("n·m", len)?,
        pad: 0,
    };
    let cfg = LaunchCfg::linear(blocks_for(len, BLOCK, MAX_GRID), BLOCK, 0);
    // SAFETY: lengths checked above; the kernel touches [0, n·m) of every buffer.
    unsafe { be.go(kernel::GLU_BWD_F32, cfg, &p) }
}
