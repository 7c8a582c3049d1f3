//! Layer norm's row loops with intrinsics, written once against [`Wide`] (eight f64 lanes: one
//! AVX-512 register, or two AVX2 ones) and compiled for each: the eight lanes are exactly the
//! eight interleaved partial sums of `sum8`, so every value is computed by the same operations in
//! the same order as the baseline loops of `mod.rs` (separate multiplies and adds, no fused
//! multiply-add, the same pairwise combination and tail), and the bits agree on every path
//! (`tests/ops_linear.rs` forces each). Left to the auto-vectoriser, the f32 → f64 partial sums
//! came out as 128-bit code with shuffles, about 4× slower than this on AVX-512 and 1.6–1.9×
//! slower on AVX2 (Zen 3, forward and backward at 5,000 × 64).

use super::LN_EPS;
use crate::ops::gemm::Simd;
use std::arch::x86_64::*;

/// Eight f64 lanes, with the f32 ↔ f64 conversions the loops need.
///
/// # Safety (every method)
/// The caller runs inside a function compiled for the impl's instruction set, on a CPU that has
/// it; pointers are valid for the 8 values read or written.
trait Wide: Copy {
    unsafe fn zero() -> Self;
    unsafe fn splat(x: f64) -> Self;
    unsafe fn load(p: *const f64) -> Self;
    unsafe fn store(p: *mut f64, v: Self);
    unsafe fn add(a: Self, b: Self) -> Self;
    unsafe fn sub(a: Self, b: Self) -> Self;
    unsafe fn mul(a: Self, b: Self) -> Self;
    /// Eight f32 at `p`, widened.
    unsafe fn widen(p: *const f32) -> Self;
    /// The eight lanes rounded to f32, in order.
    unsafe fn narrow(v: Self) -> __m256;
}

