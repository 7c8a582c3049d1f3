//! Cholesky factorization for the normal equations of feature neutralization (`fnc.rs`), at
//! Numerai's size (2,749 × 2,749, ~7 GFLOP): blocked, left-looking, the bulk of the work split over
//! the worker pool, its inner products four rows at a time with AVX2 + FMA when the CPU has them.
//!
//! Left-looking by blocks of [`BLOCK`] rows: for each block, every row of the block is first
//! updated against every finished row j before the block (`L_ij = (g_ij − L_i,<j · L_j,<j) /
//! L_jj`: ~all the flops; the block's rows are split over the threads, each thread reads each
//! finished row once per block and uses it for all its rows), then the block's own triangle is
//! finished on one thread.

use super::lstsq::dot;
use crate::ops::par;

/// Rows per block: the block's rows (× the matrix width × 8 bytes) stay in the L2 caches while
/// the finished rows stream past once per block.
const BLOCK: usize = 64;

/// Lower Cholesky factor of the symmetric positive definite row-major `[n, n]` matrix `g` (only
/// its lower triangle is read), row-major with zeros above the diagonal; None at a non-positive
/// or NaN pivot.
pub fn cholesky(g: &[f64], n: usize) -> Option<Vec<f64>> {
    let (l, kept) = cholesky_dropping(g, n, 0.0)?;
    (kept.len() == n).then_some(l)
}

/// [`cholesky`] that drops dependent columns instead of failing: a column whose pivot is at or
/// under `drop · g_ii` (its squared distance to the span of the earlier kept columns, relative to
/// its squared norm; `drop = 0` drops only non-positive pivots) gets a zero row and column in the
/// factor, so the kept rows and columns of the result are the Cholesky factor of `g` restricted to
/// the kept indices. Returns the factor and the kept indices (ascending); None on a NaN pivot or
/// when `g` is shorter than `n × n`.
pub fn cholesky_dropping(g: &[f64], n: usize, drop: f64) -> Option<(Vec<f64>, Vec<usize>)> {
    if g.len() < n * n {
        return None;
    }
    let mut l = vec![0.0f64; n * n];
    let mut kept = Vec::with_capacity(n);
    let mut i0 = 0;
    while i0 < n {
        let i1 = (i0 + BLOCK).min(n);
        let (done, rest) = l.split_at_mut(i0 * n);
        let block = &mut rest[..(i1 - i0) * n];
        if i0 > 0 {
            // every row of the block against every finished row: the threads take contiguous
            // groups of rows (a multiple of 4, for the 4-row kernel)
            let chunk = par::chunk_rows_aligned(i1 - i0, 2 * i0 * i0, 4);
            par::run(block.chunks_mut(chunk * n).enumerate(), |(c, rows)| {
                update_rows(g, done, rows, n, i0, i0 + c * chunk);
            });
        }
        // the block's own triangle
        for i in i0..i1 {
            for j in i0..=i {
                let s = {
                    let li = &block[(i - i0) * n..(i - i0) * n + j];
                    let lj = &block[(j - i0) * n..(j - i0) * n + j];
                    g[i * n + j] - dot(li, lj)
                };
                if i == j {
                    if s.is_nan() {
                        return None;
                    }
                    if s <= 0.0 || s <= drop * g[i * n + i] {
                        // dependent: zero the whole row so later products see nothing of it
                        block[(i - i0) * n..(i - i0 + 1) * n].fill(0.0);
                    } else {
                        block[(i - i0) * n + i] = s.sqrt();
                        kept.push(i);
                    }
                } else {
                    let djj = block[(j - i0) * n + j];
                    block[(i - i0) * n + j] = if djj == 0.0 { 0.0 } else { s / djj };
                }
            }
        }
        i0 = i1;
    }
    Some((l, kept))
}

