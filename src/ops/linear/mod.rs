//! Linear map (GEMM with bias), PyTorch `nn.Linear` layout.
//! out[n,m] = inp[n,k] · w[m,k]ᵀ + b[m].
//! Backward: dinp[n,k] += dout · w; dw[m,k] += doutᵀ · inp; db[m] += Σ_rows dout.
//!
//! All three products go through one kernel, [`gemm_acc`]: out[r,c] += Σ_i a[r,i] · b[i,c] with b
//! row-major [inner, cols], so the innermost loop runs along contiguous columns. It keeps a
//! 4-row × C-column tile of out in registers (C = 16 with AVX2, picked at run time; 8 otherwise)
//! and walks the inner dimension in blocks of [`INNER_BLOCK`] so the slice of b in use stays in
//! cache. The forward transposes w once to [k,m]; dinp uses w as it is; dw transposes dout and sums
//! blocks of rows in f32 inside the kernel, then adds the blocks together in f64.

use super::par;
use super::shape::expect_len;
use crate::device::Backend;
use crate::params::{ParamId, Params};
use crate::tape::base::{two_mut, Node, Tape, T};
use crate::{Error, Result};

pub(crate) mod gpu;

/// Rows of the register tile.
const TILE_ROWS: usize = 4;
/// Inner-dimension block: b[i0..i0 + INNER_BLOCK, :] is reused by every row tile.
const INNER_BLOCK: usize = 256;

/// out[r·cols + c] += Σ_{i < inner} a[r·lda + i] · b[i·cols + c] for r < rows, c < cols.
fn gemm_acc(
    out: &mut [f32],
    a: &[f32],
    lda: usize,
    b: &[f32],
    rows: usize,
    inner: usize,
    cols: usize,
) {
    if rows == 0 || inner == 0 || cols == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { gemm_acc_avx2(out, a, lda, b, rows, inner, cols) };
            return;
        }
    }
    gemm_kernel::<8>(out, a, lda, b, rows, inner, cols);
}

/// The same kernel compiled for AVX2 (8-wide f32), with a 4 × 16 tile (8 ymm accumulators).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gemm_acc_avx2(
    out: &mut [f32],
    a: &[f32],
    lda: usize,
    b: &[f32],
    rows: usize,
    inner: usize,
    cols: usize,
) {
    gemm_kernel::<16>(out, a, lda, b, rows, inner, cols);
}

#[inline(always)]
fn gemm_kernel<const C: usize>(
    out: &mut [f32],
    a: &[f32],
    lda: usize,
    b: &[f32],
    rows: usize,
    inner: usize,
    cols: usize,
) {
    const R: usize = TILE_ROWS;
    let mut i0 = 0;
    while i0 < inner {
        let i1 = (i0 + INNER_BLOCK).min(inner);
        let bi = &b[i0 * cols..i1 * cols];
        let mut r0 = 0;
        while r0 + R <= rows {
            // seek to a[r0 + r, i0..i1] for the tile's rows
            let ar: [&[f32]; R] = std::array::from_fn(|r| &a[(r0 + r) * lda + i0..][..i1 - i0]);
            let mut c0 = 0;
            while c0 + C <= cols {
                let mut acc = [[0f32; C]; R];
                for (ii, brow) in bi.chunks_exact(cols).enumerate() {
                    let bs = &brow[c0..c0 + C];
                    for r in 0..R {
                        let av = ar[r][ii];
                        for c in 0..C {
                            acc[r][c] += av * bs[c];
                        }
                    }
                }
                for (r, accr) in acc.iter().enumerate() {
                    let o = &mut out[(r0 + r) * cols + c0..][..C];
                    for (ov, &v) in o.iter_mut().zip(accr) {
                        *ov += v;
                    }
                }
                c0 += C;
            }
            if c0 < cols {
                // leftover columns: one dot product per output
                for (r, arow) in ar.iter().enumerate() {
                    for c in c0..cols {
                        let mut s = 0f32;
                        for (ii, &av) in arow.iter().enumerate() {
                            s += av * bi[ii * cols + c];
                        }
                        out[(r0 + r) * cols + c] += s;
                    }
                }
            }
            r0 += R;
        }
        // leftover rows: axpy over rows of b
        for r in r0..rows {
            let arow = &a[r * lda + i0..][..i1 - i0];
            let o = &mut out[r * cols..(r + 1) * cols];
            for (&av, brow) in arow.iter().zip(bi.chunks_exact(cols)) {
                for (ov, &bv) in o.iter_mut().zip(brow) {
                    *ov += av * bv;
                }
            }
        }
        i0 = i1;
    }
}

