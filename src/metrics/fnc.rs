//! Fast per-era neutralization by the normal equations, and numerai-tools' `neutralize`.
//!
//! The design matrix is `A = [features, 1]` (m rows, n = nf + 1 columns). Features are small
//! integers (0..4 after imputation), so `XᵀX` is computed exactly in f32 through the GEMM of
//! `ops::linear` (every partial sum is an integer below 2²⁴), then the Gram matrix
//! `G = AᵀA` is Cholesky-factored in f64 with the ones column first, which centres the features
//! in the first elimination step. `x = G⁻¹Aᵀb` is refined twice from the residual
//! (`x += G⁻¹Aᵀ(b − Ax)`, the corrected semi-normal equations).
//!
//! numpy's `lstsq(A, b, rcond=1e-6)` drops singular values at or below `1e-6·σ_max`. When A is
//! well conditioned all are kept, the least-squares solution is unique and this residual equals
//! numpy's to rounding.
//!
//! Real feature sets are often rank deficient (a constant feature, duplicated or exactly dependent
//! columns). The factorization then drops every column whose Cholesky pivot is under
//! [`DROP_PIVOT`] of its own squared norm, keeping a column set K. The residual `b − A·lstsq(A, b)`
//! depends only on the column space numpy keeps, so it equals the projection residual onto
//! `span(A_K)` when (1) `κ(A_K) < MAX_COND`, so every singular value of A_K, and by interlacing the k
//! largest of A, is far above the cut, and (2) every dropped column lies in `span(A_K)` to
//! [`DEPENDENT`] of its norm (checked on its refined residual), so the other singular values of A
//! are far below it. Both are checked; when either fails (or a pivot is NaN, or more than
//! [`MAX_DROPPED`] columns would be dropped) this returns None and the callers use the
//! rank-revealing path of `corr::neutralize`.

pub use super::chol::{chol_solve, cholesky, cholesky_dropping};
use super::lstsq::{dot, neutralize as neutralize_lstsq, NEUTRALIZE_RCOND};

/// Largest `σ_max(A)/σ_min(A)` the normal equations are used for: a tenth of `1/rcond`, so every
/// singular value is surely kept by numpy, and small enough that two refinement steps bring the
/// residual to rounding (error factor `κ²·ε` ≈ 1e-6 per step).
pub const MAX_COND: f64 = 1e5;

/// A column whose Cholesky pivot (its squared distance to the earlier kept columns) is under this
/// fraction of its squared norm is dropped as dependent (then verified, see [`DEPENDENT`]).
pub const DROP_PIVOT: f64 = 1e-9;

/// A dropped column is accepted as dependent when its refined residual against the kept columns
/// is under this fraction of its norm (exact dependencies give ~1e-14).
pub const DEPENDENT: f64 = 1e-10;

/// More dropped columns than this: use the rank-revealing path (each costs a residual check).
pub const MAX_DROPPED: usize = 256;

/// `b − A·lstsq(A, b, 1e-6)` for `A = [features, 1]` (`features` row-major `[m, nf]`, small
/// non-negative integers) through the normal equations on A's independent columns; None when
/// they are too ill-conditioned, a dropped column is not exactly dependent, the features are too
/// large for exact f32 sums, or the shapes do not fit.
pub fn neutralize_normal(features: &[u8], m: usize, nf: usize, b: &[f64]) -> Option<Vec<f64>> {
    if m == 0 || b.len() != m || features.len() != m * nf {
        return None;
    }
    let vmax = features.iter().copied().max().unwrap_or(0) as f64;
    if (m as f64) * vmax * vmax >= (1u64 << 24) as f64 {
        return None;
    }
    let n = nf + 1;
    // G row-major [n, n], index 0 = the ones column
    let mut g = vec![0.0f64; n * n];
    g[0] = m as f64;
    let mut colsum = vec![0u64; nf];
    for row in features.chunks_exact(nf.max(1)) {
        for (s, &v) in colsum.iter_mut().zip(row) {
            *s += v as u64;
        }
    }
    for (j, &s) in colsum.iter().enumerate() {
        g[j + 1] = s as f64;
        g[(j + 1) * n] = s as f64;
    }
    if nf > 0 {
        let x: Vec<f32> = features.iter().map(|&v| v as f32).collect();
        let xtx = gram_lower(&x, m, nf).ok()?;
        for i in 0..nf {
            for (gv, &v) in g[(i + 1) * n + 1..(i + 1) * n + 2 + i]
                .iter_mut()
                .zip(&xtx[i * nf..i * nf + i + 1])
            {
                *gv = v as f64;
            }
        }
    }
    let (l, kept) = cholesky_dropping(&g, n, DROP_PIVOT)?;
    if kept.len() == n {
        if !well_conditioned(&g, &l, n) {
            return None;
        }
        return project_out(features, m, nf, &l, b);
    }
    // the ones column (index 0, norm² m > 0) is always kept first
    let dropped: Vec<usize> = (0..n).filter(|j| !kept.contains(j)).collect();
    if dropped.len() > MAX_DROPPED || kept.first() != Some(&0) {
        return None;
    }
    let k = kept.len();
    let gk: Vec<f64> = kept
        .iter()
        .flat_map(|&i| kept.iter().map(move |&j| (i, j)))
        .map(|(i, j)| if j <= i { g[i * n + j] } else { g[j * n + i] })
        .collect();
    let lr = &l;
    let lk: Vec<f64> = kept
        .iter()
        .flat_map(|&i| kept.iter().map(move |&j| lr[i * n + j]))
        .collect();
    if !well_conditioned(&gk, &lk, k) {
        return None;
    }
    // A_K's feature columns, compact (kept[0] is the ones column)
    let kf: Vec<usize> = kept[1..].iter().map(|&j| j - 1).collect();
    let fk: Vec<u8> = features
        .chunks_exact(nf)
        .flat_map(|row| kf.iter().map(move |&j| row[j]))
        .collect();
    for &d in &dropped {
        let col: Vec<f64> = if d == 0 {
            vec![1.0; m]
        } else {
            features.chunks_exact(nf).map(|r| r[d - 1] as f64).collect()
        };
        let norm = dot(&col, &col).sqrt();
        let r = project_out(&fk, m, k - 1, &lk, &col)?;
        if dot(&r, &r).sqrt() > DEPENDENT * norm {
            return None;
        }
    }
    project_out(&fk, m, k - 1, &lk, b)
}

