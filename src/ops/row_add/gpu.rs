//! Launch recipe of the row-broadcast add for [`GpuBackend`] (`kernels/row_add.cu`): the forward
//! grid-strides over n·m; the backward is `accumulate_fwd_f32` (dx += dout) and the column sum of
//! the linear op (dr += Σ_i dout, f64).

use super::check;
use crate::gpu::backend::{blocks_for, GpuBackend, GpuBuf, BLOCK, MAX_GRID};
use crate::gpu::params::{kernel, ColumnSumParams, RowAddParams};
use crate::gpu::{LaunchCfg, Launcher};
use crate::ops::elementwise::gpu::elementwise;
use crate::ops::linear::gpu::column_sum;
use crate::ops::shape::{expect_len, u32_of};
use crate::Result;

pub(crate) fn row_add_fwd<L: Launcher>(
    be: &GpuBackend<L>,
    out: &mut GpuBuf<L>,
    x: &GpuBuf<L>,
    r: &GpuBuf<L>,
    n: usize,
    m: usize,
) -> Result<()> {
    check(out.len(), x.len(), r.len(), n, m)?;
    let len = n * m;
    if len == 0 {
        return Ok(());
    }
    u32_of("n·m", len)?;
    let p = RowAddParams {
        out: out.ptr(),
        x: x.ptr(),
        r: r.ptr(),
        n: u32_of("n", n)?,
        m: u32_of("m", m)?,
    };
    let cfg = LaunchCfg::linear(blocks_for(len, BLOCK, MAX_GRID), BLOCK, 0);
    // SAFETY: lengths checked above; the kernel touches [0, n·m) of out/x and [0, m) of r.
    unsafe { be.go(kernel::ROW_ADD_FWD_F32, cfg, &p) }
}

pub(crate) fn row_add_bwd<L: Launcher>(
    be: &GpuBackend<L>,
    dx: Option<&mut GpuBuf<L>>,
    dr: &mut GpuBuf<L>,
    dout: &GpuBuf<L>,
    n: usize,
    m: usize,
) -> Result<()> {
    check(dout.len(), dout.len(), dr.len(), n, m)?;
    if let Some(dx) = &dx {
        expect_len("row_add_bwd", "dx", dx.len(), n * m)?;
    }
    if n == 0 || m == 0 {
        return Ok(());
    }
    if let Some(dx) = dx {
        elementwise(be, kernel::ACCUMULATE_FWD_F32, dx, dout, None)?;
    }
    let p = ColumnSumParams {
        out_f32: dr.ptr(),
        out_f64: 0,
        a: dout.ptr(),
        b: 0,
        rowmask: 0,
        n: u32_of("n", n)?,
        cols: u32_of("m", m)?,
    };
    // SAFETY: dout holds n·m floats, dr m (checked above).
    unsafe { column_sum(be, p) }
}
