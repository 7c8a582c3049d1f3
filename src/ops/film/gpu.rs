//! Launch recipe of FiLM for [`GpuBackend`] (`kernels/film.cu`): elementwise forward and input
//! gradient; dγ = Σ_i dout·inp and dβ = Σ_i dout through the column-sum kernel of the linear op.

use super::check;
use crate::gpu::backend::{blocks_for, GpuBackend, GpuBuf, BLOCK, MAX_GRID};
use crate::gpu::params::{kernel, ColumnSumParams, FilmParams};
use crate::gpu::{LaunchCfg, Launcher};
use crate::ops::linear::gpu::column_sum;
use crate::ops::shape::{expect_len, u32_of};
use crate::Result;

pub(crate) fn film_fwd<L: Launcher>(
    be: &GpuBackend<L>,
    out: &mut GpuBuf<L>,
    inp: &GpuBuf<L>,
    gamma: &GpuBuf<L>,
    beta: &GpuBuf<L>,
    n: usize,
    d: usize,
) -> Result<()> {
    check(out.len(), inp.len(), gamma.len(), beta.len(), n, d)?;
    let len = n * d;
    if len == 0 {
        return Ok(());
    }
    let p = FilmParams {
        out: out.ptr(),
        inp: inp.ptr(),
        gamma: gamma.ptr(),
        beta: beta.ptr(),
        n: u32_of("n", n)?,
        d: u32_of("d", d)?,
    };
    let cfg = LaunchCfg::linear(blocks_for(len, BLOCK, MAX_GRID), BLOCK, 0);
    // SAFETY: lengths checked above; the kernel touches [0, n·d) of out/inp and d of gamma/beta.
    unsafe { be.go(kernel::FILM_FWD_F32, cfg, &p) }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn film_bwd<L: Launcher>(
    be: &GpuBackend<L>,
    dinp: &mut GpuBuf<L>,
    dgamma: &mut GpuBuf<L>,
    dbeta: &mut GpuBuf<L>,
    dout: &GpuBuf<L>,
    inp: &GpuBuf<L>,
    gamma: &GpuBuf<L>,
    n: usize,
    d: usize,
) -> Result<()> {
    check(dinp.len(), inp.len(), gamma.len(), dgamma.len(), n, d)?;
    expect_len("film_bwd", "dout", dout.len(), n * d)?;
    expect_len("film_bwd", "dbeta", dbeta.len(), d)?;
    let len = n * d;
    if len == 0 {
        return Ok(());
    }
    let (n32, d32) = (u32_of("n", n)?, u32_of("d", d)?);
    let p = FilmParams {
        out: dinp.ptr(),
        inp: dout.ptr(),
        gamma: gamma.ptr(),
        beta: 0,
        n: n32,
        d: d32,
    };
    let cfg = LaunchCfg::linear(blocks_for(len, BLOCK, MAX_GRID), BLOCK, 0);
    let sum = |out: u64, b: u64| ColumnSumParams {
        out_f32: out,
        out_f64: 0,
        a: dout.ptr(),
        b,
        rowmask: 0,
        n: n32,
        cols: d32,
    };
    // SAFETY: lengths checked above; dinp/dout/inp hold n·d floats, gamma/dgamma/dbeta d.
    unsafe {
        be.go(kernel::FILM_BWD_F32, cfg, &p)?;
        column_sum(be, sum(dgamma.ptr(), inp.ptr()))?;
        column_sum(be, sum(dbeta.ptr(), 0))
    }
}
