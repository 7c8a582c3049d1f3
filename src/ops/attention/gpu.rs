//! Launch recipes of the attentions for [`GpuBackend`] (`kernels/linear_attention.cu`,
//! `kernels/softmax_attention.cu`): linear attention sums its state per (chunk, head) and reduces
//! the partials in order, and its row kernels take tiles of (rows, head) with the head's state in
//! shared memory; softmax (cross-)attention is flash style over tiles of keys in shared
//! memory: the forward and dQ run one thread per query row, dK/dV one thread per key row.

use super::{check_linear_bwd, check_linear_fwd, check_softmax_bwd, check_softmax_fwd};
use crate::gpu::backend::{blocks_for, GpuBackend, GpuBuf, BLOCK, MAX_DYN_SHARED, MAX_GRID};
use crate::gpu::params::{
    kernel, LinAttnReduceParams, LinAttnRowsParams, LinAttnStateParams, SoftmaxAttnParams, Typed,
};
use crate::gpu::{LaunchCfg, Launcher};
use crate::ops::shape::u32_of;
use crate::{Error, Result};

/// Σ over rows of the linear-attention state (S, z forward; dS, dz backward) into `s`, `z`
/// (h·dh² and h·dh floats): per-(chunk, head) partials, then an ordered f64 reduction.
///
/// # Safety
/// `st` addresses live [n, d] tensors (x, y), `mask` [n] (forward) or `rowscale` [n·h·2]
/// (backward); `s`, `z` hold h·dh² and h·dh floats.
unsafe fn la_state<L: Launcher>(
    be: &GpuBackend<L>,
    kernel: Typed<LinAttnStateParams>,
    mut st: LinAttnStateParams,
    s: u64,
    z: u64,
) -> Result<()> {
    let (n, h, dh) = (st.n as usize, st.h as usize, st.dh as usize);
    let entries = dh * dh + dh;
    // rows per chunk: 64 (the CPU op's f32 block) or fewer when the tile would not fit
    let rows = (MAX_DYN_SHARED / 4 - 64) / (2 * dh + 1);
    let rows = rows.min(64);
    if rows == 0 {
        return Err(Error::shape(format!(
            "{}: head width {dh} needs more shared memory than a block has",
            kernel.id.name()
        )));
    }
    let chunks = n.div_ceil(rows);
    if h > 65535 {
        return Err(Error::shape(format!(
            "{}: {h} heads exceed the launch grid",
            kernel.id.name()
        )));
    }
    let total = u32_of("chunks·h·(dh²+dh)", chunks * h * entries)?;
    let partial = be.scratch(total as usize * 4)?;
    st.partial = partial.ptr();
    st.rows = rows as u32;
    let threads = (entries.div_ceil(32) * 32).min(BLOCK as usize) as u32;
    let cfg = LaunchCfg {
        grid: [u32_of("chunks", chunks)?, h as u32, 1],
        block: [threads, 1, 1],
        shmem: ((2 * rows * dh + rows) * 4) as u32,
    };
    be.go(kernel, cfg, &st)?;
    let r = LinAttnReduceParams {
        s,
        z,
        partial: partial.ptr(),
        chunks: chunks as u32,
        h: st.h,
        dh: st.dh,
        pad: 0,
    };
    let cfg = LaunchCfg::linear(blocks_for(h * entries, BLOCK, MAX_GRID), BLOCK, 0);
    be.go(kernel::LINEAR_ATTENTION_REDUCE_FWD_F32, cfg, &r)
}

/// The tiled row kernels' per-row shared memory, in floats, for rows of stride `st` (dh | 1).
#[derive(Clone, Copy)]
enum LaRows {
    /// φ(Q) and 1 / den.
    Out,
    /// φ(Q), dO and (inv, dden).
    Dq,
    /// φ(K), V and the mask.
    Dkv,
}

