//! Launch recipe of the linear op for [`GpuBackend`] (`kernels/linear.cu`): the tiled GEMM for
//! out and dinp, a split-K GEMM plus an ordered reduction for dw and db (the GEMM's first column
//! tile also writes each split's row sums of doutᵀ, the reduce adds them to db); a column sum
//! (split over rows, with an ordered reduction) for db only when k = 0.

use super::{check_bwd, check_fwd};
use crate::gpu::backend::{blocks_for, GpuBackend, GpuBuf, BLOCK, MAX_GRID};
use crate::gpu::params::{
    kernel, ColumnSplitParams, ColumnSumParams, GemmParams, SplitReduceParams, Typed,
};
use crate::gpu::{LaunchCfg, Launcher};
use crate::ops::shape::u32_of;
use crate::{Error, Result};

/// Output tile edge of the GEMM kernel (`kernels/linear.cu`) and its inner-dimension slice.
const GEMM_TILE: u32 = 64;
const GEMM_K: u32 = 16;
/// Rows of dout/inp summed by one split of the dw product (as the CPU op's blocks of 256 rows)...
const DW_SPLIT_ROWS: u32 = 256;
/// ...unless the grid of tiles × splits would then have fewer blocks than this (an H100's SMs):
/// then more splits, down to this many rows each.
const DW_TARGET_BLOCKS: u32 = 132;
const DW_MIN_SPLIT_ROWS: u32 = 64;
/// Cap on the splits of the dw product.
const MAX_DW_SPLITS: u32 = 64;

/// (rows per split, splits) of the dw product dw[m,k] = doutᵀ·inp over n rows: splits of 256
/// rows, or more (of at least 64) when the m×k tiles times the splits would not fill an H100's
/// SMs; a function of the shape only, so the order of the additions never depends on scheduling.
pub(crate) fn dw_splits(n: u32, k: u32, m: u32) -> (u32, u32) {
    let tiles = k.div_ceil(GEMM_TILE).max(1) * m.div_ceil(GEMM_TILE).max(1);
    let fill = DW_TARGET_BLOCKS
        .div_ceil(tiles)
        .min(n.div_ceil(DW_MIN_SPLIT_ROWS));
    let splits = n.div_ceil(DW_SPLIT_ROWS).max(fill).clamp(1, MAX_DW_SPLITS);
    // whole slices of the GEMM's inner loop per split, and no split left empty by the rounding
    let rows = n.div_ceil(splits).div_ceil(GEMM_K).max(1) * GEMM_K;
    (rows, n.div_ceil(rows).max(1))
}

/// One tiled GEMM launch: C (op)= A·B over `g`, split `splits` ways along the inner dimension in
/// mode 2.
///
/// # Safety
/// `g` addresses live buffers: a and b span the strided ranges, out rows·cols floats (times
/// `splits` in mode 2), bias cols floats or 0.
unsafe fn gemm<L: Launcher>(
    be: &GpuBackend<L>,
    kernel: Typed<GemmParams>,
    g: GemmParams,
    splits: u32,
) -> Result<()> {
    let gx = g.cols.div_ceil(GEMM_TILE).max(1);
    let gy = g.rows.div_ceil(GEMM_TILE).max(1);
    if gy > 65535 || splits > 65535 {
        return Err(Error::shape(format!(
            "{}: {} rows exceed the launch grid",
            kernel.id.name(),
            g.rows
        )));
    }
    let cfg = LaunchCfg {
        grid: [gx, gy, splits.max(1)],
        block: [256, 1, 1],
        shmem: 0,
    };
    be.go(kernel, cfg, &g)
}

/// Up to this many rows (128 per row lane) a column sum is one launch of one range: splitting
/// would add a launch to save less than it costs.
const COLSUM_ONE_RANGE_ROWS: u32 = 1024;
/// Longer column sums aim for this many blocks (about 4 per SM of an H100's 132) by splitting the
/// rows into ranges...
const COLSUM_TARGET_BLOCKS: u32 = 512;
/// ...of at least this many rows (8 per row lane of the block).
const COLSUM_MIN_ROWS: u32 = 64;

/// (rows per range, ranges) of a column sum over n rows and `cols` columns: a function of the
/// shape only, so the order of the f64 additions never depends on scheduling.
pub(crate) fn column_splits(n: u32, cols: u32) -> (u32, u32) {
    if n <= COLSUM_ONE_RANGE_ROWS {
        return (n, 1);
    }
    let groups = cols.div_ceil(32).max(1);
    let want = COLSUM_TARGET_BLOCKS.div_ceil(groups);
    let splits = want.min(n.div_ceil(COLSUM_MIN_ROWS)).clamp(1, 65535);
    let rows = n.div_ceil(splits);
    (rows, if rows == 0 { 1 } else { n.div_ceil(rows) })
}

