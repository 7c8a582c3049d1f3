//! Linear map (GEMM with bias), PyTorch `nn.Linear` layout.
//! out[n,m] = inp[n,k] · w[m,k]ᵀ + b[m].
//! Backward: dinp[n,k] += dout · w; dw[m,k] += doutᵀ · inp; db[m] += Σ_rows dout.
//!
//! All three products run on the packed GEMM of [`super::gemm`], which reads every transposed form
//! in place (no materialised transpose):
//! - forward: `Gemm::new(false, true, n, m, k)` with the bias added in the epilogue;
//! - dinp: `Gemm::new(false, false, n, k, m)`, accumulating into dinp;
//! - dW: `Gemm::new(true, false, m, k, rows)` per block of [`DW_ROW_BLOCK`] rows, summed in f32
//!   inside a block and in f64 across blocks (so XᵀX of small integer codes stays exact, and long
//!   eras do not lose the small terms); the bias gradient is summed in the same pass over the block.
//!   Blocks are split over threads in contiguous runs and the per-thread f64 totals are added in
//!   thread order (deterministic for a given thread count).
//!
//! A narrow input's whole backward (dinp and dW) runs in one pass over those row blocks
//! ([`dw_db`]), a wide one's dW by column ranges ([`DW_COL_SPLIT_MIN_K`]).

use super::gemm::{Gemm, Simd, Src};
use super::par;
use super::shape::{expect_at_least, expect_len};
use crate::device::Backend;
use crate::params::{ParamId, Params};
use crate::tape::base::{two_mut, Node, Tape, T};
use crate::{Error, Result};

pub(crate) mod gpu;

/// Rows of dout and inp whose dW (and db) contributions are summed in f32 before the f64 total.
pub const DW_ROW_BLOCK: usize = 512;

/// Inputs at least this wide have their weight gradient split over threads by columns
/// (in [`dw_db`]); narrower ones by row blocks.
pub const DW_COL_SPLIT_MIN_K: usize = 512;

/// out[n,m] = inp[n,k] · w[m,k]ᵀ + b (b = 0 when None). The shapes are checked ([`check_fwd`]).
pub fn linear_fwd(
    out: &mut [f32],
    inp: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    n: usize,
    k: usize,
    m: usize,
) -> Result<()> {
    check_fwd(out.len(), inp.len(), w.len(), b.map(|b| b.len()), n, k, m)?;
    if n == 0 || m == 0 {
        return Ok(());
    }
    Gemm {
        bias: b.map(|b| &b[..m]),
        ..Gemm::new(false, true, n, m, k)
    }
    .run(&inp[..n * k], &w[..m * k], &mut out[..n * m])
}

/// dw += doutᵀ · inp and db += Σ_rows dout (when given) with inp given as era codes, one byte per
/// value (c − 2) / 2 (src/ops/codes; no input gradient: the era's inputs take none): bit for bit
/// [`linear_bwd`] on the decoded inp, from a quarter of its bytes (the mapper's [n, F] input,
/// whose f32 packing in the per-block products is bound by reading it).
pub fn linear_bwd_codes(
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    dout: &[f32],
    codes: &[u8],
    n: usize,
    k: usize,
    m: usize,
) -> Result<()> {
    let op = "linear_bwd_codes";
    expect_len(op, "dout", dout.len(), n * m)?;
    // a codes buffer holds whole words (src/ops/codes)
    expect_at_least(op, "codes", codes.len(), n * k)?;
    expect_len(op, "dw", dw.len(), m * k)?;
    if let Some(d) = &db {
        expect_len(op, "db", d.len(), m)?;
    }
    if n == 0 || m == 0 {
        return Ok(());
    }
    dw_db(
        dw,
        db,
        dout,
        Src::Codes(&codes[..n * k]),
        n,
        k,
        m,
        dw_threads(n, k, m),
        None,
    )
}

/// dinp += dout · w (when given), dw += doutᵀ · inp, db += Σ_rows dout (when given). `w` is read
/// only for dinp (it may be empty without it).
#[allow(clippy::too_many_arguments)]
pub fn linear_bwd(
    dinp: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    dout: &[f32],
    inp: &[f32],
    w: &[f32],
    n: usize,
    k: usize,
    m: usize,
) -> Result<()> {
    linear_bwd_into(dinp.map(|d| (d, true)), dw, db, dout, inp, w, n, k, m)
}

