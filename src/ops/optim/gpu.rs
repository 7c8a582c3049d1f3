//! Launch recipes of the optimizer ops for [`GpuBackend`] (`kernels/optim.cu`).

use super::AdamArgs;
use crate::gpu::backend::{blocks_for, GpuBackend, GpuBuf, BLOCK, MAX_GRID, MAX_REDUCE_BLOCKS};
use crate::gpu::params::{kernel, AdamParams, SumSqParams, SumSqReduceParams};
use crate::gpu::{LaunchCfg, Launcher};
use crate::ops::shape::{expect_len, u32_of};
use crate::Result;

pub(crate) fn sum_squares<L: Launcher>(be: &GpuBackend<L>, g: &GpuBuf<L>) -> Result<f64> {
    if g.is_empty() {
        return Ok(0.0);
    }
    let blocks = blocks_for(g.len(), BLOCK, MAX_REDUCE_BLOCKS);
    let partial = be.scratch(blocks as usize * 8)?;
    let out = be.scratch(8)?;
    let p1 = SumSqParams {
        partial: partial.ptr(),
        g: g.ptr(),
        n: u32_of("n", g.len())?,
        pad: 0,
    };
    let p2 = SumSqReduceParams {
        out: out.ptr(),
        partial: partial.ptr(),
        blocks,
        pad: 0,
    };
    // SAFETY: partial holds `blocks` f64, out one f64.
    unsafe {
        be.go(
            kernel::SUM_SQUARES_FWD_F32,
            LaunchCfg::linear(blocks, BLOCK, 0),
            &p1,
        )?;
        be.go(
            kernel::SUM_SQUARES_REDUCE_FWD_F32,
            LaunchCfg::linear(1, 32, 0),
            &p2,
        )?;
    }
    let words = be.read_back(&[&out])?.remove(0);
    Ok(f64_at(&words, 0))
}

/// Σ g² of every buffer: per buffer a partial pass and an ordered reduce into its slot of ONE
/// device buffer of f64, then one read-back (no per-tensor wait). Same kernels and summation
/// order as [`sum_squares`], so each value is bit-identical to it.
pub(crate) fn sum_squares_each<L: Launcher>(
    be: &GpuBackend<L>,
    gs: &[&GpuBuf<L>],
) -> Result<Vec<f64>> {
    if gs.is_empty() {
        return Ok(Vec::new());
    }
    let blocks: Vec<u32> = gs
        .iter()
        .map(|g| blocks_for(g.len(), BLOCK, MAX_REDUCE_BLOCKS))
        .collect();
    let total: usize = blocks.iter().map(|&b| b as usize).sum();
    let partial = be.scratch(total * 8)?;
    let out = be.scratch(gs.len() * 8)?;
    let mut at = 0usize;
    for (i, (g, &b)) in gs.iter().zip(&blocks).enumerate() {
        let part = partial.ptr() + (at * 8) as u64;
        at += b as usize;
        let slot = out.ptr() + (i * 8) as u64;
        if g.is_empty() {
            continue; // its slot stays 0 (scratch is zeroed)
        }
        let p1 = SumSqParams {
            partial: part,
            g: g.ptr(),
            n: u32_of("n", g.len())?,
            pad: 0,
        };
        let p2 = SumSqReduceParams {
            out: slot,
            partial: part,
            blocks: b,
            pad: 0,
        };
        // SAFETY: partial holds Σ blocks f64 (this buffer's run starts at `part`), out one f64
        // per buffer.
        unsafe {
            be.go(
                kernel::SUM_SQUARES_FWD_F32,
                LaunchCfg::linear(b, BLOCK, 0),
                &p1,
            )?;
            be.go(
                kernel::SUM_SQUARES_REDUCE_FWD_F32,
                LaunchCfg::linear(1, 32, 0),
                &p2,
            )?;
        }
    }
    let words = be.read_back(&[&out])?.remove(0);
    Ok((0..gs.len()).map(|i| f64_at(&words, i)).collect())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn adam_step<L: Launcher>(
    be: &GpuBackend<L>,
    p: &mut GpuBuf<L>,
    g: &GpuBuf<L>,
    m: &mut GpuBuf<L>,
    v: &mut GpuBuf<L>,
    args: &AdamArgs,
) -> Result<()> {
    let op = "adam_step";
    expect_len(op, "g", g.len(), p.len())?;
    expect_len(op, "m", m.len(), p.len())?;
    expect_len(op, "v", v.len(), p.len())?;
    if p.is_empty() {
        return Ok(());
    }
    // bias corrections as the CPU op computes them (f64 powers, step 0 counts as 1)
    let step = i32::try_from(args.step.max(1)).unwrap_or(i32::MAX);
    let params = AdamParams {
        p: p.ptr(),
        g: g.ptr(),
        m: m.ptr(),
        v: v.ptr(),
        n: u32_of("n", p.len())?,
        lr: args.lr,
        beta1: args.beta1,
        beta2: args.beta2,
        eps: args.eps,
        weight_decay: args.weight_decay,
        grad_scale: args.grad_scale,
        bc1: (1.0 - (args.beta1 as f64).powi(step)) as f32,
        bc2: (1.0 - (args.beta2 as f64).powi(step)) as f32,
        pad: 0,
    };
    let cfg = LaunchCfg::linear(blocks_for(p.len(), BLOCK, MAX_GRID), BLOCK, 0);
    // SAFETY: lengths checked above.
    unsafe { be.go(kernel::ADAM_FWD_F32, cfg, &params) }
}

/// The f64 stored in f32 words `2i, 2i+1` of a read-back.
pub(crate) fn f64_at(words: &[f32], i: usize) -> f64 {
    let (lo, hi) = (
        words[2 * i].to_bits() as u64,
        words[2 * i + 1].to_bits() as u64,
    );
    if cfg!(target_endian = "little") {
        f64::from_bits(lo | hi << 32)
    } else {
        f64::from_bits(hi | lo << 32)
    }
}
