//! Launch recipes of the optimizer ops for [`GpuBackend`] (`kernels/optim.cu`).

use super::AdamArgs;
use crate::gpu::backend::{blocks_for, GpuBackend, GpuBuf, BLOCK, MAX_GRID, MAX_REDUCE_BLOCKS};
use crate::gpu::params::{
    kernel, AdamMultiParams, AdamParams, ClipScaleParams, SumSqMultiParams, SumSqParams,
    SumSqReduceParams, TensorRecord,
};
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
    let out = be.scratch(gs.len() * 8)?;
    sums_into(be, gs, &out)?;
    let words = be.read_back(&[&out])?.remove(0);
    Ok((0..gs.len()).map(|i| f64_at(&words, i)).collect())
}

/// Launches the Σ g² of every buffer into the f64 slots of `out` (2 words each, zeroed or not:
/// every slot is written), no host wait.
fn sums_into<L: Launcher>(be: &GpuBackend<L>, gs: &[&GpuBuf<L>], out: &GpuBuf<L>) -> Result<()> {
    expect_len("sum_squares_each", "out", out.len(), gs.len() * 2)?;
    let blocks: Vec<u32> = gs
        .iter()
        .map(|g| blocks_for(g.len().max(1), BLOCK, MAX_REDUCE_BLOCKS))
        .collect();
    let total: usize = blocks.iter().map(|&b| b as usize).sum();
    let partial = be.scratch(total * 8)?;
    let mut at = 0usize;
    for (i, (g, &b)) in gs.iter().zip(&blocks).enumerate() {
        let part = partial.ptr() + (at * 8) as u64;
        at += b as usize;
        let slot = out.ptr() + (i * 8) as u64;
        // an empty buffer runs the partial pass over 0 elements: its one block writes 0, so its
        // slot is 0 however `out` was left
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
        // per buffer (checked above).
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
    Ok(())
}

/// The clipped Adam step of every tensor without a host round trip, in four launches whatever
/// the tensor count: Σg² of each gradient into `sums` (f64 slots, kept for the caller to read back
/// later; `sum_squares_multi_{,reduce_}fwd_f32` over the device table of tensors), the scale from
/// them (`clip_scale_fwd_f32`, NaN when one is not finite), then one Adam launch over every
/// element of every tensor (`adam_multi_fwd_f32`, skipping on NaN). `args.grad_scale` is ignored.
#[allow(clippy::too_many_arguments)]
pub(crate) fn clipped_adam<L: Launcher>(
    be: &GpuBackend<L>,
    ps: &mut [GpuBuf<L>],
    gs: &[GpuBuf<L>],
    ms: &mut [GpuBuf<L>],
    vs: &mut [GpuBuf<L>],
    args: &AdamArgs,
    clip: f32,
    eras: usize,
    sums: &mut GpuBuf<L>,
) -> Result<()> {
    let n = ps.len();
    crate::ops::shape::expect_all(
        "clipped_adam",
        &[("grads", gs.len()), ("m", ms.len()), ("v", vs.len())],
        n,
    )?;
    expect_len("clipped_adam", "sums", sums.len(), 2 * n.max(1))?;
    if n == 0 {
        return Ok(());
    }
    let count = u32_of("tensors", n)?;
    if count > 65_535 {
        return Err(crate::Error::shape(format!(
            "clipped_adam: {n} parameter tensors exceed the grid's y limit 65535"
        )));
    }
    // the table of tensors, in order
    let mut table = Vec::with_capacity(n);
    let mut start = 0u64;
    let mut longest = 0usize;
    for i in 0..n {
        let len = ps[i].len();
        expect_len("adam_step", "g", gs[i].len(), len)?;
        expect_len("adam_step", "m", ms[i].len(), len)?;
        expect_len("adam_step", "v", vs[i].len(), len)?;
        table.push(TensorRecord {
            p: ps[i].ptr(),
            g: gs[i].ptr(),
            m: ms[i].ptr(),
            v: vs[i].ptr(),
            start,
            n: len as u64,
        });
        start += len as u64;
        longest = longest.max(len);
    }
    let total = start;
    let mut slot = be
        .param_table
        .lock()
        .map_err(|_| crate::Error::device("parameter table lock poisoned"))?;
    let bytes: &[u8] = bytemuck::cast_slice(&table);
    if slot
        .as_ref()
        .is_none_or(|(host, _)| host.as_slice() != bytes)
    {
        let mut buf = be.alloc_f32(bytes.len() / 4)?;
        be.write(&mut buf, bytemuck::cast_slice(&table))?;
        *slot = Some((bytes.to_vec(), buf));
    }
    let Some((_, tbuf)) = slot.as_ref() else {
        return Err(crate::Error::device("parameter table missing"));
    };
    let blocks = blocks_for(longest.max(1), BLOCK, MAX_REDUCE_BLOCKS);
    let partial = be.scratch(blocks as usize * n * 8)?;
    let sp = SumSqMultiParams {
        tensors: tbuf.ptr(),
        partial: partial.ptr(),
        out: sums.ptr(),
        count,
        blocks,
    };
    let scale = be.scratch(4)?;
    let cp = ClipScaleParams {
        scale: scale.ptr(),
        sums: sums.ptr(),
        n: count,
        clip,
        eras: u32_of("eras", eras)?,
        pad: 0,
    };
    let step = i32::try_from(args.step.max(1)).unwrap_or(i32::MAX);
    let ap = AdamMultiParams {
        tensors: tbuf.ptr(),
        scale: scale.ptr(),
        total,
        count,
        lr: args.lr,
        beta1: args.beta1,
        beta2: args.beta2,
        eps: args.eps,
        weight_decay: args.weight_decay,
        bc1: (1.0 - (args.beta1 as f64).powi(step)) as f32,
        bc2: (1.0 - (args.beta2 as f64).powi(step)) as f32,
    };
    let adam_blocks = blocks_for(
        usize::try_from(total).unwrap_or(usize::MAX),
        BLOCK,
        MAX_GRID,
    );
    // SAFETY: the table holds `count` records of live buffers whose lengths were checked above
    // (it was rebuilt from them now or is byte-identical to what they give); partial holds
    // count·blocks f64, sums `count` f64 (checked), scale one float.
    unsafe {
        be.go(
            kernel::SUM_SQUARES_MULTI_FWD_F32,
            LaunchCfg {
                grid: [blocks, count, 1],
                block: [BLOCK, 1, 1],
                shmem: 0,
            },
            &sp,
        )?;
        be.go(
            kernel::SUM_SQUARES_MULTI_REDUCE_FWD_F32,
            LaunchCfg {
                grid: [1, count, 1],
                block: [32, 1, 1],
                shmem: 0,
            },
            &sp,
        )?;
        be.go(kernel::CLIP_SCALE_FWD_F32, LaunchCfg::linear(1, 32, 0), &cp)?;
        be.go(
            kernel::ADAM_MULTI_FWD_F32,
            LaunchCfg::linear(adam_blocks, BLOCK, 0),
            &ap,
        )?;
    }
    Ok(())
}

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
        scale: 0,
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
    // SAFETY: lengths checked above; no scale pointer (grad_scale is used).
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