/// The CPU backend's `linear_bwd` (`fresh` false) and `linear_bwd_fresh` (true: dinp is
/// written): the shape rule every device shares, then the backward.
#[allow(clippy::too_many_arguments, clippy::ptr_arg)]
pub(crate) fn cpu_bwd(
    dinp: Option<&mut Vec<f32>>,
    fresh: bool,
    dw: &mut Vec<f32>,
    db: Option<&mut Vec<f32>>,
    dout: &[f32],
    inp: &[f32],
    w: &[f32],
    n: usize,
    k: usize,
    m: usize,
) -> Result<()> {
    let (di, dbl) = (dinp.as_ref().map(|d| d.len()), db.as_ref().map(|d| d.len()));
    check_bwd(di, dw.len(), dbl, dout.len(), inp.len(), w.len(), n, k, m)?;
    let dinp = dinp.map(|d| (d.as_mut_slice(), !fresh));
    linear_bwd_into(
        dinp,
        dw,
        db.map(|d| d.as_mut_slice()),
        dout,
        inp,
        w,
        n,
        k,
        m,
    )
}

/// The backward with dinp added to (`true`) or overwritten (`false`).
#[allow(clippy::too_many_arguments)]
fn linear_bwd_into(
    dinp: Option<(&mut [f32], bool)>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    dout: &[f32],
    inp: &[f32],
    w: &[f32],
    n: usize,
    k: usize,
    m: usize,
) -> Result<()> {
    let op = "linear_bwd";
    expect_len(op, "dout", dout.len(), n * m)?;
    expect_len(op, "inp", inp.len(), n * k)?;
    expect_len(op, "dw", dw.len(), m * k)?;
    if let Some(d) = &db {
        expect_len(op, "db", d.len(), m)?;
    }
    let threads = dw_threads(n, k, m);
    if let Some((dinp, accumulate)) = dinp {
        expect_len(op, "dinp", dinp.len(), n * k)?;
        expect_len(op, "w", w.len(), m * k)?;
        if m > 0 && k > 0 && k < DW_COL_SPLIT_MIN_K && threads > 1 && n > DW_ROW_BLOCK {
            let dinp = Some((dinp, accumulate, w));
            return dw_db(dw, db, dout, Src::F32(inp), n, k, m, threads, dinp);
        }
        if m == 0 {
            // an empty product: nothing to add, zeros to write
            if !accumulate {
                dinp.fill(0.0);
            }
        } else if n > 0 && k > 0 {
            Gemm {
                accumulate,
                ..Gemm::new(false, false, n, k, m)
            }
            .run(dout, w, dinp)?;
        }
    }
    if n == 0 || m == 0 {
        return Ok(());
    }
    dw_db(dw, db, dout, Src::F32(inp), n, k, m, threads, None)
}

/// Threads for the weight gradient of [`dw_db`]: one below 2 Mflop, else the pool's.
fn dw_threads(n: usize, k: usize, m: usize) -> usize {
    if 2 * n * m * k.max(1) < (1 << 21) {
        1
    } else {
        par::threads()
    }
}

/// The input gradient [`dw_db`] computes beside the weight gradient: dinp [n, k] (`true`: added
/// to, else written) = dout · w [m, k].
type Dinp<'a> = (&'a mut [f32], bool, &'a [f32]);