/// x[r, c] → xt[c, r] for a row-major [rows, cols] matrix.
fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut xt = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            xt[c * rows + r] = x[r * cols + c];
        }
    }
    xt
}

pub fn linear_fwd(
    out: &mut [f32],
    inp: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    n: usize,
    k: usize,
    m: usize,
) {
    if n == 0 || m == 0 {
        return;
    }
    let wt = transpose(&w[..m * k], m, k);
    let wt = &wt;
    let chunk = par::chunk_rows(n, 2 * k * m);
    par::run(out[..n * m].chunks_mut(chunk * m).enumerate(), |(c, o)| {
        let r0 = c * chunk;
        let rows = o.len() / m;
        for orow in o.chunks_mut(m) {
            match b {
                Some(b) => orow.copy_from_slice(&b[..m]),
                None => orow.fill(0.0),
            }
        }
        gemm_acc(o, &inp[r0 * k..], k, wt, rows, k, m);
    });
}

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
) {
    if n == 0 || m == 0 {
        return;
    }
    if let Some(dinp) = dinp {
        if k > 0 {
            // dinp[n,k] += dout[n,m] · w[m,k]
            let chunk = par::chunk_rows(n, 2 * k * m);
            par::run(
                dinp[..n * k].chunks_mut(chunk * k).enumerate(),
                |(c, di)| {
                    let r0 = c * chunk;
                    gemm_acc(di, &dout[r0 * m..], m, w, di.len() / k, m, k);
                },
            );
        }
    }
    if k > 0 {
        // dw[m,k] += doutᵀ[m,n] · inp[n,k], in f32 per block of rows and f64 across blocks
        let dt = transpose(&dout[..n * m], n, m);
        let dt = &dt;
        let chunk = par::chunk_rows(m, 2 * n * k);
        par::run(dw[..m * k].chunks_mut(chunk * k).enumerate(), |(c, dwc)| {
            let j0 = c * chunk;
            let rows = dwc.len() / k;
            let mut part = vec![0f32; rows * k];
            let mut acc = vec![0f64; rows * k];
            let mut i0 = 0;
            while i0 < n {
                let i1 = (i0 + INNER_BLOCK).min(n);
                part.fill(0.0);
                gemm_acc(
                    &mut part,
                    &dt[j0 * n + i0..],
                    n,
                    &inp[i0 * k..i1 * k],
                    rows,
                    i1 - i0,
                    k,
                );
                for (a, &p) in acc.iter_mut().zip(&part) {
                    *a += p as f64;
                }
                i0 = i1;
            }
            for (d, &a) in dwc.iter_mut().zip(&acc) {
                *d = (*d as f64 + a) as f32;
            }
        });
    }
    if let Some(db) = db {
        let mut acc = vec![0f64; m];
        for g in dout[..n * m].chunks(m) {
            for (a, &gv) in acc.iter_mut().zip(g) {
                *a += gv as f64;
            }
        }
        for (d, a) in db[..m].iter_mut().zip(acc) {
            *d = (*d as f64 + a) as f32;
        }
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
        let mut dinp = if tape.requires_grad(inp) {
            Some(tape.take_grad(dev, inp)?)
        } else {
            None
        };
        let (pw, pg) = (&p.values, &mut p.grads);
        let (dw, db) = two_mut(pg, w.0, b.0)?;
        dev.linear_bwd(
            dinp.as_mut(),
            dw,
            Some(db),
            &dout,
            tape.buf(inp)?,
            &pw[w.0],
            n,
            k,
            m,
        )?;
        if let Some(d) = dinp {
            tape.put_grad(inp, d);
        }
    }
    tape.free(dev, out);
    Ok(())
}