/// `rows` (row-major, width n) are rows `r0..` of L: fills their columns `0..jend` from the
/// finished rows `done` (rows `0..jend`), column by column (each column needs the row's earlier
/// columns), four rows at a time.
fn update_rows(g: &[f64], done: &[f64], rows: &mut [f64], n: usize, jend: usize, r0: usize) {
    let nrows = rows.len() / n;
    let mut q = 0;
    while q < nrows {
        let take = (nrows - q).min(4);
        let quad = &mut rows[q * n..(q + take) * n];
        for j in 0..jend {
            let djj = done[j * n + j];
            if djj == 0.0 {
                continue; // a dropped column: its entries stay 0
            }
            let lj = &done[j * n..j * n + j];
            let dots = dots4(quad, n, take, lj);
            for (t, d) in dots.iter().enumerate().take(take) {
                let i = r0 + q + t;
                quad[t * n + j] = (g[i * n + j] - d) / djj;
            }
        }
        q += take;
    }
}

/// The dot products of `lj` (length j) with the first j entries of each of the `take` (≤ 4) rows
/// of `quad` (row stride n).
fn dots4(quad: &[f64], n: usize, take: usize, lj: &[f64]) -> [f64; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        if take == 4 && fma_available() {
            // SAFETY: `fma_available()` checked at run time that the CPU has AVX2 and FMA, the
            // features `dots4_fma` is compiled for; it only reads slices within their bounds.
            return unsafe { dots4_fma(quad, n, lj) };
        }
    }
    let mut out = [0.0; 4];
    for (t, o) in out.iter_mut().enumerate().take(take) {
        *o = dot(&quad[t * n..t * n + lj.len()], lj);
    }
    out
}

#[cfg(target_arch = "x86_64")]
fn fma_available() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    })
}

/// Four dot products sharing `lj`: 4 rows × 2 registers of 4 lanes of accumulators, each `lj`
/// chunk loaded once for the four rows.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `quad` must hold 4 rows of stride `n` with `n >= lj.len()`
/// (checked here by the slicing, which panics rather than reading out of bounds).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dots4_fma(quad: &[f64], n: usize, lj: &[f64]) -> [f64; 4] {
    use std::arch::x86_64::*;
    let j = lj.len();
    let rows = [
        &quad[..j],
        &quad[n..n + j],
        &quad[2 * n..2 * n + j],
        &quad[3 * n..3 * n + j],
    ];
    let mut acc = [_mm256_setzero_pd(); 8];
    let full = j / 8 * 8;
    let mut k = 0;
    while k < full {
        // SAFETY: k + 8 <= full <= j, the length of lj and of every row slice
        let (b0, b1) = (
            _mm256_loadu_pd(lj.as_ptr().add(k)),
            _mm256_loadu_pd(lj.as_ptr().add(k + 4)),
        );
        for (t, r) in rows.iter().enumerate() {
            let p = r.as_ptr().add(k);
            acc[2 * t] = _mm256_fmadd_pd(_mm256_loadu_pd(p), b0, acc[2 * t]);
            acc[2 * t + 1] = _mm256_fmadd_pd(_mm256_loadu_pd(p.add(4)), b1, acc[2 * t + 1]);
        }
        k += 8;
    }
    let mut out = [0.0; 4];
    for (t, (o, r)) in out.iter_mut().zip(rows).enumerate() {
        let mut lanes = [0.0f64; 4];
        _mm256_storeu_pd(
            lanes.as_mut_ptr(),
            _mm256_add_pd(acc[2 * t], acc[2 * t + 1]),
        );
        let mut s = (lanes[0] + lanes[2]) + (lanes[1] + lanes[3]);
        for kk in full..j {
            s += r[kk] * lj[kk];
        }
        *o = s;
    }
    out
}

/// Solves `L Lᵀ x = y` for the row-major lower factor `l`.
pub fn chol_solve(l: &[f64], n: usize, y: &[f64]) -> Vec<f64> {
    let mut z = vec![0.0; n];
    for i in 0..n {
        z[i] = (y[i] - dot(&l[i * n..i * n + i], &z[..i])) / l[i * n + i];
    }
    // Lᵀ x = z: column i of L is row i of Lᵀ; go backwards with axpy on rows
    let mut x = z;
    for i in (0..n).rev() {
        x[i] /= l[i * n + i];
        let xi = x[i];
        let row = &l[i * n..i * n + i];
        for (xk, &lik) in x[..i].iter_mut().zip(row) {
            *xk -= lik * xi;
        }
    }
    x
}
