//! Launch recipe of the mask fill for [`GpuBackend`] (`kernels/mask_fill.cu`): elementwise forward
//! and input gradient; dmv = Σ_i fill·dout through the column-sum kernel of the linear op.

use super::check;
use crate::gpu::backend::{blocks_for, GpuBackend, GpuBuf, BLOCK, MAX_GRID};
use crate::gpu::params::{kernel, ColumnSumParams, MaskFillParams};
use crate::gpu::{LaunchCfg, Launcher};
use crate::ops::linear::gpu::column_sum;
use crate::ops::shape::u32_of;
use crate::Result;

pub(crate) fn mask_fill_fwd<L: Launcher>(
    be: &GpuBackend<L>,
    out: &mut GpuBuf<L>,
    x: &GpuBuf<L>,
    fill: &GpuBuf<L>,
    mv: &GpuBuf<L>,
    n: usize,
    f: usize,
) -> Result<()> {
    check(out.len(), x.len(), fill.len(), mv.len(), n, f)?;
    let len = n * f;
    if len == 0 {
        return Ok(());
    }
    u32_of("n·f", len)?;
    let p = MaskFillParams {
        out: out.ptr(),
        x: x.ptr(),
        fill: fill.ptr(),
        mv: mv.ptr(),
        n: u32_of("n", n)?,
        f: u32_of("f", f)?,
    };
    let cfg = LaunchCfg::linear(blocks_for(len, BLOCK, MAX_GRID), BLOCK, 0);
    // SAFETY: lengths checked above; the kernel touches [0, n·f) of out/x/fill and f of mv.
    unsafe { be.go(kernel::MASK_FILL_FWD_F32, cfg, &p) }
}

pub(crate) fn mask_fill_bwd<L: Launcher>(
    be: &GpuBackend<L>,
    dx: Option<&mut GpuBuf<L>>,
    dmv: &mut GpuBuf<L>,
    dout: &GpuBuf<L>,
    fill: &GpuBuf<L>,
    n: usize,
    f: usize,
) -> Result<()> {
    let len = n * f;
    check(
        dout.len(),
        dx.as_ref().map_or(len, |b| b.len()),
        fill.len(),
        dmv.len(),
        n,
        f,
    )?;
    if len == 0 {
        return Ok(());
    }
    let (n32, f32_) = (u32_of("n", n)?, u32_of("f", f)?);
    u32_of("n·f", len)?;
    if let Some(dx) = dx {
        let p = MaskFillParams {
            out: dx.ptr(),
            x: dout.ptr(),
            fill: fill.ptr(),
            mv: 0,
            n: n32,
            f: f32_,
        };
        let cfg = LaunchCfg::linear(blocks_for(len, BLOCK, MAX_GRID), BLOCK, 0);
        // SAFETY: lengths checked above; dx, dout, fill hold n·f floats.
        unsafe { be.go(kernel::MASK_FILL_BWD_F32, cfg, &p)? };
    }
    let s = ColumnSumParams {
        out_f32: dmv.ptr(),
        out_f64: 0,
        a: dout.ptr(),
        b: fill.ptr(),
        rowmask: 0,
        n: n32,
        cols: f32_,
    };
    // SAFETY: dout and fill hold n·f floats, dmv f.
    unsafe { column_sum(be, s) }
}
