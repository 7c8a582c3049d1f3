//! Layer norm's row loops on AVX-512, written with intrinsics: eight f64 lanes per register are
//! exactly the eight interleaved partial sums of `sum8`, so every value is computed by the same
//! operations in the same order as the baseline loops of `mod.rs` (separate multiplies and adds,
//! no fused multiply-add, the same pairwise combination and tail), and the bits agree
//! (`tests/ops_linear.rs` forces every path). Left to the auto-vectoriser, the f32 → f64 partial
//! sums came out as 128-bit code with shuffles, about 4× slower than this.

use super::LN_EPS;
use std::arch::x86_64::*;

/// Eight f32 at `p[k..k + 8]` widened to f64.
///
/// # Safety
/// AVX-512F; `k + 8 <= p.len()` (checked by the slice).
#[inline(always)]
unsafe fn cvt8(p: &[f32], k: usize) -> __m512d {
    let s = &p[k..k + 8];
    // SAFETY: `s` holds 8 floats; AVX-512F is the caller's contract.
    unsafe { _mm512_cvtps_pd(_mm256_loadu_ps(s.as_ptr())) }
}

/// The eight lanes summed as `sum8` combines its partial sums: ((0+1)+(2+3))+((4+5)+(6+7)).
#[inline(always)]
unsafe fn pair(v: __m512d) -> f64 {
    let mut a = [0f64; 8];
    // SAFETY: `a` holds 8 doubles; AVX-512F is the caller's contract.
    unsafe { _mm512_storeu_pd(a.as_mut_ptr(), v) };
    ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
}

/// `row_stats` of `mod.rs` for `N` rows of equal length at once: (μ, 1/√(σ² + eps)) in f64,
/// bit for bit. The rows' dependency chains (a chain of adds per pass) interleave, so a short row
/// does not wait on the latency of its own adds.
///
/// # Safety
/// The CPU must support AVX-512F; every row has the length of `rows[0]`.
#[inline(always)]
unsafe fn row_stats_n<const N: usize>(rows: [&[f32]; N]) -> [(f64, f64); N] {
    let len = rows[0].len();
    let d = len.max(1) as f64;
    let full = len / 8 * 8;
    let rows = rows.map(|r| &r[..len]);
    // SAFETY (all intrinsics below): AVX-512F is this function's contract; loads go through `cvt8`
    // on ranges below `full`.
    unsafe {
        let mut acc = [_mm512_setzero_pd(); N];
        for k in (0..full).step_by(8) {
            for (a, x) in acc.iter_mut().zip(&rows) {
                *a = _mm512_add_pd(*a, cvt8(x, k));
            }
        }
        let mut m = [0f64; N];
        for ((mr, &a), x) in m.iter_mut().zip(&acc).zip(&rows) {
            let mut s = pair(a);
            for &v in &x[full..] {
                s += v as f64;
            }
            *mr = s / d;
        }
        let mv = m.map(|v| _mm512_set1_pd(v));
        let mut acc = [_mm512_setzero_pd(); N];
        for k in (0..full).step_by(8) {
            for ((a, x), &mvr) in acc.iter_mut().zip(&rows).zip(&mv) {
                let c = _mm512_sub_pd(cvt8(x, k), mvr);
                *a = _mm512_add_pd(*a, _mm512_mul_pd(c, c));
            }
        }
        let mut out = [(0f64, 0f64); N];
        for (((o, &a), x), &mr) in out.iter_mut().zip(&acc).zip(&rows).zip(&m) {
            let mut s2 = pair(a);
            for &v in &x[full..] {
                let c = v as f64 - mr;
                s2 += c * c;
            }
            *o = (mr, 1.0 / (s2 / d + LN_EPS as f64).sqrt());
        }
        out
    }
}

/// Rows per group whose statistics are computed together.
const GROUP: usize = 4;

