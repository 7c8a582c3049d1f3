//! Launch recipe of the variable selection for [`GpuBackend`] (`kernels/vsn.cu`). Forward: a
//! softmax per row (one warp each), the masked column sum of v (`column_sum_bwd_f32`, f64), one
//! block for m, s, wsum and the selection (as the gate), then xt grid-stride. Backward: μ per
//! feature, then one warp per row.

use super::{check, threshold_on_means};
use crate::gpu::backend::{blocks_for, GpuBackend, GpuBuf, BLOCK, MAX_GRID};
use crate::gpu::params::{kernel, ColumnSumParams, VsnBwdParams, VsnParams};
use crate::gpu::{LaunchCfg, Launcher};
use crate::ops::gate::select::GateSelect;
use crate::ops::linear::gpu::column_sum;
use crate::ops::shape::{expect_len, u32_of};
use crate::Result;

/// Rows per block of the row kernels (one warp per row).
const ROWS_PER_BLOCK: u32 = BLOCK / 32;

#[allow(clippy::too_many_arguments)]
pub(crate) fn vsn_fwd<L: Launcher>(
    be: &GpuBackend<L>,
    xt: &mut GpuBuf<L>,
    v: &mut GpuBuf<L>,
    m: &mut GpuBuf<L>,
    keep: &mut GpuBuf<L>,
    s: &mut GpuBuf<L>,
    wsum: &mut GpuBuf<L>,
    z: &GpuBuf<L>,
    x: &GpuBuf<L>,
    mask: &GpuBuf<L>,
    select: GateSelect,
    n: usize,
    f: usize,
) -> Result<()> {
    check(
        xt.len(),
        v.len(),
        m.len(),
        keep.len(),
        s.len(),
        wsum.len(),
        z.len(),
        x.len(),
        mask.len(),
        n,
        f,
    )?;
    let (n32, f32_) = (u32_of("n", n)?, u32_of("F", f)?);
    u32_of("n·F", n * f)?;
    let (mode, tau_f, topk) = match threshold_on_means(select, f) {
        GateSelect::Threshold(t) => (0, t, 0),
        GateSelect::TopK(k) => (1, 0.0, u32::try_from(k).unwrap_or(u32::MAX)),
    };
    let work = be.scratch(f.max(1) * 8)?;
    let p = VsnParams {
        v: v.ptr(),
        xt: xt.ptr(),
        m: m.ptr(),
        keep: keep.ptr(),
        s: s.ptr(),
        wsum: wsum.ptr(),
        work: work.ptr(),
        z: z.ptr(),
        x: x.ptr(),
        mask: mask.ptr(),
        n: n32,
        f: f32_,
        mode,
        tau_f,
        topk,
        pad: 0,
    };
    let cs = ColumnSumParams {
        out_f32: 0,
        out_f64: work.ptr(),
        a: v.ptr(),
        b: 0,
        rowmask: mask.ptr(),
        n: n32,
        cols: f32_,
    };
    let rows = LaunchCfg::linear(blocks_for(n, ROWS_PER_BLOCK, MAX_GRID), BLOCK, 0);
    // SAFETY: lengths checked above; work holds F doubles; the row kernels touch rows < n.
    unsafe {
        if n > 0 && f > 0 {
            be.go(kernel::VSN_SOFTMAX_FWD_F32, rows, &p)?;
            column_sum(be, cs)?;
        }
        be.go(
            kernel::VSN_SELECT_FWD_F32,
            LaunchCfg::linear(1, BLOCK, 0),
            &p,
        )?;
        if n > 0 && f > 0 {
            let cfg = LaunchCfg::linear(blocks_for(n * f, BLOCK, MAX_GRID), BLOCK, 0);
            be.go(kernel::VSN_APPLY_FWD_F32, cfg, &p)?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn vsn_bwd<L: Launcher>(
    be: &GpuBackend<L>,
    dz: &mut GpuBuf<L>,
    dxt: &GpuBuf<L>,
    dm: &GpuBuf<L>,
    ds: &GpuBuf<L>,
    x: &GpuBuf<L>,
    v: &GpuBuf<L>,
    m: &GpuBuf<L>,
    keep: &GpuBuf<L>,
    mask: &GpuBuf<L>,
    wsum: &GpuBuf<L>,
    n: usize,
    f: usize,
) -> Result<()> {
    check(
        dxt.len(),
        v.len(),
        m.len(),
        keep.len(),
        ds.len(),
        wsum.len(),
        dz.len(),
        x.len(),
        mask.len(),
        n,
        f,
    )?;
    expect_len("vsn_bwd", "dm", dm.len(), f)?;
    if n == 0 || f == 0 {
        return Ok(());
    }
    let (n32, f32_) = (u32_of("n", n)?, u32_of("F", f)?);
    u32_of("n·F", n * f)?;
    let work = be.scratch(f * 8)?;
    let p = VsnBwdParams {
        dz: dz.ptr(),
        work: work.ptr(),
        dxt: dxt.ptr(),
        dm: dm.ptr(),
        ds: ds.ptr(),
        x: x.ptr(),
        v: v.ptr(),
        m: m.ptr(),
        keep: keep.ptr(),
        mask: mask.ptr(),
        wsum: wsum.ptr(),
        n: n32,
        f: f32_,
    };
    let feats = LaunchCfg::linear(blocks_for(f, BLOCK, MAX_GRID), BLOCK, 0);
    let rows = LaunchCfg::linear(blocks_for(n, ROWS_PER_BLOCK, MAX_GRID), BLOCK, 0);
    // SAFETY: lengths checked above; work holds F doubles.
    unsafe {
        be.go(kernel::VSN_DM_BWD_F32, feats, &p)?;
        be.go(kernel::VSN_ROWS_BWD_F32, rows, &p)
    }
}