/// Launch of a tiled row kernel (kernels/linear_attention.cu) over `n` rows of `h` heads of width
/// `dh`: up to 64 rows per block, the head's matrix in shared memory when that leaves room for at
/// least 8 rows, else read from global memory. Sets `rp.rows` and `rp.mshared`.
fn la_rows_cfg(
    op: &str,
    rp: &mut LinAttnRowsParams,
    kind: LaRows,
    n: usize,
    h: usize,
    dh: usize,
) -> Result<LaunchCfg> {
    let st = dh | 1;
    let per_row = match kind {
        LaRows::Out => st + 1,
        LaRows::Dq => 2 * st + 2,
        LaRows::Dkv => 2 * st + 1,
    };
    let words = MAX_DYN_SHARED / 4;
    let fit = |fixed: usize| words.saturating_sub(fixed) / per_row;
    let (rows, mshared, fixed) = if fit(dh * st + dh) >= 8 {
        (fit(dh * st + dh).min(64), true, dh * st + dh)
    } else {
        (fit(dh).min(64), false, dh)
    };
    if rows == 0 {
        return Err(Error::shape(format!(
            "{op}: head width {dh} needs more shared memory than a block has"
        )));
    }
    if h > 65535 {
        return Err(Error::shape(format!(
            "{op}: {h} heads exceed the launch grid"
        )));
    }
    rp.rows = rows as u32;
    rp.mshared = mshared as u32;
    Ok(LaunchCfg {
        grid: [u32_of("blocks", n.div_ceil(rows))?, h as u32, 1],
        block: [BLOCK, 1, 1],
        shmem: ((fixed + rows * per_row) * 4) as u32,
    })
}

/// Widest head the softmax attention kernels keep in registers (`SA_REG_DH` in
/// kernels/softmax_attention.cu).
const SA_REG_DH: usize = 32;
/// The softmax attention kernels that [`sa_shape`] shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SaKernel {
    Fwd,
    Dq,
    Dkv,
}

impl SaKernel {
    /// Rows of shared memory per thread on the shared-memory path (accumulators and the thread's
    /// own input rows).
    fn rows(self) -> usize {
        match self {
            SaKernel::Fwd => 2,
            SaKernel::Dq => 3,
            SaKernel::Dkv => 4,
        }
    }

    /// (parts, rows per block, rows per tile) on the register path for heads of width `dh`. Each
    /// part is whole warps and takes every `parts`-th group of 4 keys (queries in dkv); part 0
    /// combines. Chosen on an H200 (docs/gpu.md, 2026-11-27) among 13–15 shapes per width at
    /// 5,000 rows, d 64, 4 heads (dh 16) and 6,000 rows, d 256, 8 heads (dh 32): the three
    /// kernels took 12.7 ms per step unsplit (64 rows per block, one part, 32-row tiles) and 7.2
    /// ms with these at dh 16; 38.1 and 26.0 ms at dh 32. Parts of 32 rows load each tile for
    /// too little work; more parts than 2 only paid in dkv at dh 16.
    fn split(self, dh: usize) -> (usize, usize, usize) {
        match (self, dh <= 16) {
            (SaKernel::Fwd, true) => (2, 128, 128),
            (SaKernel::Dq, true) => (2, 64, 256),
            (SaKernel::Dkv, true) => (4, 64, 256),
            (SaKernel::Fwd, false) => (2, 128, 64),
            (SaKernel::Dq, false) => (1, 64, 32),
            (SaKernel::Dkv, false) => (2, 128, 64),
        }
    }
}

/// Launch shape of the softmax attention kernels.
#[derive(Clone, Copy, Debug)]
struct SaShape {
    /// Threads per block.
    threads: u32,
    /// Rows (queries in fwd and dq, keys in dkv) per block.
    rows: u32,
    /// Rows of the other side per shared-memory tile.
    tile: u32,
    /// Row stride of the per-thread rows in shared memory; 0 selects the register path.
    stride: u32,
    /// Parts sharing the block's rows (the register path; 1 otherwise).
    parts: u32,
    /// Dynamic shared memory in bytes.
    shmem: u32,
}