/// Columns of `XᵀX` computed per panel of [`GRAM_PANEL`] rows of the result.
const GRAM_PANEL: usize = 256;

/// The lower triangle (diagonal included) of `XᵀX` for row-major `x` [m, nf], row-major [nf, nf];
/// the entries above the diagonal are unspecified. One GEMM per panel of result rows `i0..i1`, over columns
/// `0..i1` only, so about half the flops of the full product. Every partial sum of the callers'
/// small integer (or half-integer) features is on a grid below 2²⁴, so any summation order is
/// exact in f32.
pub(crate) fn gram_lower(x: &[f32], m: usize, nf: usize) -> crate::Result<Vec<f32>> {
    let mut c = vec![0f32; nf * nf];
    let mut i0 = 0;
    while i0 < nf {
        let i1 = (i0 + GRAM_PANEL).min(nf);
        crate::ops::gemm::Gemm {
            lda: nf,
            ldb: nf,
            ldc: nf,
            ..crate::ops::gemm::Gemm::new(true, false, i1 - i0, i1, m)
        }
        .run(&x[i0..], x, &mut c[i0 * nf..])?;
        i0 = i1;
    }
    Ok(c)
}

/// `b − A·G⁻¹Aᵀb` for `A = [1, features]` with `L Lᵀ = G = AᵀA`, refined twice from the residual
/// (`x += G⁻¹Aᵀ(b − Ax)`, the corrected semi-normal equations); None if not finite.
fn project_out(features: &[u8], m: usize, nf: usize, l: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    let n = nf + 1;
    let mut x = vec![0.0; n];
    let mut r = b.to_vec();
    for _ in 0..3 {
        // r = b − A x (current), then x += G⁻¹ Aᵀ r
        let atr = at_times(features, m, nf, &r);
        let dx = chol_solve(l, n, &atr);
        for (xi, d) in x.iter_mut().zip(&dx) {
            *xi += d;
        }
        r = residual(features, m, nf, b, &x);
    }
    r.iter().all(|v| v.is_finite()).then_some(r)
}

/// `Aᵀv` for `A = [1, features]` (ones column first).
fn at_times(features: &[u8], m: usize, nf: usize, v: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; nf + 1];
    for (row, &vi) in features.chunks_exact(nf.max(1)).zip(v).take(m) {
        out[0] += vi;
        for (o, &f) in out[1..].iter_mut().zip(row) {
            *o += f as f64 * vi;
        }
    }
    if nf == 0 {
        out[0] = v.iter().sum();
    }
    out
}

/// `b − A x` for `A = [1, features]`.
fn residual(features: &[u8], m: usize, nf: usize, b: &[f64], x: &[f64]) -> Vec<f64> {
    (0..m)
        .map(|i| {
            let row = &features[i * nf..(i + 1) * nf];
            let ax: f64 = x[0]
                + row
                    .iter()
                    .zip(&x[1..])
                    .map(|(&f, xi)| f as f64 * xi)
                    .sum::<f64>();
            b[i] - ax
        })
        .collect()
}