/// dw[m,k] += doutᵀ · inp and db[m] += Σ_rows dout, f32 within a row block and f64 across, over
/// `threads` threads ([`dw_threads`]); and, when `dinp` is given (split by row blocks only), each
/// block's input gradient while the block's rows of dout are in the core's cache (in a pass of
/// its own, dout was read from memory twice): the same products in the same order.
#[allow(clippy::too_many_arguments)]
fn dw_db(
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    dout: &[f32],
    inp: Src,
    n: usize,
    k: usize,
    m: usize,
    threads: usize,
    dinp: Option<Dinp>,
) -> Result<()> {
    let blocks = n.div_ceil(DW_ROW_BLOCK);
    if threads > 1 && k >= DW_COL_SPLIT_MIN_K && dinp.is_none() {
        // a wide input (the mapper's [n, F]) is split by ranges of its columns (whole 32-column
        // panels): each thread's slice of dw stays in its L2 across the row blocks (split by
        // rows, every thread wrote all of the 128 × F partial product and its f64 total, 1.2 +
        // 2.4 MB at F 2,376, once per block). Every column sums its blocks in order, so the bits
        // are those of one thread, whatever the thread count; db is summed once, here.
        let cols = k.div_ceil(threads).next_multiple_of(32);
        let parts = par::run(par::ranges(k, cols), |jr| -> Result<Vec<f64>> {
            let w = jr.len();
            let mut acc = vec![0f64; m * w];
            let mut part = vec![0f32; m * w];
            dw_blocks(&mut acc, &mut part, dout, inp, 0..blocks, jr, n, k, m)?;
            Ok(acc)
        });
        for (jr, part) in par::ranges(k, cols).zip(parts) {
            let (part, w) = (part?, jr.len());
            for (drow, prow) in dw[..m * k].chunks_exact_mut(k).zip(part.chunks_exact(w)) {
                add_f64(&mut drow[jr.clone()], prow);
            }
        }
        if let Some(db) = db {
            let mut acc = vec![0f64; m];
            db_blocks(&mut acc, dout, 0..blocks, n, m);
            add_f64(&mut db[..m], &acc);
        }
        return Ok(());
    }
    let threads = threads.min(blocks);
    let with_db = db.is_some();
    let per = blocks.div_ceil(threads.max(1));
    // each thread's run of blocks, with its rows of dinp
    let (accumulate, w) = dinp.as_ref().map_or((false, &[][..]), |d| (d.1, d.2));
    let chunks: Vec<Option<&mut [f32]>> = match dinp {
        Some((d, ..)) => d[..n * k]
            .chunks_mut(per * DW_ROW_BLOCK * k)
            .map(Some)
            .collect(),
        None => (0..blocks.div_ceil(per)).map(|_| None).collect(),
    };
    let parts = par::run(par::ranges(blocks, per).zip(chunks), |(br, mut dchunk)| {
        let mut acc = vec![0f64; m * k + if with_db { m } else { 0 }];
        let (dwacc, dbacc) = acc.split_at_mut(m * k);
        let mut part = vec![0f32; m * k];
        for blk in br.clone() {
            if let Some(dc) = dchunk.as_mut() {
                let (r0, local) = (blk * DW_ROW_BLOCK, (blk - br.start) * DW_ROW_BLOCK * k);
                let rows = DW_ROW_BLOCK.min(n - r0);
                Gemm {
                    accumulate,
                    threads: Some(1),
                    ..Gemm::new(false, false, rows, k, m)
                }
                .run(
                    &dout[r0 * m..(r0 + rows) * m],
                    w,
                    &mut dc[local..local + rows * k],
                )?;
            }
            dw_blocks(dwacc, &mut part, dout, inp, blk..blk + 1, 0..k, n, k, m)?;
        }
        if with_db {
            db_blocks(dbacc, dout, br, n, m);
        }
        Ok(acc)
    });
    let mut total: Option<Vec<f64>> = None;
    for part in parts {
        let part = part?;
        match total.as_mut() {
            None => total = Some(part),
            Some(t) => {
                for (x, y) in t.iter_mut().zip(part) {
                    *x += y;
                }
            }
        }
    }
    let Some(total) = total else {
        return Ok(());
    };
    add_f64(&mut dw[..m * k], &total[..m * k]);
    if let Some(db) = db {
        add_f64(&mut db[..m], &total[m * k..]);
    }
    Ok(())
}

/// d += a, each sum in f64 and rounded once to f32.
fn add_f64(d: &mut [f32], a: &[f64]) {
    for (d, &a) in d.iter_mut().zip(a) {
        *d = (*d as f64 + a) as f32;
    }
}

/// acc[m, cols] += Σ over the row blocks `br`, in order, of doutᵀ · inp[:, cols] for the block's
/// rows (each block's product in f32 into `part`, then added in f64).
#[allow(clippy::too_many_arguments)]
fn dw_blocks(
    acc: &mut [f64],
    part: &mut [f32],
    dout: &[f32],
    inp: Src,
    br: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    n: usize,
    k: usize,
    m: usize,
) -> Result<()> {
    let w = cols.len();
    if w == 0 {
        return Ok(());
    }
    let simd = Simd::detect();
    for blk in br {
        let r0 = blk * DW_ROW_BLOCK;
        let rows = DW_ROW_BLOCK.min(n - r0);
        let g = &dout[r0 * m..(r0 + rows) * m];
        // the block's rows of inp, columns `cols`, at inp's row stride k
        let b = block(inp, r0 * k + cols.start, (rows - 1) * k + w);
        Gemm {
            threads: Some(1),
            ldb: k,
            ..Gemm::new(true, false, m, w, rows)
        }
        .run_src(g, b, &mut part[..m * w])?;
        simd.run(
            #[inline(always)]
            || {
                for (a, &p) in acc.iter_mut().zip(&part[..m * w]) {
                    *a += p as f64;
                }
            },
        );
    }
    Ok(())
}