/// Launch shape of `kernel` for heads of width `dh`. On the shared-memory path each thread keeps
/// [`SaKernel::rows`] rows in shared memory (its accumulators and input rows): the widest block of
/// 64, 32, 16 or 8 threads, one per row, whose rows leave room for a tile of at least 4 rows; the
/// tile is a multiple of 4 (the kernels take keys in groups of 4), at most 32.
/// Heads of width ≤ `SA_REG_DH` (the kernels' `SA_REG_DH`) take the register path instead: the
/// thread's rows live in registers, so stride 0 (which selects that path), and each block's rows
/// are shared by the parts of [`SaKernel::split`]. In shared memory: the two tiles (rows padded to
/// a multiple of 4 floats) with two per-row values, then, in the same space, the parts' partial
/// results (at most dp + 2 floats per row and part).
fn sa_shape(op: &str, dh: usize, kernel: SaKernel) -> Result<SaShape> {
    if dh <= SA_REG_DH {
        let dp = dh.div_ceil(4) * 4;
        let (parts, qb, tile) = kernel.split(dh);
        let tiles = tile * (2 * dp + 2);
        let partials = (parts - 1) * qb * (dp + 2);
        let bytes = tiles.max(partials) * 4;
        if bytes > MAX_DYN_SHARED || qb % 32 != 0 || qb * parts > 1024 {
            return Err(Error::shape(format!(
                "{op}: no register-path launch shape for head width {dh}"
            )));
        }
        return Ok(SaShape {
            threads: (qb * parts) as u32,
            rows: qb as u32,
            tile: tile as u32,
            stride: 0,
            parts: parts as u32,
            shmem: bytes as u32,
        });
    }
    let stride = dh | 1; // odd: consecutive threads' rows fall in different banks
    let words = MAX_DYN_SHARED / 4;
    for threads in [64usize, 32, 16, 8] {
        let own = threads * stride * kernel.rows();
        if own >= words {
            continue;
        }
        let tile = ((words - own) / (2 * dh + 2)).min(32) / 4 * 4;
        if tile > 0 {
            let bytes = (own + tile * (2 * dh + 2)) * 4;
            return Ok(SaShape {
                threads: threads as u32,
                rows: threads as u32,
                tile: tile as u32,
                stride: stride as u32,
                parts: 1,
                shmem: bytes as u32,
            });
        }
    }
    Err(Error::shape(format!(
        "{op}: head width {dh} needs more shared memory than a block has"
    )))
}

