//! Launch recipes of the elementwise ops for [`GpuBackend`] (`kernels/elementwise.cu`,
//! `kernels/pos_enc.cu`): grid-stride kernels of [`BLOCK`] threads, one parameter struct each.

use super::{check_pos_enc, check_same, Unary};
use crate::gpu::backend::{blocks_for, GpuBackend, GpuBuf, BLOCK, MAX_GRID};
use crate::gpu::params::{kernel, DropoutParams, EltParams, EmaParams, PosEncParams, Typed};
use crate::gpu::{LaunchCfg, Launcher};
use crate::ops::shape::u32_of;
use crate::rng::DropoutKey;
use crate::{Error, Result};

/// The kernels of a [`Unary`] map: (forward, backward).
fn unary_kernels(op: Unary) -> (Typed<EltParams>, Typed<EltParams>) {
    match op {
        Unary::Sigmoid => (kernel::SIGMOID_FWD_F32, kernel::SIGMOID_BWD_F32),
        Unary::Elu => (kernel::ELU_FWD_F32, kernel::ELU_BWD_F32),
    }
}

/// `kernel` over n = out.len(): out (op)= f(a[, b]) (see `EltParams` in kernels/common.cuh).
pub(crate) fn elementwise<L: Launcher>(
    be: &GpuBackend<L>,
    kernel: Typed<EltParams>,
    out: &mut GpuBuf<L>,
    a: &GpuBuf<L>,
    b: Option<&GpuBuf<L>>,
) -> Result<()> {
    check_same(kernel.id.name(), out.len(), &[("a", a.len())])?;
    if let Some(b) = b {
        check_same(kernel.id.name(), out.len(), &[("b", b.len())])?;
    }
    if out.is_empty() {
        return Ok(());
    }
    let p = EltParams {
        out: out.ptr(),
        a: a.ptr(),
        b: b.map_or(0, |b| b.ptr()),
        n: u32_of("n", out.len())?,
        pad: 0,
    };
    let cfg = LaunchCfg::linear(blocks_for(out.len(), BLOCK, MAX_GRID), BLOCK, 0);
    // SAFETY: lengths checked above; the kernel touches [0, n) of each buffer.
    unsafe { be.go(kernel, cfg, &p) }
}

/// `ema_fwd_f32`: ema = decay · ema + (1 − decay) · w, in place.
pub(crate) fn ema<L: Launcher>(
    be: &GpuBackend<L>,
    ema: &mut GpuBuf<L>,
    w: &GpuBuf<L>,
    decay: f32,
) -> Result<()> {
    check_same("ema_fwd", ema.len(), &[("w", w.len())])?;
    if ema.is_empty() {
        return Ok(());
    }
    let p = EmaParams {
        ema: ema.ptr(),
        w: w.ptr(),
        n: u32_of("n", ema.len())?,
        decay,
        keep: 1.0 - decay,
        pad: 0,
    };
    let cfg = LaunchCfg::linear(blocks_for(ema.len(), BLOCK, MAX_GRID), BLOCK, 0);
    // SAFETY: both buffers hold n floats (checked above); the kernel touches [0, n) of each.
    unsafe { be.go(kernel::EMA_FWD_F32, cfg, &p) }
}

pub(crate) fn unary_fwd<L: Launcher>(
    be: &GpuBackend<L>,
    op: Unary,
    out: &mut GpuBuf<L>,
    inp: &GpuBuf<L>,
) -> Result<()> {
    elementwise(be, unary_kernels(op).0, out, inp, None)
}

pub(crate) fn unary_bwd<L: Launcher>(
    be: &GpuBackend<L>,
    op: Unary,
    dinp: &mut GpuBuf<L>,
    dout: &GpuBuf<L>,
    inp: &GpuBuf<L>,
) -> Result<()> {
    elementwise(be, unary_kernels(op).1, dinp, inp, Some(dout))
}

/// Inverted dropout with the Philox mask of `key` (`dropout_fwd_f32` =, `dropout_bwd_f32` +=).
pub(crate) fn dropout<L: Launcher>(
    be: &GpuBackend<L>,
    kernel: Typed<DropoutParams>,
    out: &mut GpuBuf<L>,
    inp: &GpuBuf<L>,
    p: f32,
    key: DropoutKey,
) -> Result<()> {
    check_same(kernel.id.name(), out.len(), &[("input", inp.len())])?;
    if p.is_nan() {
        return Err(Error::usage("dropout probability is NaN"));
    }
    // p ≤ 0 keeps everything unscaled, as the CPU op does
    let p = p.max(0.0);
    if out.is_empty() {
        return Ok(());
    }
    let params = DropoutParams {
        out: out.ptr(),
        inp: inp.ptr(),
        n: u32_of("n", out.len())?,
        p,
        scale: 1.0 / (1.0 - p),
        seed_lo: key.seed as u32,
        seed_hi: (key.seed >> 32) as u32,
        step: key.step,
        tensor: key.tensor,
        pad: 0,
    };
    let cfg = LaunchCfg::linear(blocks_for(out.len(), BLOCK, MAX_GRID), BLOCK, 0);
    // SAFETY: lengths checked above.
    unsafe { be.go(kernel, cfg, &params) }
}

pub(crate) fn pos_enc_add<L: Launcher>(
    be: &GpuBackend<L>,
    h: &mut GpuBuf<L>,
    n: usize,
    d: usize,
) -> Result<()> {
    check_pos_enc(h.len(), n, d)?;
    if n == 0 || d == 0 {
        return Ok(());
    }
    let p = PosEncParams {
        h: h.ptr(),
        n: u32_of("n", n)?,
        d: u32_of("d", d)?,
    };
    let cfg = LaunchCfg::linear(blocks_for(n * d, BLOCK, MAX_GRID), BLOCK, 0);
    // SAFETY: h holds n·d floats.
    unsafe { be.go(kernel::POS_ENC_ADD_FWD_F32, cfg, &p) }
}