// SAFETY (every method of both impls): as the trait's contract.
impl Wide for __m512d {
    #[inline(always)]
    unsafe fn zero() -> Self {
        _mm512_setzero_pd()
    }
    #[inline(always)]
    unsafe fn splat(x: f64) -> Self {
        _mm512_set1_pd(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f64) -> Self {
        _mm512_loadu_pd(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f64, v: Self) {
        _mm512_storeu_pd(p, v)
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        _mm512_add_pd(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: Self, b: Self) -> Self {
        _mm512_sub_pd(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        _mm512_mul_pd(a, b)
    }
    #[inline(always)]
    unsafe fn widen(p: *const f32) -> Self {
        _mm512_cvtps_pd(_mm256_loadu_ps(p))
    }
    #[inline(always)]
    unsafe fn narrow(v: Self) -> __m256 {
        _mm512_cvtpd_ps(v)
    }
}

/// Eight f64 lanes as two AVX2 registers (lanes 0–3, 4–7).
#[derive(Clone, Copy)]
struct D2(__m256d, __m256d);

impl Wide for D2 {
    #[inline(always)]
    unsafe fn zero() -> Self {
        D2(_mm256_setzero_pd(), _mm256_setzero_pd())
    }
    #[inline(always)]
    unsafe fn splat(x: f64) -> Self {
        let v = _mm256_set1_pd(x);
        D2(v, v)
    }
    #[inline(always)]
    unsafe fn load(p: *const f64) -> Self {
        D2(_mm256_loadu_pd(p), _mm256_loadu_pd(p.add(4)))
    }
    #[inline(always)]
    unsafe fn store(p: *mut f64, v: Self) {
        _mm256_storeu_pd(p, v.0);
        _mm256_storeu_pd(p.add(4), v.1);
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        D2(_mm256_add_pd(a.0, b.0), _mm256_add_pd(a.1, b.1))
    }
    #[inline(always)]
    unsafe fn sub(a: Self, b: Self) -> Self {
        D2(_mm256_sub_pd(a.0, b.0), _mm256_sub_pd(a.1, b.1))
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        D2(_mm256_mul_pd(a.0, b.0), _mm256_mul_pd(a.1, b.1))
    }
    #[inline(always)]
    unsafe fn widen(p: *const f32) -> Self {
        D2(
            _mm256_cvtps_pd(_mm_loadu_ps(p)),
            _mm256_cvtps_pd(_mm_loadu_ps(p.add(4))),
        )
    }
    #[inline(always)]
    unsafe fn narrow(v: Self) -> __m256 {
        _mm256_set_m128(_mm256_cvtpd_ps(v.1), _mm256_cvtpd_ps(v.0))
    }
}

/// Eight f32 at `p[k..k + 8]` widened to f64.
///
/// # Safety
/// `V`'s instruction set (the caller's contract); `k + 8 <= p.len()` (checked by the slice).
#[inline(always)]
unsafe fn cvt8<V: Wide>(p: &[f32], k: usize) -> V {
    let s = &p[k..k + 8];
    // SAFETY: `s` holds 8 floats; the instruction set is the caller's contract.
    unsafe { V::widen(s.as_ptr()) }
}

/// The eight lanes summed as `sum8` combines its partial sums: ((0+1)+(2+3))+((4+5)+(6+7)).
#[inline(always)]
unsafe fn pair<V: Wide>(v: V) -> f64 {
    let mut a = [0f64; 8];
    // SAFETY: `a` holds 8 doubles; the instruction set is the caller's contract.
    unsafe { V::store(a.as_mut_ptr(), v) };
    ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
}

/// `row_stats` of `mod.rs` for `N` rows of equal length at once: (μ, 1/√(σ² + eps)) in f64,
/// bit for bit. The rows' dependency chains (a chain of adds per pass) interleave, so a short row
/// does not wait on the latency of its own adds.
///
/// # Safety
/// The CPU supports `V`'s instruction set and the caller is compiled for it; every row has the
/// length of `rows[0]`.
#[inline(always)]
unsafe fn row_stats_n<V: Wide, const N: usize>(rows: [&[f32]; N]) -> [(f64, f64); N] {
    let len = rows[0].len();
    let d = len.max(1) as f64;
    let full = len / 8 * 8;
    let rows = rows.map(|r| &r[..len]);
    // SAFETY (all intrinsics below): `V`'s instruction set is this function's contract; loads go
    // through `cvt8` on ranges below `full`.
    unsafe {
        let mut acc = [V::zero(); N];
        for k in (0..full).step_by(8) {
            for (a, x) in acc.iter_mut().zip(&rows) {
                *a = V::add(*a, cvt8::<V>(x, k));
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
        let mv = m.map(|v| V::splat(v));
        let mut acc = [V::zero(); N];
        for k in (0..full).step_by(8) {
            for ((a, x), &mvr) in acc.iter_mut().zip(&rows).zip(&mv) {
                let c = V::sub(cvt8::<V>(x, k), mvr);
                *a = V::add(*a, V::mul(c, c));
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
/// The CPU supports `V`'s instruction set and the caller is compiled for it; `d > 0`, `stats` holds
/// `x.len() / d` entries.
#[inline(always)]
unsafe fn stats_rows<V: Wide>(stats: &mut [(f64, f64)], x: &[f32], d: usize) {
    let mut groups = x.chunks_exact(GROUP * d);
    let mut out = stats.chunks_exact_mut(GROUP);
    for (g, o) in (&mut groups).zip(&mut out) {
        let rows: [&[f32]; GROUP] = std::array::from_fn(|r| &g[r * d..(r + 1) * d]);
        // SAFETY: `V`'s instruction set is the caller's contract; the rows are d long.
        o.copy_from_slice(&unsafe { row_stats_n::<V, GROUP>(rows) });
    }
    for (row, o) in groups.remainder().chunks_exact(d).zip(out.into_remainder()) {
        // SAFETY: as above.
        *o = unsafe { row_stats_n::<V, 1>([row]) }[0];
    }
}

/// Rows whose statistics are computed before their other passes (a stack buffer).
const BLOCK: usize = 64;

/// The forward over a chunk of rows (rows of length d): `o = ((x − μ)·rstd) as f32 · γ + β`,
/// μ and rstd saved as f32.
///
/// # Safety
/// The CPU supports `V`'s instruction set and the caller is compiled for it; `o` and `x` have the
/// same length, a multiple of d; `mu` and `rs` hold a value per row; `gamma` and `beta` are at
/// least d long. With d = 0 there is nothing to do.
#[inline(always)]
unsafe fn fwd_rows_on<V: Wide>(
    o: &mut [f32],
    mu: &mut [f32],
    rs: &mut [f32],
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    d: usize,
) {
    if d == 0 {
        return;
    }
    let (gamma, beta) = (&gamma[..d], &beta[..d]);
    let full = d / 8 * 8;
    let mut stats = [(0f64, 0f64); BLOCK];
    let blocks = o
        .chunks_mut(BLOCK * d)
        .zip(x.chunks(BLOCK * d))
        .zip(mu.chunks_mut(BLOCK).zip(rs.chunks_mut(BLOCK)));
    for ((ob, xb), (mub, rsb)) in blocks {
        let st = &mut stats[..xb.len() / d];
        // SAFETY: `V`'s instruction set is this function's contract; `st` holds a slot per row of
        // `xb`.
        unsafe { stats_rows::<V>(st, xb, d) };
        let rows = ob.chunks_exact_mut(d).zip(xb.chunks_exact(d));
        for (((orow, xr), &(m, r)), (mo, ro)) in rows.zip(st.iter()).zip(mub.iter_mut().zip(rsb)) {
            *mo = m as f32;
            *ro = r as f32;
            // SAFETY (intrinsics): `V`'s instruction set is this function's contract; every load
            // and store covers `k..k + 8` with `k + 8 <= full <= d`, the length of all four slices.
            unsafe {
                let (mv, rv) = (V::splat(m), V::splat(r));
                for k in (0..full).step_by(8) {
                    let y = V::narrow(V::mul(V::sub(cvt8::<V>(xr, k), mv), rv));
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

/// The backward over a chunk of rows (the loop of `layer_norm_bwd_on`): adds each row's dx to `di`
/// (`ACC`) or writes it there, Σ dout·x̂ and Σ dout to `acc[..d]` and `acc[d..2d]`; `xhat` and
/// `dxhat` are scratch of length d.
///
/// # Safety
/// The CPU supports `V`'s instruction set and the caller is compiled for it; `di`, `x` and `g`
/// have the same length, a multiple of d; `gamma`, `xhat`, `dxhat` are at least d long and
/// `acc` at least 2d. With d = 0 there is nothing to do.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn bwd_rows_on<V: Wide, const ACC: bool>(
    di: &mut [f32],
    acc: &mut [f64],
    xhat: &mut [f64],
    dxhat: &mut [f64],
    x: &[f32],
    g: &[f32],
    gamma: &[f32],
    d: usize,
) {
    if d == 0 {
        return;
    }
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
        // SAFETY: `V`'s instruction set is this function's contract; `st` holds a slot per row of
        // `xb`.
        unsafe { stats_rows::<V>(st, xb, d) };
        let rows = db
            .chunks_exact_mut(d)
            .zip(xb.chunks_exact(d).zip(gb.chunks_exact(d)));
        for ((drow, (xr, gr)), &(mu, rs)) in rows.zip(st.iter()) {
            // SAFETY (intrinsics): `V`'s instruction set is this function's contract; every load
            // and store covers `k..k + 8` with `k + 8 <= full <= d`, the length of every slice
            // indexed.
            unsafe {
                let (muv, rsv) = (V::splat(mu), V::splat(rs));
                let (mut s1, mut s2) = (V::zero(), V::zero());
                for k in (0..full).step_by(8) {
                    let xh = V::mul(V::sub(cvt8::<V>(xr, k), muv), rsv);
                    let gk = cvt8::<V>(gr, k);
                    let dxh = V::mul(gk, cvt8::<V>(gamma, k));
                    V::store(xhat[k..k + 8].as_mut_ptr(), xh);
                    V::store(dxhat[k..k + 8].as_mut_ptr(), dxh);
                    let pg = ag[k..k + 8].as_mut_ptr();
                    V::store(pg, V::add(V::load(pg), V::mul(gk, xh)));
                    let pb = ab[k..k + 8].as_mut_ptr();
                    V::store(pb, V::add(V::load(pb), gk));
                    s1 = V::add(s1, dxh);
                    s2 = V::add(s2, V::mul(dxh, xh));
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
                let (m1, m2) = (V::splat(mean_dxh), V::splat(mean_dxh_xh));
                for k in (0..full).step_by(8) {
                    let xh = V::load(xhat[k..k + 8].as_ptr());
                    let dxh = V::load(dxhat[k..k + 8].as_ptr());
                    let t = V::sub(V::sub(dxh, m1), V::mul(xh, m2));
                    let t = V::narrow(V::mul(rsv, t));
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

/// `fn $name(simd, args…) -> bool`: runs `$body::<__m512d>` compiled for AVX-512 or
/// `$body::<D2>` compiled for AVX2 + FMA (with the const flag, when given, passed on) when `simd`
/// is that path and this CPU has it, and returns true; otherwise does nothing and returns false
/// (the baseline loops of `mod.rs` run).
macro_rules! per_isa {
    ($(#[$m:meta])* $vis:vis fn $name:ident$(<const $c:ident: bool>)?($($a:ident: $t:ty),* $(,)?)
        => $body:ident) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name$(<const $c: bool>)?(simd: Simd, $($a: $t),*) -> bool {
            #[target_feature(enable = "avx512f,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn v512$(<const $c: bool>)?($($a: $t),*) {
                $body::<__m512d $(, $c)?>($($a),*)
            }
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn v256$(<const $c: bool>)?($($a: $t),*) {
                $body::<D2 $(, $c)?>($($a),*)
            }
            if !simd.available() {
                return false;
            }
            match simd {
                // SAFETY: this CPU has AVX-512F (and AVX2, FMA): `available`, checked above.
                Simd::Avx512 => unsafe { v512$(::<$c>)?($($a),*) },
                // SAFETY: this CPU has AVX2 and FMA (as above).
                Simd::Avx2 => unsafe { v256$(::<$c>)?($($a),*) },
                Simd::Portable => return false,
            }
            true
        }
    };
}

per_isa!(
    /// [`fwd_rows_on`] for `simd`: `o` and `x` of the same length, a multiple of d, a `mu` and
    /// `rs` value per row, `gamma` and `beta` at least d long (a shorter slice panics).
    pub(super) fn fwd_rows(o: &mut [f32], mu: &mut [f32], rs: &mut [f32], x: &[f32],
        gamma: &[f32], beta: &[f32], d: usize) => fwd_rows_on
);
per_isa!(fn bwd_isa<const ACC: bool>(di: &mut [f32], acc: &mut [f64], xhat: &mut [f64],
    dxhat: &mut [f64], x: &[f32], g: &[f32], gamma: &[f32], d: usize) => bwd_rows_on);

/// [`bwd_rows_on`] for `simd` (as `per_isa!` runs it), dx added to `di` when `accumulate`, else
/// written: `di`, `x` and `g` of the same length, a multiple of d, `gamma`, `xhat`, `dxhat` at
/// least d long and `acc` at least 2d.
#[allow(clippy::too_many_arguments)]
pub(super) fn bwd_rows(
    simd: Simd,
    accumulate: bool,
    di: &mut [f32],
    acc: &mut [f64],
    xhat: &mut [f64],
    dxhat: &mut [f64],
    x: &[f32],
    g: &[f32],
    gamma: &[f32],
    d: usize,
) -> bool {
    if accumulate {
        bwd_isa::<true>(simd, di, acc, xhat, dxhat, x, g, gamma, d)
    } else {
        bwd_isa::<false>(simd, di, acc, xhat, dxhat, x, g, gamma, d)
    }
}