/// Grid of the softmax attention kernels: (⌈n / rows per block⌉, h).
fn sa_grid(op: &str, n: usize, h: usize, sh: SaShape) -> Result<LaunchCfg> {
    if h > 65535 {
        return Err(Error::shape(format!(
            "{op}: {h} heads exceed the launch grid"
        )));
    }
    Ok(LaunchCfg {
        grid: [u32_of("blocks", n.div_ceil(sh.rows as usize))?, h as u32, 1],
        block: [sh.threads, 1, 1],
        shmem: sh.shmem,
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_attention_fwd<L: Launcher>(
    be: &GpuBackend<L>,
    out: &mut GpuBuf<L>,
    s: &mut GpuBuf<L>,
    z: &mut GpuBuf<L>,
    q: &GpuBuf<L>,
    k: &GpuBuf<L>,
    v: &GpuBuf<L>,
    mask: &GpuBuf<L>,
    n: usize,
    d: usize,
    h: usize,
) -> Result<()> {
    let Some(dh) = check_linear_fwd(
        out.len(),
        s.len(),
        z.len(),
        q.len(),
        k.len(),
        v.len(),
        mask.len(),
        n,
        d,
        h,
    )?
    else {
        return Ok(());
    };
    if n == 0 {
        be.zero(s)?;
        return be.zero(z);
    }
    u32_of("n·d", n * d)?;
    let st = LinAttnStateParams {
        partial: 0,
        x: k.ptr(),
        y: v.ptr(),
        rowscale: 0,
        mask: mask.ptr(),
        n: n as u32,
        d: d as u32,
        h: h as u32,
        dh: dh as u32,
        rows: 0,
        pad: 0,
    };
    let mut rp = LinAttnRowsParams {
        out: out.ptr(),
        out2: 0,
        x: q.ptr(),
        y: 0,
        s: s.ptr(),
        z: z.ptr(),
        rowscale: 0,
        mask: mask.ptr(),
        n: n as u32,
        d: d as u32,
        h: h as u32,
        dh: dh as u32,
        rows: 0,
        mshared: 0,
    };
    let cfg = la_rows_cfg("linear_attention_fwd", &mut rp, LaRows::Out, n, h, dh)?;
    // SAFETY: lengths checked above.
    unsafe {
        la_state(
            be,
            kernel::LINEAR_ATTENTION_STATE_FWD_F32,
            st,
            s.ptr(),
            z.ptr(),
        )?;
        be.go(kernel::LINEAR_ATTENTION_OUT_FWD_F32, cfg, &rp)
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_attention_bwd<L: Launcher>(
    be: &GpuBackend<L>,
    dq: &mut GpuBuf<L>,
    dk: &mut GpuBuf<L>,
    dv: &mut GpuBuf<L>,
    dout: &GpuBuf<L>,
    q: &GpuBuf<L>,
    k: &GpuBuf<L>,
    v: &GpuBuf<L>,
    mask: &GpuBuf<L>,
    s: &GpuBuf<L>,
    z: &GpuBuf<L>,
    n: usize,
    d: usize,
    h: usize,
) -> Result<()> {
    let bufs = [
        dq.len(),
        dk.len(),
        dv.len(),
        dout.len(),
        q.len(),
        k.len(),
        v.len(),
    ];
    let Some(dh) = check_linear_bwd(bufs, mask.len(), s.len(), z.len(), n, d, h)? else {
        return Ok(());
    };
    if n == 0 {
        return Ok(());
    }
    u32_of("n·d", n * d)?;
    let rowscale = be.scratch(n * h * 2 * 4)?;
    let ds = be.scratch(h * dh * dh * 4)?;
    let dz = be.scratch(h * dh * 4)?;
    let rows = |out: u64, out2: u64, x: u64, y: u64, s: u64, z: u64| LinAttnRowsParams {
        out,
        out2,
        x,
        y,
        s,
        z,
        rowscale: rowscale.ptr(),
        mask: mask.ptr(),
        n: n as u32,
        d: d as u32,
        h: h as u32,
        dh: dh as u32,
        rows: 0,
        mshared: 0,
    };
    let st = LinAttnStateParams {
        partial: 0,
        x: q.ptr(),
        y: dout.ptr(),
        rowscale: rowscale.ptr(),
        mask: 0,
        n: n as u32,
        d: d as u32,
        h: h as u32,
        dh: dh as u32,
        rows: 0,
        pad: 0,
    };
    let op = "linear_attention_bwd";
    let mut dq_p = rows(dq.ptr(), 0, q.ptr(), dout.ptr(), s.ptr(), z.ptr());
    let dq_cfg = la_rows_cfg(op, &mut dq_p, LaRows::Dq, n, h, dh)?;
    let mut dkv_p = rows(dk.ptr(), dv.ptr(), k.ptr(), v.ptr(), ds.ptr(), dz.ptr());
    let dkv_cfg = la_rows_cfg(op, &mut dkv_p, LaRows::Dkv, n, h, dh)?;
    // SAFETY: lengths checked above; scratch sized for n·h pairs, h·dh², h·dh.
    unsafe {
        // dq, and the rows' (inv, dden) that the state pass reads
        be.go(kernel::LINEAR_ATTENTION_DQ_BWD_F32, dq_cfg, &dq_p)?;
        la_state(
            be,
            kernel::LINEAR_ATTENTION_STATE_BWD_F32,
            st,
            ds.ptr(),
            dz.ptr(),
        )?;
        be.go(kernel::LINEAR_ATTENTION_DKV_BWD_F32, dkv_cfg, &dkv_p)
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn softmax_attention_fwd<L: Launcher>(
    be: &GpuBackend<L>,
    out: &mut GpuBuf<L>,
    lse: &mut GpuBuf<L>,
    q: &GpuBuf<L>,
    k: &GpuBuf<L>,
    v: &GpuBuf<L>,
    mask: &GpuBuf<L>,
    nq: usize,
    nk: usize,
    d: usize,
    h: usize,
) -> Result<()> {
    let op = "softmax_attention_fwd";
    let lens = (out.len(), lse.len(), q.len(), k.len(), v.len(), mask.len());
    let (o, l, ql, kl, vl, ml) = lens;
    let Some(dh) = check_softmax_fwd(o, l, ql, kl, vl, ml, nq, nk, d, h)? else {
        return Ok(());
    };
    let n = nq;
    u32_of("nq·d", nq * d)?;
    u32_of("nk·d", nk * d)?;
    u32_of("h·nq", h * nq)?;
    let sh = sa_shape(op, dh, SaKernel::Fwd)?;
    let p = SoftmaxAttnParams {
        out: out.ptr(),
        out2: lse.ptr(),
        dd: 0,
        q: q.ptr(),
        k: k.ptr(),
        v: v.ptr(),
        dout: 0,
        o: 0,
        lse: 0,
        mask: mask.ptr(),
        n: n as u32,
        d: d as u32,
        h: h as u32,
        dh: dh as u32,
        tile: sh.tile,
        stride: sh.stride,
        scale: 1.0 / (dh as f32).sqrt(),
        nk: nk as u32,
        parts: sh.parts,
        pad: 0,
    };
    let cfg = sa_grid(op, n, h, sh)?;
    // SAFETY: lengths checked above; shared memory sized by sa_shape.
    unsafe { be.go(kernel::SOFTMAX_ATTENTION_FWD_F32, cfg, &p) }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn softmax_attention_bwd<L: Launcher>(
    be: &GpuBackend<L>,
    dq: &mut GpuBuf<L>,
    dk: &mut GpuBuf<L>,
    dv: &mut GpuBuf<L>,
    dout: &GpuBuf<L>,
    out: &GpuBuf<L>,
    lse: &GpuBuf<L>,
    q: &GpuBuf<L>,
    k: &GpuBuf<L>,
    v: &GpuBuf<L>,
    mask: &GpuBuf<L>,
    nq: usize,
    nk: usize,
    d: usize,
    h: usize,
) -> Result<()> {
    let op = "softmax_attention_bwd";
    let bufs = [
        dq.len(),
        dk.len(),
        dv.len(),
        dout.len(),
        out.len(),
        q.len(),
        k.len(),
        v.len(),
    ];
    let Some(dh) = check_softmax_bwd(bufs, lse.len(), mask.len(), nq, nk, d, h)? else {
        return Ok(());
    };
    let n = nq;
    u32_of("nq·d", nq * d)?;
    u32_of("nk·d", nk * d)?;
    u32_of("h·nq", h * nq)?;
    let dd = be.scratch(h * n * 4)?;
    let base = SoftmaxAttnParams {
        out: 0,
        out2: 0,
        dd: dd.ptr(),
        q: q.ptr(),
        k: k.ptr(),
        v: v.ptr(),
        dout: dout.ptr(),
        o: out.ptr(),
        lse: lse.ptr(),
        mask: mask.ptr(),
        n: n as u32,
        d: d as u32,
        h: h as u32,
        dh: dh as u32,
        tile: 0,
        stride: 0,
        scale: 1.0 / (dh as f32).sqrt(),
        nk: nk as u32,
        parts: 1,
        pad: 0,
    };
    let sq = sa_shape(op, dh, SaKernel::Dq)?;
    let sk = sa_shape(op, dh, SaKernel::Dkv)?;
    let pq = SoftmaxAttnParams {
        out: dq.ptr(),
        tile: sq.tile,
        stride: sq.stride,
        parts: sq.parts,
        ..base
    };
    let pk = SoftmaxAttnParams {
        out: dk.ptr(),
        out2: dv.ptr(),
        tile: sk.tile,
        stride: sk.stride,
        parts: sk.parts,
        ..base
    };
    let cfg_d = LaunchCfg::linear(blocks_for(n * h, BLOCK, MAX_GRID), BLOCK, 0);
    let cfg_q = sa_grid(op, n, h, sq)?;
    let cfg_k = sa_grid(op, nk, h, sk)?;
    // SAFETY: lengths checked above; dd holds h·n floats; shared memory sized by sa_shape.
    unsafe {
        be.go(kernel::SOFTMAX_ATTENTION_D_BWD_F32, cfg_d, &base)?;
        be.go(kernel::SOFTMAX_ATTENTION_DQ_BWD_F32, cfg_q, &pq)?;
        be.go(kernel::SOFTMAX_ATTENTION_DKV_BWD_F32, cfg_k, &pk)
    }
}
