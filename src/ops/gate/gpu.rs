//! Launch recipe of the feature gate for [`GpuBackend`] (`kernels/gate.cu`): a column sum over
//! rows, then a block per 256 features for x̄ and partials of u, the same blocks for ℓ and g, a
//! warp per feature for the top-k ranks, then the gate is applied to every row. The backward: the
//! column sum, a block per 256 features for dℓ and partials of du, then dA and dB.

use super::GateSelect;
use crate::gpu::backend::{blocks_for, GpuBackend, GpuBuf, BLOCK, MAX_GRID};
use crate::gpu::params::{kernel, ColumnSumParams, GateApplyParams, GateBwdParams, GateParams};
use crate::gpu::{LaunchCfg, Launcher};
use crate::ops::linear::gpu::column_sum;
use crate::ops::shape::expect_len;
use crate::ops::shape::u32_of;
use crate::{Error, Result};

/// Threads of the per-feature gate blocks (`gate_logit_fwd_f32` is bounded to 256).
const GATE_BLOCK: u32 = 256;

/// Blocks of the per-feature stages: one per 256 features (each writes r partials).
fn gate_parts(f: usize) -> Result<u32> {
    u32_of("gate blocks", f.div_ceil(GATE_BLOCK as usize))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn gate_fwd<L: Launcher>(
    be: &GpuBackend<L>,
    xt: Option<&mut GpuBuf<L>>,
    g: &mut GpuBuf<L>,
    keep: &mut GpuBuf<L>,
    xbar: &mut GpuBuf<L>,
    u: &mut GpuBuf<L>,
    x: &GpuBuf<L>,
    mask: &GpuBuf<L>,
    w: &GpuBuf<L>,
    a: &GpuBuf<L>,
    b: &GpuBuf<L>,
    select: GateSelect,
    n: usize,
    f: usize,
    r: usize,
) -> Result<()> {
    let op = "gate_fwd";
    if let Some(xt) = &xt {
        expect_len(op, "xt", xt.len(), n * f)?;
    }
    expect_len(op, "x", x.len(), n * f)?;
    expect_len(op, "mask", mask.len(), n)?;
    for (name, buf) in [("g", &*g), ("keep", &*keep), ("xbar", &*xbar), ("w", w)] {
        expect_len(op, name, buf.len(), f)?;
    }
    expect_len(op, "a", a.len(), f * r)?;
    expect_len(op, "b", b.len(), f * r)?;
    if u.len() < r {
        return Err(Error::shape(format!(
            "{op}: u has {} elements, expected at least {r}",
            u.len()
        )));
    }
    if f == 0 {
        return Ok(());
    }
    let (n32, f32_, r32) = (u32_of("n", n)?, u32_of("f", f)?, u32_of("r", r)?);
    u32_of("n·f", n * f)?;
    let (mode, tau, topk) = match select {
        GateSelect::Threshold(tau) => (0, tau, 0),
        GateSelect::TopK(k) => (1, 0.0, u32::try_from(k).unwrap_or(u32::MAX)),
    };
    let parts = gate_parts(f)?;
    let work = be.scratch((f + parts as usize * r) * 8)?;
    let cs = ColumnSumParams {
        out_f32: 0,
        out_f64: work.ptr(),
        a: x.ptr(),
        b: 0,
        rowmask: mask.ptr(),
        n: n32,
        cols: f32_,
    };
    let gp = GateParams {
        g: g.ptr(),
        keep: keep.ptr(),
        xbar: xbar.ptr(),
        u: u.ptr(),
        work: work.ptr(),
        w: w.ptr(),
        a: a.ptr(),
        b: b.ptr(),
        mask: mask.ptr(),
        n: n32,
        f: f32_,
        r: r32,
        mode,
        tau,
        topk,
        parts,
        pad: 0,
    };
    let ap = xt.map(|xt| GateApplyParams {
        xt: xt.ptr(),
        x: x.ptr(),
        g: g.ptr(),
        keep: keep.ptr(),
        n: n32,
        f: f32_,
    });
    let per_feature = LaunchCfg::linear(parts, GATE_BLOCK, 0);
    // SAFETY: lengths checked above; work holds f + parts·r doubles.
    unsafe {
        column_sum(be, cs)?;
        be.go(kernel::GATE_FWD_F32, per_feature, &gp)?;
        be.go(kernel::GATE_LOGIT_FWD_F32, per_feature, &gp)?;
        if mode == 1 {
            // a warp per feature
            let cfg = LaunchCfg::linear(u32_of("gate blocks", f.div_ceil(8))?, 256, 0);
            be.go(kernel::GATE_RANK_FWD_F32, cfg, &gp)?;
        }
        if let (true, Some(ap)) = (n > 0, ap) {
            let cfg = LaunchCfg::linear(blocks_for(n * f, BLOCK, MAX_GRID), BLOCK, 0);
            be.go(kernel::GATE_APPLY_FWD_F32, cfg, &ap)?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn gate_bwd<L: Launcher>(
    be: &GpuBackend<L>,
    dw: &mut GpuBuf<L>,
    da: &mut GpuBuf<L>,
    db: &mut GpuBuf<L>,
    dg: &mut GpuBuf<L>,
    dxt: &GpuBuf<L>,
    x: &GpuBuf<L>,
    xbar: &GpuBuf<L>,
    u: &GpuBuf<L>,
    g: &GpuBuf<L>,
    keep: &GpuBuf<L>,
    b: &GpuBuf<L>,
    n: usize,
    f: usize,
    r: usize,
) -> Result<()> {
    let op = "gate_bwd";
    expect_len(op, "dxt", dxt.len(), n * f)?;
    expect_len(op, "x", x.len(), n * f)?;
    for (name, buf) in [
        ("dw", &*dw),
        ("dg", &*dg),
        ("xbar", xbar),
        ("g", g),
        ("keep", keep),
    ] {
        expect_len(op, name, buf.len(), f)?;
    }
    for (name, buf) in [("da", &*da), ("db", &*db), ("b", b)] {
        expect_len(op, name, buf.len(), f * r)?;
    }
    if u.len() < r {
        return Err(Error::shape(format!(
            "{op}: u has {} elements, expected at least {r}",
            u.len()
        )));
    }
    if f == 0 {
        return Ok(());
    }
    let (n32, f32_, r32) = (u32_of("n", n)?, u32_of("f", f)?, u32_of("r", r)?);
    u32_of("n·f", n * f)?;
    u32_of("f·r", f * r)?;
    let parts = gate_parts(f)?;
    let work = be.scratch((2 * f + parts as usize * r) * 8)?;
    let cs = ColumnSumParams {
        out_f32: 0,
        out_f64: work.ptr(),
        a: dxt.ptr(),
        b: x.ptr(),
        rowmask: 0,
        n: n32,
        cols: f32_,
    };
    let bp = GateBwdParams {
        dw: dw.ptr(),
        da: da.ptr(),
        db: db.ptr(),
        dg: dg.ptr(),
        work: work.ptr(),
        g: g.ptr(),
        keep: keep.ptr(),
        xbar: xbar.ptr(),
        u: u.ptr(),
        b: b.ptr(),
        f: f32_,
        r: r32,
        parts,
        pad: 0,
    };
    // SAFETY: lengths checked above; work holds 2f + parts·r doubles.
    unsafe {
        column_sum(be, cs)?;
        be.go(
            kernel::GATE_BWD_F32,
            LaunchCfg::linear(parts, GATE_BLOCK, 0),
            &bp,
        )?;
        if r > 0 {
            let cfg = LaunchCfg::linear(blocks_for(f * r, BLOCK, MAX_GRID), BLOCK, 0);
            be.go(kernel::GATE_PARAMS_BWD_F32, cfg, &bp)?;
        }
    }
    Ok(())
}