/// s[c] = Σ_i rowmask[i]·a[i,c]·b[i,c] over n rows, into `out_f64` (=, f64 scratch) or
/// `out_f32` (+=). Shared with the gate. The rows are cut into ranges ([`column_splits`]) summed
/// by their own blocks into f64 partials of scratch, then added in range order by a second launch;
/// a sum with one range (n ≤ 1024, or columns enough to fill the GPU) is one launch.
///
/// # Safety
/// a (and b) hold n·cols floats, rowmask n floats or is 0, the output cols values.
pub(crate) unsafe fn column_sum<L: Launcher>(be: &GpuBackend<L>, p: ColumnSumParams) -> Result<()> {
    if p.cols == 0 {
        return Ok(());
    }
    let (rows, splits) = column_splits(p.n, p.cols);
    let partial = if splits > 1 {
        Some(be.scratch(splits as usize * p.cols as usize * 8)?)
    } else {
        None
    };
    let sp = ColumnSplitParams {
        out_f32: p.out_f32,
        out_f64: p.out_f64,
        partial: partial.as_ref().map_or(0, |b| b.ptr()),
        a: p.a,
        b: p.b,
        rowmask: p.rowmask,
        n: p.n,
        cols: p.cols,
        rows,
        splits,
    };
    let cfg = LaunchCfg {
        grid: [p.cols.div_ceil(32), splits, 1],
        block: [256, 1, 1],
        shmem: 0,
    };
    be.go(kernel::COLUMN_SUM_BWD_F32, cfg, &sp)?;
    if splits > 1 {
        let cfg = LaunchCfg::linear(blocks_for(p.cols as usize, BLOCK, MAX_GRID), BLOCK, 0);
        be.go(kernel::COLUMN_SUM_REDUCE_BWD_F32, cfg, &sp)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_fwd<L: Launcher>(
    be: &GpuBackend<L>,
    out: &mut GpuBuf<L>,
    inp: &GpuBuf<L>,
    w: &GpuBuf<L>,
    b: Option<&GpuBuf<L>>,
    n: usize,
    k: usize,
    m: usize,
) -> Result<()> {
    check_fwd(out.len(), inp.len(), w.len(), b.map(|b| b.len()), n, k, m)?;
    if n == 0 || m == 0 {
        return Ok(());
    }
    u32_of("n·k", n * k)?;
    u32_of("n·m", n * m)?;
    u32_of("m·k", m * k)?;
    let g = GemmParams {
        out: out.ptr(),
        a: inp.ptr(),
        b: w.ptr(),
        bias: b.map_or(0, |b| b.ptr()),
        rows: u32_of("n", n)?,
        cols: u32_of("m", m)?,
        inner: u32_of("k", k)?,
        a_rs: k as u32,
        a_is: 1,
        b_is: 1,
        b_cs: k as u32,
        mode: 0,
        k_chunk: k as u32,
        colsum: 0,
    };
    // SAFETY: lengths checked above; inp [n,k], w [m,k], out [n,m], bias [m].
    unsafe { gemm(be, kernel::LINEAR_FWD_F32, g, 1) }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_bwd<L: Launcher>(
    be: &GpuBackend<L>,
    dinp: Option<&mut GpuBuf<L>>,
    dw: &mut GpuBuf<L>,
    db: Option<&mut GpuBuf<L>>,
    dout: &GpuBuf<L>,
    inp: &GpuBuf<L>,
    w: &GpuBuf<L>,
    n: usize,
    k: usize,
    m: usize,
) -> Result<()> {
    check_bwd(
        dinp.as_ref().map(|d| d.len()),
        dw.len(),
        db.as_ref().map(|d| d.len()),
        dout.len(),
        inp.len(),
        w.len(),
        n,
        k,
        m,
    )?;
    if n == 0 || m == 0 {
        return Ok(());
    }
    let (n32, k32, m32) = (u32_of("n", n)?, u32_of("k", k)?, u32_of("m", m)?);
    u32_of("n·k", n * k)?;
    u32_of("n·m", n * m)?;
    if k > 0 {
        if let Some(dinp) = dinp {
            // dinp[n,k] += dout[n,m] · w[m,k]
            let g = GemmParams {
                out: dinp.ptr(),
                a: dout.ptr(),
                b: w.ptr(),
                bias: 0,
                rows: n32,
                cols: k32,
                inner: m32,
                a_rs: m32,
                a_is: 1,
                b_is: k32,
                b_cs: 1,
                mode: 1,
                k_chunk: m32,
                colsum: 0,
            };
            // SAFETY: lengths checked above.
            unsafe { gemm(be, kernel::LINEAR_BWD_F32, g, 1)? };
        }
        // dw[m,k] += doutᵀ[m,n] · inp[n,k]: split over rows, partials summed in a second pass;
        // db[m] += Σ_i dout[i,:] as the splits' row sums of doutᵀ behind the dw partials
        let (k_chunk, splits) = dw_splits(n32, k32, m32);
        let db_len = if db.is_some() { m32 } else { 0 };
        let len = u32_of("splits·m·(k+1)", splits as usize * m * (k + 1))?;
        let partial = be.scratch(len as usize * 4)?;
        let g = GemmParams {
            out: partial.ptr(),
            a: dout.ptr(),
            b: inp.ptr(),
            bias: 0,
            rows: m32,
            cols: k32,
            inner: n32,
            a_rs: 1,
            a_is: m32,
            b_is: k32,
            b_cs: 1,
            mode: 2,
            k_chunk,
            colsum: u32::from(db_len > 0),
        };
        let r = SplitReduceParams {
            out: dw.ptr(),
            db: db.as_ref().map_or(0, |d| d.ptr()),
            partial: partial.ptr(),
            splits,
            len: (m * k) as u32,
            db_len,
            pad: 0,
        };
        let cfg = LaunchCfg::linear(
            blocks_for(m * k + db_len as usize, BLOCK, MAX_GRID),
            BLOCK,
            0,
        );
        // SAFETY: partial holds splits·m·(k+1) floats (dw partials, then the db row sums); dw
        // m·k, db m.
        unsafe {
            gemm(be, kernel::LINEAR_BWD_F32, g, splits)?;
            be.go(kernel::LINEAR_REDUCE_BWD_F32, cfg, &r)?;
        }
        return Ok(());
    }
    // k = 0: no dw product to ride on
    if let Some(db) = db {
        let p = ColumnSumParams {
            out_f32: db.ptr(),
            out_f64: 0,
            a: dout.ptr(),
            b: 0,
            rowmask: 0,
            n: n32,
            cols: m32,
        };
        // SAFETY: dout holds n·m floats, db m.
        unsafe { column_sum(be, p)? };
    }
    Ok(())
}