/// acc[m] += Σ over the row blocks `br`, in order, of each block's column sums of dout (f32 in
/// row order, then added in f64).
fn db_blocks(acc: &mut [f64], dout: &[f32], br: std::ops::Range<usize>, n: usize, m: usize) {
    let mut colsum = vec![0f32; m];
    // compiled at the SIMD path's width: columns are independent, each summed in row order, so
    // the bits do not depend on the width
    Simd::detect().run(
        #[inline(always)]
        || {
            for blk in br {
                let r0 = blk * DW_ROW_BLOCK;
                let rows = DW_ROW_BLOCK.min(n - r0);
                colsum.fill(0.0);
                for grow in dout[r0 * m..(r0 + rows) * m].chunks_exact(m) {
                    for (c, &v) in colsum.iter_mut().zip(grow) {
                        *c += v;
                    }
                }
                for (a, &c) in acc.iter_mut().zip(&colsum) {
                    *a += c as f64;
                }
            }
        },
    );
}

/// Elements start..start + len of an operand.
fn block(src: Src, start: usize, len: usize) -> Src {
    match src {
        Src::F32(v) => Src::F32(&v[start..start + len]),
        Src::Codes(c) => Src::Codes(&c[start..start + len]),
    }
}

// ---- shapes, tape record and backward -------------------------------------------------------

/// The forward's shape rule on every device: out [n,m], inp [n,k], w [m,k], b [m].
pub fn check_fwd(
    out: usize,
    inp: usize,
    w: usize,
    b: Option<usize>,
    n: usize,
    k: usize,
    m: usize,
) -> Result<()> {
    let op = "linear_fwd";
    expect_len(op, "out", out, n * m)?;
    expect_len(op, "inp", inp, n * k)?;
    expect_len(op, "w", w, m * k)?;
    if let Some(b) = b {
        expect_len(op, "b", b, m)?;
    }
    Ok(())
}

/// The backward's shape rule on every device.
#[allow(clippy::too_many_arguments)]
pub fn check_bwd(
    dinp: Option<usize>,
    dw: usize,
    db: Option<usize>,
    dout: usize,
    inp: usize,
    w: usize,
    n: usize,
    k: usize,
    m: usize,
) -> Result<()> {
    let op = "linear_bwd";
    expect_len(op, "dout", dout, n * m)?;
    expect_len(op, "inp", inp, n * k)?;
    expect_len(op, "w", w, m * k)?;
    expect_len(op, "dw", dw, m * k)?;
    if let Some(d) = dinp {
        expect_len(op, "dinp", d, n * k)?;
    }
    if let Some(d) = db {
        expect_len(op, "db", d, m)?;
    }
    Ok(())
}

impl<B: Backend> Tape<B> {
    #[allow(clippy::too_many_arguments)]
    pub fn linear(
        &mut self,
        dev: &B,
        p: &Params<B>,
        inp: T,
        w: ParamId,
        b: ParamId,
        n: usize,
        k: usize,
        m: usize,
    ) -> Result<T> {
        let out = self.new_tensor(dev, n * m)?;
        let mut o = self.take(out)?;
        let r = dev.linear_fwd(
            &mut o,
            self.buf(inp)?,
            &p.values[w.0],
            Some(&p.values[b.0]),
            n,
            k,
            m,
        );
        self.put(out, o);
        r?;
        self.record(Node::Linear {
            out,
            inp,
            w,
            b,
            n,
            k,
            m,
        });
        Ok(out)
    }
}

