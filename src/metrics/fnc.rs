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
//! numpy's to rounding. The fast path is taken only when the estimated `σ_max/σ_min` is below
//! [`MAX_COND`] (10× inside the cut); otherwise (or when Cholesky meets a non-positive pivot) it
//! returns None and the callers use the rank-revealing path of `corr::neutralize`.

use super::lstsq::{dot, neutralize as neutralize_lstsq, NEUTRALIZE_RCOND};

/// Largest `σ_max(A)/σ_min(A)` the normal equations are used for: a tenth of `1/rcond`, so every
/// singular value is surely kept by numpy, and small enough that two refinement steps bring the
/// residual to rounding (error factor `κ²·ε` ≈ 1e-6 per step).
pub const MAX_COND: f64 = 1e5;

/// `b − A·lstsq(A, b, 1e-6)` for `A = [features, 1]` (`features` row-major `[m, nf]`, small
/// non-negative integers) through the normal equations; None when A is too ill-conditioned for
/// them, the features too large for exact f32 sums, or the shapes do not fit.
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
        let mut xtx = vec![0f32; nf * nf];
        crate::ops::linear::linear_bwd(None, &mut xtx, None, &x, &x, &[], m, nf, nf).ok()?;
        for i in 0..nf {
            g[(i + 1) * n + 1..(i + 2) * n].copy_from_slice(
                &xtx[i * nf..(i + 1) * nf]
                    .iter()
                    .map(|&v| v as f64)
                    .collect::<Vec<_>>(),
            );
        }
    }
    let l = cholesky(&g, n)?;
    if !well_conditioned(&g, &l, n) {
        return None;
    }
    let mut x = vec![0.0; n];
    let mut r = b.to_vec();
    for _ in 0..3 {
        // r = b − A x (current), then x += G⁻¹ Aᵀ r
        let atr = at_times(features, m, nf, &r);
        let dx = chol_solve(&l, n, &atr);
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

/// Lower Cholesky factor of the symmetric positive definite row-major `[n, n]` matrix `g` (only
/// its lower triangle is read), row-major with zeros above the diagonal; None at a non-positive
/// pivot. Rows are computed in blocks of [`CHOL_BLOCK`] so each earlier row, once loaded, serves
/// the whole block (left-looking, dot products along contiguous rows).
pub fn cholesky(g: &[f64], n: usize) -> Option<Vec<f64>> {
    const CHOL_BLOCK: usize = 16;
    let mut l = vec![0.0f64; n * n];
    let mut i0 = 0;
    while i0 < n {
        let i1 = (i0 + CHOL_BLOCK).min(n);
        // columns j < i0: every row of the block against finished row j
        let (done, rest) = l.split_at_mut(i0 * n);
        for j in 0..i0 {
            let lj = &done[j * n..j * n + j];
            let djj = done[j * n + j];
            for i in i0..i1 {
                let li = &mut rest[(i - i0) * n..(i - i0 + 1) * n];
                let s = g[i * n + j] - dot(&li[..j], lj);
                li[j] = s / djj;
            }
        }
        // the block's own triangle
        for i in i0..i1 {
            for j in i0..=i {
                let s = {
                    let li = &rest[(i - i0) * n..(i - i0) * n + j];
                    let lj = &rest[(j - i0) * n..(j - i0) * n + j];
                    g[i * n + j] - dot(li, lj)
                };
                if i == j {
                    if s.is_nan() || s <= 0.0 {
                        return None;
                    }
                    rest[(i - i0) * n + i] = s.sqrt();
                } else {
                    rest[(i - i0) * n + j] = s / rest[(j - i0) * n + j];
                }
            }
        }
        i0 = i1;
    }
    Some(l)
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

/// True when `λ_max(G)/λ_min(G) < MAX_COND²` (G = AᵀA, so that is `κ(A) < MAX_COND`): λ_max by
/// power iteration on G, λ_min by inverse iteration through the Cholesky factor, 30 steps each
/// from a fixed start (the 10× margin of [`MAX_COND`] to the cut covers their error).
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
    let mut v = start.clone();
    normalize(&mut v);
    let mut lmax = 0.0;
    for _ in 0..30 {
        let mut w: Vec<f64> = (0..n)
            .map(|i| {
                // G is symmetric but only its lower triangle is certain to be filled: use both
                (0..n)
                    .map(|j| {
                        let gij = if j <= i { g[i * n + j] } else { g[j * n + i] };
                        gij * v[j]
                    })
                    .sum()
            })
            .collect();
        lmax = normalize(&mut w);
        v = w;
    }
    let mut v = start;
    normalize(&mut v);
    let mut inv_max = 0.0;
    for _ in 0..30 {
        let mut w = chol_solve(l, n, &v);
        inv_max = normalize(&mut w);
        v = w;
    }
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