/// The statistics of every row of `x` (rows of length d) into `stats`, [`GROUP`] rows at a time.
///
/// # Safety
/// The CPU must support AVX-512F; `d > 0`, `stats` holds `x.len() / d` entries.
#[inline(always)]
unsafe fn stats_rows(stats: &mut [(f64, f64)], x: &[f32], d: usize) {
    let mut groups = x.chunks_exact(GROUP * d);
    let mut out = stats.chunks_exact_mut(GROUP);
    for (g, o) in (&mut groups).zip(&mut out) {
        let rows: [&[f32]; GROUP] = std::array::from_fn(|r| &g[r * d..(r + 1) * d]);
        // SAFETY: AVX-512F is the caller's contract; the rows are d long.
        o.copy_from_slice(&unsafe { row_stats_n(rows) });
    }
    for (row, o) in groups.remainder().chunks_exact(d).zip(out.into_remainder()) {
        // SAFETY: as above.
        *o = unsafe { row_stats_n([row]) }[0];
    }
}

/// Rows whose statistics are computed before their other passes (a stack buffer).
const BLOCK: usize = 64;

/// The forward over a chunk of rows (rows of length d): `o = ((x − μ)·rstd) as f32 · γ + β`,
/// μ and rstd saved as f32.
///
/// # Safety
/// The CPU must support AVX-512F; `d > 0`, `o` and `x` have the same length, a multiple of d;
/// `mu` and `rs` hold a value per row; `gamma` and `beta` are at least d long.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn fwd_rows(
    o: &mut [f32],
    mu: &mut [f32],
    rs: &mut [f32],
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    d: usize,
) {
    let (gamma, beta) = (&gamma[..d], &beta[..d]);
    let full = d / 8 * 8;
    let mut stats = [(0f64, 0f64); BLOCK];
    let blocks = o
        .chunks_mut(BLOCK * d)
        .zip(x.chunks(BLOCK * d))
        .zip(mu.chunks_mut(BLOCK).zip(rs.chunks_mut(BLOCK)));
    for ((ob, xb), (mub, rsb)) in blocks {
        let st = &mut stats[..xb.len() / d];
        // SAFETY: AVX-512F is this function's contract; `st` holds a slot per row of `xb`.
        unsafe { stats_rows(st, xb, d) };
        let rows = ob.chunks_exact_mut(d).zip(xb.chunks_exact(d));
        for (((orow, xr), &(m, r)), (mo, ro)) in rows.zip(st.iter()).zip(mub.iter_mut().zip(rsb)) {
            *mo = m as f32;
            *ro = r as f32;
            // SAFETY (intrinsics): AVX-512F is this function's contract; every load and store
            // covers `k..k + 8` with `k + 8 <= full <= d`, the length of all four slices.
            unsafe {
                let (mv, rv) = (_mm512_set1_pd(m), _mm512_set1_pd(r));
                for k in (0..full).step_by(8) {
                    let y = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_sub_pd(cvt8(xr, k), mv), rv));
                    let g = _mm256_loadu_ps(gamma[k..k + 8].as_ptr());
                    let b = _mm256_loadu_ps(beta[k..k + 8].as_ptr());
                    let y = _mm256_add_ps(_mm256_mul_ps(y, g), b);
                    _mm256_storeu_ps(orow[k..k + 8].as_mut_ptr(), y);
                }
            }
            for k in full..d {
                orow[k] = ((xr[k] as f64 - m) * r) as f32 * gamma[k] + beta[k];
            }
        }
    }
}