/// True when `λ_max(G)/λ_min(G) < MAX_COND²` (G = AᵀA, so that is `κ(A) < MAX_COND`): λ_max by
/// power iteration on G, λ_min by inverse iteration through the Cholesky factor, 30 steps each
/// from a fixed start (the 10× margin of [`MAX_COND`] to the cut covers their error). The two
/// iterations are independent and run side by side on the worker pool.
fn well_conditioned(g: &[f64], l: &[f64], n: usize) -> bool {
    let start: Vec<f64> = (0..n)
        .map(|i| 1.0 + ((i * 7919) % 97) as f64 / 97.0)
        .collect();
    let normalize = |v: &mut Vec<f64>| -> f64 {
        let s = dot(v, v).sqrt();
        if s > 0.0 {
            v.iter_mut().for_each(|x| *x /= s);
        }
        s
    };
    // the largest eigenvalue of G, or (inverse) of G⁻¹
    let iterate = |inverse: bool| -> f64 {
        let mut v = start.clone();
        normalize(&mut v);
        let mut est = 0.0;
        if inverse {
            for _ in 0..30 {
                let mut w = chol_solve(l, n, &v);
                est = normalize(&mut w);
                v = w;
            }
            return est;
        }
        // G is symmetric but only its lower triangle is certain to be filled: mirror it once,
        // so every product reads contiguous rows
        let mut full = g[..n * n].to_vec();
        for i in 0..n {
            for j in i + 1..n {
                full[i * n + j] = g[j * n + i];
            }
        }
        for _ in 0..30 {
            let mut w: Vec<f64> = full
                .chunks_exact(n.max(1))
                .map(|row| dot(row, &v))
                .collect();
            est = normalize(&mut w);
            v = w;
        }
        est
    };
    let est = crate::ops::par::run([false, true], iterate);
    let (lmax, inv_max) = (est[0], est[1]);
    lmax.is_finite() && inv_max.is_finite() && inv_max > 0.0 && lmax * inv_max < MAX_COND * MAX_COND
}

/// `b − A·lstsq(A, b, 1e-6)` for `A = [features, 1]`: the normal equations when they are safe,
/// else the rank-revealing path (`corr::neutralize`).
pub fn neutralize_features(features: &[u8], m: usize, nf: usize, b: &[f64]) -> Vec<f64> {
    if let Some(r) = neutralize_normal(features, m, nf, b) {
        return r;
    }
    let n = nf + 1;
    let mut a = vec![1.0; m * n];
    for i in 0..m {
        for f in 0..nf {
            a[i * n + f] = features[i * nf + f] as f64;
        }
    }
    neutralize_lstsq(&a, m, n, b, NEUTRALIZE_RCOND)
}

/// numerai-tools `neutralize(df, neutralizers, proportion)` for one era and one column of
/// predictions: `preds − proportion · A·lstsq(A, preds, rcond=1e-6)` with `A = [features, 1]`
/// (`features` row-major `[rows, nf]`). As there, predictions with zero standard deviation become
/// NaN, and NaN predictions are an error (numerai-tools asserts): returns None for them.
pub fn neutralize_era(
    preds: &[f64],
    features: &[u8],
    nf: usize,
    proportion: f64,
) -> Option<Vec<f64>> {
    let m = preds.len();
    if preds.iter().any(|v| v.is_nan()) || features.len() != m * nf {
        return None;
    }
    if m == 0 || preds.iter().all(|v| *v == preds[0]) {
        return Some(vec![f64::NAN; m]);
    }
    let r = neutralize_features(features, m, nf, preds);
    Some(
        preds
            .iter()
            .zip(&r)
            .map(|(b, ri)| b - proportion * (b - ri))
            .collect(),
    )
}

/// [`neutralize_era`] over contiguous eras: `era_rows[k]` rows for era k, `features` row-major
/// `[total rows, nf]`. An error names the era whose predictions hold NaN.
pub fn neutralize(
    preds: &[f64],
    era_rows: &[usize],
    features: &[u8],
    nf: usize,
    proportion: f64,
) -> crate::Result<Vec<f64>> {
    let total: usize = era_rows.iter().sum();
    if total != preds.len() || features.len() != total * nf {
        return Err(crate::Error::shape(format!(
            "neutralize: {} predictions and {} feature values for {} rows of {} features",
            preds.len(),
            features.len(),
            total,
            nf
        )));
    }
    if !proportion.is_finite() {
        return Err(crate::Error::usage(format!(
            "neutralize: proportion {proportion} is not a finite number"
        )));
    }
    let mut out = Vec::with_capacity(total);
    let mut at = 0;
    for (k, &rows) in era_rows.iter().enumerate() {
        let p = &preds[at..at + rows];
        let f = &features[at * nf..(at + rows) * nf];
        let n = neutralize_era(p, f, nf, proportion).ok_or_else(|| {
            crate::Error::usage(format!("neutralize: era {k} has NaN predictions"))
        })?;
        out.extend(n);
        at += rows;
    }
    Ok(out)
}