/// Backward of [`Node::Linear`].
pub(crate) fn backward<B: Backend>(
    tape: &mut Tape<B>,
    dev: &B,
    p: &mut Params<B>,
    node: &Node,
) -> Result<()> {
    let Node::Linear {
        out,
        inp,
        w,
        b,
        n,
        k,
        m,
    } = *node
    else {
        return Err(Error::device(
            "linear::backward on another node".to_string(),
        ));
    };
    if let Some(dout) = tape.take_grad_if_any(out) {
        let dinp = if tape.requires_grad(inp) {
            Some(tape.take_grad_fresh(dev, inp)?)
        } else {
            None
        };
        let (pw, pg) = (&p.values, &mut p.grads);
        let (dw, db) = two_mut(pg, w.0, b.0)?;
        let (x, wv) = (tape.buf(inp)?, &pw[w.0]);
        match dinp {
            Some((mut di, fresh)) => {
                if fresh {
                    dev.linear_bwd_fresh(&mut di, dw, Some(db), &dout, x, wv, n, k, m)?;
                } else {
                    dev.linear_bwd(Some(&mut di), dw, Some(db), &dout, x, wv, n, k, m)?;
                }
                tape.put_grad(inp, di);
            }
            None => dev.linear_bwd(None, dw, Some(db), &dout, x, wv, n, k, m)?,
        }
        dev.recycle(dout);
    }
    tape.free(dev, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass backward of a narrow input ([`dw_db`] with dinp) has the bits of the two passes
    /// (dinp by one GEMM, then [`dw_db`]) with the same thread count: dinp overwritten or added
    /// to, with and without db, eras that are not whole row blocks.
    #[test]
    fn one_pass_backward_has_the_bits_of_two_passes() {
        let mut rng = crate::rng::Rng::new(5, 9);
        for (n, k, m) in [(1100, 37, 45), (513, 64, 64), (2048, 130, 7)] {
            let mut r =
                |len: usize| -> Vec<f32> { (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect() };
            let (dout, inp, w, dinp0) = (r(n * m), r(n * k), r(m * k), r(n * k));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            for (threads, accumulate, with_db) in [
                (2, false, true),
                (2, true, false),
                (3, true, true),
                (4, false, false),
            ] {
                let mut two = (dinp0.clone(), vec![0.25f32; m * k], vec![0.5f32; m]);
                Gemm {
                    accumulate,
                    ..Gemm::new(false, false, n, k, m)
                }
                .run(&dout, &w, &mut two.0)
                .unwrap();
                let db = with_db.then_some(&mut two.2[..]);
                dw_db(
                    &mut two.1,
                    db,
                    &dout,
                    Src::F32(&inp),
                    n,
                    k,
                    m,
                    threads,
                    None,
                )
                .unwrap();
                let mut one = (dinp0.clone(), vec![0.25f32; m * k], vec![0.5f32; m]);
                let db = with_db.then_some(&mut one.2[..]);
                let (d, dw) = (Some((&mut one.0[..], accumulate, &w[..])), &mut one.1);
                dw_db(dw, db, &dout, Src::F32(&inp), n, k, m, threads, d).unwrap();
                let case = format!("{n}x{k}x{m}, {threads} threads, accumulate {accumulate}");
                assert!(bits(&one.0) == bits(&two.0), "dinp, {case}");
                assert!(bits(&one.1) == bits(&two.1), "dw, {case}");
                assert!(bits(&one.2) == bits(&two.2), "db, {case}");
            }
        }
    }

    /// Split by columns, the weight gradient (and db) of a wide input has the bits of one thread
    /// for any thread count, and column ranges that are not whole panels; f32 input and codes
    /// give the same bits.
    #[test]
    fn column_split_weight_gradient_has_the_bits_of_one_thread() {
        let (n, k, m) = (1100, 700, 45);
        let mut rng = crate::rng::Rng::new(11, 2);
        let codes: Vec<u8> = (0..n * k).map(|_| (rng.next_u32() % 5) as u8).collect();
        let inp: Vec<f32> = codes.iter().map(|&c| (f32::from(c) - 2.0) * 0.5).collect();
        let dout: Vec<f32> = (0..n * m).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let run = |src: Src, threads: usize| {
            let (mut dw, mut db) = (vec![0.25f32; m * k], vec![0.5f32; m]);
            dw_db(&mut dw, Some(&mut db), &dout, src, n, k, m, threads, None).unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            (bits(&dw), bits(&db))
        };
        let one = run(Src::F32(&inp), 1);
        for threads in [2, 3, 4, 7] {
            assert!(one == run(Src::F32(&inp), threads), "{threads} threads");
            assert!(
                one == run(Src::Codes(&codes), threads),
                "{threads} threads, codes"
            );
        }
    }
}