/// The backward over a chunk of rows (the loop of `layer_norm_bwd_on`): adds each row's dx to
/// `di` (`ACC`) or writes it there, Σ dout·x̂ and Σ dout to `acc[..d]` and `acc[d..2d]`; `xhat` and `dxhat` are scratch of
/// length d.
///
/// # Safety
/// The CPU must support AVX-512F; `d > 0`; `di`, `x` and `g` have the same length, a multiple of
/// d; `gamma`, `xhat`, `dxhat` are at least d long and `acc` at least 2d.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn bwd_rows<const ACC: bool>(
    di: &mut [f32],
    acc: &mut [f64],
    xhat: &mut [f64],
    dxhat: &mut [f64],
    x: &[f32],
    g: &[f32],
    gamma: &[f32],
    d: usize,
) {
    let gamma = &gamma[..d];
    let (xhat, dxhat) = (&mut xhat[..d], &mut dxhat[..d]);
    let (ag, ab) = acc[..2 * d].split_at_mut(d);
    let full = d / 8 * 8;
    let mut stats = [(0f64, 0f64); BLOCK];
    let blocks = di
        .chunks_mut(BLOCK * d)
        .zip(x.chunks(BLOCK * d).zip(g.chunks(BLOCK * d)));
    for (db, (xb, gb)) in blocks {
        let st = &mut stats[..xb.len() / d];
        // SAFETY: AVX-512F is this function's contract; `st` holds a slot per row of `xb`.
        unsafe { stats_rows(st, xb, d) };
        let rows = db
            .chunks_exact_mut(d)
            .zip(xb.chunks_exact(d).zip(gb.chunks_exact(d)));
        for ((drow, (xr, gr)), &(mu, rs)) in rows.zip(st.iter()) {
            // SAFETY (intrinsics): AVX-512F is this function's contract; every load and store
            // covers `k..k + 8` with `k + 8 <= full <= d`, the length of every slice indexed.
            unsafe {
                let (muv, rsv) = (_mm512_set1_pd(mu), _mm512_set1_pd(rs));
                let (mut s1, mut s2) = (_mm512_setzero_pd(), _mm512_setzero_pd());
                for k in (0..full).step_by(8) {
                    let xh = _mm512_mul_pd(_mm512_sub_pd(cvt8(xr, k), muv), rsv);
                    let gk = cvt8(gr, k);
                    let dxh = _mm512_mul_pd(gk, cvt8(gamma, k));
                    _mm512_storeu_pd(xhat[k..k + 8].as_mut_ptr(), xh);
                    _mm512_storeu_pd(dxhat[k..k + 8].as_mut_ptr(), dxh);
                    let pg = ag[k..k + 8].as_mut_ptr();
                    _mm512_storeu_pd(
                        pg,
                        _mm512_add_pd(_mm512_loadu_pd(pg), _mm512_mul_pd(gk, xh)),
                    );
                    let pb = ab[k..k + 8].as_mut_ptr();
                    _mm512_storeu_pd(pb, _mm512_add_pd(_mm512_loadu_pd(pb), gk));
                    s1 = _mm512_add_pd(s1, dxh);
                    s2 = _mm512_add_pd(s2, _mm512_mul_pd(dxh, xh));
                }
                for k in full..d {
                    let xh = (xr[k] as f64 - mu) * rs;
                    let gk = gr[k] as f64;
                    xhat[k] = xh;
                    dxhat[k] = gk * gamma[k] as f64;
                    ag[k] += gk * xh;
                    ab[k] += gk;
                }
                let (mut sum_dxh, mut sum_dxh_xh) = (pair(s1), pair(s2));
                for k in full..d {
                    sum_dxh += dxhat[k];
                    sum_dxh_xh += dxhat[k] * xhat[k];
                }
                let mean_dxh = sum_dxh / d as f64;
                let mean_dxh_xh = sum_dxh_xh / d as f64;
                let (m1, m2) = (_mm512_set1_pd(mean_dxh), _mm512_set1_pd(mean_dxh_xh));
                for k in (0..full).step_by(8) {
                    let xh = _mm512_loadu_pd(xhat[k..k + 8].as_ptr());
                    let dxh = _mm512_loadu_pd(dxhat[k..k + 8].as_ptr());
                    let t = _mm512_sub_pd(_mm512_sub_pd(dxh, m1), _mm512_mul_pd(xh, m2));
                    let t = _mm512_cvtpd_ps(_mm512_mul_pd(rsv, t));
                    let p = drow[k..k + 8].as_mut_ptr();
                    let t = if ACC {
                        _mm256_add_ps(_mm256_loadu_ps(p), t)
                    } else {
                        t
                    };
                    _mm256_storeu_ps(p, t);
                }
                for k in full..d {
                    let t = (rs * (dxhat[k] - mean_dxh - xhat[k] * mean_dxh_xh)) as f32;
                    drow[k] = if ACC { drow[k] + t } else { t };
                }
            }
        }
    }
}
