//! Per-era scores as numerai-tools computes them (SPEC §5), in f64.
//!
//! `numerai_corr`: predictions tie-kept ranked, `(rank - 0.5) / count`, gaussianized with `norm_ppf`,
//! raised to `sign(x)·|x|^1.5`; target centred on its era mean, raised the same way; Pearson of the two.
//! `feature_neutral_corr`: predictions ranked and gaussianized, neutralized against the features plus a
//! ones column by least squares (`lstsq`, rcond 1e-6, minimum-norm like numpy), divided by their std,
//! then `numerai_corr` again.

/// Relative cut-off under which singular values count as zero in neutralization (numerai-tools).
pub const NEUTRALIZE_RCOND: f64 = 1e-6;

// Wichura (1988), Algorithm AS 241, PPND16: coefficients as published, lowest degree first.
#[allow(clippy::excessive_precision, clippy::unreadable_literal)]
mod as241 {
    pub const A: [f64; 8] = [
        3.3871328727963666080e0,
        1.3314166789178437745e+2,
        1.9715909503065514427e+3,
        1.3731693765509461125e+4,
        4.5921953931549871457e+4,
        6.7265770927008700853e+4,
        3.3430575583588128105e+4,
        2.5090809287301226727e+3,
    ];
    pub const B: [f64; 8] = [
        1.0,
        4.2313330701600911252e+1,
        6.8718700749205790830e+2,
        5.3941960214247511077e+3,
        2.1213794301586595867e+4,
        3.9307895800092710610e+4,
        2.8729085735721942674e+4,
        5.2264952788528545610e+3,
    ];
    pub const C: [f64; 8] = [
        1.42343711074968357734e0,
        4.63033784615654529590e0,
        5.76949722146069140550e0,
        3.64784832476320460504e0,
        1.27045825245236838258e0,
        2.41780725177450611770e-1,
        2.27238449892691845833e-2,
        7.74545014278341407640e-4,
    ];
    pub const D: [f64; 8] = [
        1.0,
        2.05319162663775882187e0,
        1.67638483018380384940e0,
        6.89767334985100004550e-1,
        1.48103976427480074590e-1,
        1.51986665636164571966e-2,
        5.47593808499534494600e-4,
        1.05075007164441684324e-9,
    ];
    pub const E: [f64; 8] = [
        6.65790464350110377720e0,
        5.46378491116411436990e0,
        1.78482653991729133580e0,
        2.96560571828504891230e-1,
        2.65321895265761230930e-2,
        1.24266094738807843860e-3,
        2.71155556874348757815e-5,
        2.01033439929228813265e-7,
    ];
    pub const F: [f64; 8] = [
        1.0,
        5.99832206555887937690e-1,
        1.36929880922735805310e-1,
        1.48753612908506148525e-2,
        7.86869131145613259100e-4,
        1.84631831751005468180e-5,
        1.42151175831644588870e-7,
        2.04426310338993978564e-15,
    ];
}

/// Horner: `c[0] + c[1] x + ... + c[7] x⁷`.
#[inline]
fn poly(c: &[f64; 8], x: f64) -> f64 {
    c.iter().rev().fold(0.0, |acc, ci| acc * x + ci)
}

/// Normal quantile function Φ⁻¹(p): Wichura's AS241 (PPND16), accurate to about 1e-16 relative.
/// Returns -inf at 0, +inf at 1 and NaN outside [0, 1] (as scipy's `norm.ppf`).
pub fn norm_ppf(p: f64) -> f64 {
    use as241::*;
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    let q = p - 0.5;
    if q.abs() <= 0.425 {
        let r = 0.180625 - q * q;
        return q * poly(&A, r) / poly(&B, r);
    }
    // r = min(p, 1 - p); 1 - p is exact for p > 0.5
    let r = if q < 0.0 { p } else { 1.0 - p };
    let r = (-r.ln()).sqrt();
    let val = if r <= 5.0 {
        poly(&C, r - 1.6) / poly(&D, r - 1.6)
    } else {
        poly(&E, r - 5.0) / poly(&F, r - 5.0)
    };
    if q < 0.0 {
        -val
    } else {
        val
    }
}

/// Tie-kept (average) ranks, 1-based, like pandas/scipy `rank(method="average")`. NaN entries get
/// rank NaN and are not counted; `-0.0` and `0.0` tie.
pub fn rank_average(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).filter(|&i| !x[i].is_nan()).collect();
    // NaN-free, so partial_cmp is a total order here
    idx.sort_by(|&a, &b| x[a].partial_cmp(&x[b]).unwrap_or(std::cmp::Ordering::Equal));
    let mut out = vec![f64::NAN; x.len()];
    let mut start = 0;
    while start < idx.len() {
        let mut end = start + 1;
        while end < idx.len() && x[idx[end]] == x[idx[start]] {
            end += 1;
        }
        // positions start..end (0-based) hold one value: average of 1-based ranks start+1..=end
        let avg = (start + 1 + end) as f64 / 2.0;
        for &i in &idx[start..end] {
            out[i] = avg;
        }
        start = end;
    }
    out
}

/// Tie-kept percentile ranks `(rank - 0.5) / count`, strictly inside (0, 1); NaN stays NaN and is
/// not counted (numerai-tools `tie_kept_rank`).
pub fn rank_percentile(x: &[f64]) -> Vec<f64> {
    let mut r = rank_average(x);
    let count = r.iter().filter(|v| !v.is_nan()).count() as f64;
    for v in r.iter_mut() {
        *v = (*v - 0.5) / count;
    }
    r
}

/// Ranks one era's predictions into (0, 1) (what `predict` writes): `rank_percentile`.
pub fn rank_predictions(era_preds: &[f64]) -> Vec<f64> {
    rank_percentile(era_preds)
}

/// Ranks predictions era by era; `era_rows[k]` is the row count of era k, eras contiguous in order.
pub fn rank_predictions_per_era(preds: &[f64], era_rows: &[usize]) -> crate::Result<Vec<f64>> {
    let total: usize = era_rows.iter().sum();
    if total != preds.len() {
        return Err(crate::Error::shape(format!(
            "rank_predictions_per_era: {} predictions but the eras hold {} rows",
            preds.len(),
            total
        )));
    }
    let mut out = Vec::with_capacity(preds.len());
    let mut at = 0;
    for &n in era_rows {
        out.extend(rank_percentile(&preds[at..at + n]));
        at += n;
    }
    Ok(out)
}

/// Tie-kept rank then normal quantile (numerai-tools `gaussian(tie_kept_rank(x))`); NaN stays NaN.
pub fn gaussianize(x: &[f64]) -> Vec<f64> {
    rank_percentile(x).into_iter().map(norm_ppf).collect()
}

/// `sign(x)·|x|^1.5`.
#[inline]
pub fn pow15(x: f64) -> f64 {
    x.signum() * x.abs().powf(1.5)
}

/// Pearson correlation over all entries; None for fewer than 2 entries, a zero-variance input or a
/// non-finite result. Callers drop missing rows first.
pub fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len().min(b.len());
    if n < 2 {
        return None;
    }
    let ma = a[..n].iter().sum::<f64>() / n as f64;
    let mb = b[..n].iter().sum::<f64>() / n as f64;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let da = a[i] - ma;
        let db = b[i] - mb;
        sab += da * db;
        saa += da * da;
        sbb += db * db;
    }
    if saa <= 0.0 || sbb <= 0.0 {
        return None;
    }
    let r = sab / (saa.sqrt() * sbb.sqrt());
    r.is_finite().then_some(r.clamp(-1.0, 1.0))
}

/// Pearson over the rows where both are present (not NaN), like pandas `Series.corr`.
pub fn pearson_present(a: &[f64], b: &[f64]) -> Option<f64> {
    let (x, y) = both_present(a, b);
    pearson(&x, &y)
}

fn both_present(a: &[f64], b: &[f64]) -> (Vec<f64>, Vec<f64>) {
    a.iter()
        .zip(b)
        .filter(|(x, y)| !x.is_nan() && !y.is_nan())
        .map(|(x, y)| (*x, *y))
        .unzip()
}

fn is_constant(x: &[f64]) -> bool {
    x.iter().all(|v| *v == x[0])
}

/// numerai-tools `numerai_corr` for one era. As there, the target is centred on the mean of all its
/// present values *before* rows missing a prediction are dropped; then rows where either is NaN are
/// dropped and predictions are ranked over the rows kept. None for fewer than 2 rows kept or
/// constant predictions or targets.
pub fn numerai_corr(preds: &[f64], target: &[f64]) -> Option<f64> {
    let n = preds.len().min(target.len());
    let (sum, count) = target[..n]
        .iter()
        .filter(|t| !t.is_nan())
        .fold((0.0, 0usize), |(s, c), t| (s + t, c + 1));
    if count == 0 {
        return None;
    }
    let tmean = sum / count as f64;
    let (p, t) = both_present(&preds[..n], &target[..n]);
    if p.len() < 2 || is_constant(&p) || is_constant(&t) {
        return None;
    }
    let x: Vec<f64> = gaussianize(&p).into_iter().map(pow15).collect();
    let y: Vec<f64> = t.iter().map(|v| pow15(v - tmean)).collect();
    pearson(&x, &y)
}

/// Feature exposure of one era: max over features of |Pearson(tie-kept-ranked predictions, feature)|
/// over rows with a prediction; constant features are skipped. `features` is row-major `[rows, nf]`.
pub fn feature_exposure(preds: &[f64], features: &[u8], nf: usize) -> Option<f64> {
    let rows: Vec<usize> = (0..preds.len()).filter(|&i| !preds[i].is_nan()).collect();
    if rows.len() < 2 || nf == 0 || features.len() < preds.len() * nf {
        return None;
    }
    let kept: Vec<f64> = rows.iter().map(|&i| preds[i]).collect();
    let ranked = rank_percentile(&kept);
    let mut best: Option<f64> = None;
    let mut col = vec![0.0; rows.len()];
    for f in 0..nf {
        for (k, &i) in rows.iter().enumerate() {
            col[k] = features[i * nf + f] as f64;
        }
        if let Some(c) = pearson(&ranked, &col) {
            best = Some(best.map_or(c.abs(), |b: f64| b.max(c.abs())));
        }
    }
    best
}

/// numerai-tools `feature_neutral_corr` for one era: over rows with a prediction, tie-kept rank and
/// gaussianize, neutralize against `[features, 1]` by least squares (rcond 1e-6), divide by the std
/// (ddof 0), then `numerai_corr` against the target. None where `numerai_corr` is, for constant
/// predictions, or when the features explain the predictions exactly (nothing left to score).
pub fn feature_neutral_corr(
    preds: &[f64],
    target: &[f64],
    features: &[u8],
    nf: usize,
) -> Option<f64> {
    let rows: Vec<usize> = (0..preds.len()).filter(|&i| !preds[i].is_nan()).collect();
    if rows.len() < 2 || features.len() < preds.len() * nf {
        return None;
    }
    let kept: Vec<f64> = rows.iter().map(|&i| preds[i]).collect();
    if is_constant(&kept) {
        return None;
    }
    let g = gaussianize(&kept);
    let m = rows.len();
    let mut kept_features = Vec::with_capacity(m * nf);
    for &i in &rows {
        kept_features.extend_from_slice(&features[i * nf..(i + 1) * nf]);
    }
    // normal equations when well conditioned, else the rank-revealing least squares
    let neutral = super::fnc::neutralize_features(&kept_features, m, nf, &g);
    let mean = neutral.iter().sum::<f64>() / m as f64;
    let std = (neutral.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / m as f64).sqrt();
    // g has std ≈ 1; a residual this small is rounding noise, not a signal
    if std.is_nan() || std <= 1e-10 {
        return None;
    }
    let mut full = vec![f64::NAN; preds.len()];
    for (k, &i) in rows.iter().enumerate() {
        full[i] = neutral[k] / std;
    }
    numerai_corr(&full, target)
}

/// `b - A·lstsq(A, b, rcond)`: the part of `b` that the columns of `A` (row-major `[m, n]`) do not
/// explain (numerai-tools `neutralize` with proportion 1). Uses the fast rank-revealing QR path
/// (`neutralize_qrcp`) when it can prove it keeps exactly the singular values numpy keeps, and the
/// SVD (`neutralize_svd`) otherwise.
pub fn neutralize(a: &[f64], m: usize, n: usize, b: &[f64], rcond: f64) -> Vec<f64> {
    neutralize_qrcp(a, m, n, b, rcond).unwrap_or_else(|| neutralize_svd(a, m, n, b, rcond))
}

/// `b - A·x` for row-major A.
fn residual(a: &[f64], m: usize, n: usize, b: &[f64], x: &[f64]) -> Vec<f64> {
    (0..m)
        .map(|i| {
            // seek to row i of A
            let row = &a[i * n..(i + 1) * n];
            b[i] - dot(row, x)
        })
        .collect()
}

/// `neutralize` through the minimum-norm SVD solution (`lstsq`): the reference, O(n³) per sweep.
pub fn neutralize_svd(a: &[f64], m: usize, n: usize, b: &[f64], rcond: f64) -> Vec<f64> {
    let x = lstsq(a, m, n, b, rcond);
    residual(a, m, n, b, &x)
}

/// `neutralize` through Householder QR of A then QR with column pivoting of its triangle:
/// `R P = Q₂ R₂`. The residual `b - A x` depends only on which singular directions are kept, so a
/// basic solution on the first k pivoted columns gives numpy's residual when k is numpy's rank.
/// k is the least index whose trailing block satisfies `‖R₂[k.., k..]‖_F <= rcond·|R₂₀₀|` (every
/// dropped singular value is then under the cut, as `|R₂₀₀| <= σ_max`); it is accepted only if
/// `1 / ‖R₁₁⁻¹‖_F > rcond·‖R‖_F`, which proves every kept singular value is above the cut
/// (`σ_k(A) >= σ_min(R₁₁) >= 1/‖R₁₁⁻¹‖_F`, `σ_max <= ‖R‖_F`). Returns None when neither bound is
/// decisive (singular values close to the cut): use the SVD then.
pub fn neutralize_qrcp(a: &[f64], m: usize, n: usize, b: &[f64], rcond: f64) -> Option<Vec<f64>> {
    if m == 0 || n == 0 || a.len() < m * n || b.len() < m {
        return None;
    }
    let mut w = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            w[j * m + i] = a[i * n + j];
        }
    }
    let mut c: Vec<f64> = b[..m].to_vec();
    let rows = if m > n {
        householder_qr_blocked(&mut w, m, n, &mut c);
        let mut r = vec![0.0; n * n];
        for j in 0..n {
            for i in 0..=j {
                r[j * n + i] = w[j * m + i];
            }
        }
        w = r;
        c.truncate(n);
        n
    } else {
        m
    };
    let perm = pivoted_qr(&mut w, rows, n, &mut c);
    let kmax = rows.min(n);
    let at = |i: usize, j: usize| w[j * rows + i];
    // t2[k] = ‖R₂[k.., k..]‖_F²: the sum of the rows i >= k of the upper trapezoid
    let mut t2 = vec![0.0; kmax + 1];
    for i in (0..kmax).rev() {
        let row: f64 = (i..n).map(|j| at(i, j) * at(i, j)).sum();
        t2[i] = t2[i + 1] + row;
    }
    let fro = t2[0].sqrt();
    let d0 = at(0, 0).abs();
    if d0 == 0.0 {
        return Some(b[..m].to_vec());
    }
    let cut = rcond * d0;
    let k = (0..=kmax).find(|&k| t2[k].sqrt() <= cut).unwrap_or(kmax);
    // lower bound on σ_min(R₁₁) from ‖R₁₁⁻¹‖_F, column by column of the inverse
    // R₁₁ row-major, so the back substitutions read rows contiguously
    let mut u = vec![0.0; k * k];
    for i in 0..k {
        for l in i..k {
            u[i * k + l] = at(i, l);
        }
    }
    let mut inv_fro2 = 0.0;
    let mut z = vec![0.0; k];
    for j in 0..k {
        // solve R₁₁ z = e_j; z is zero below row j
        for i in (0..=j).rev() {
            let urow = &u[i * k + i + 1..i * k + j + 1];
            let d = dot(urow, &z[i + 1..=j]);
            let rhs = if i == j { 1.0 } else { 0.0 };
            z[i] = (rhs - d) / u[i * k + i];
        }
        inv_fro2 += z[..=j].iter().map(|v| v * v).sum::<f64>();
    }
    let sigma_min_bound = 1.0 / inv_fro2.sqrt();
    if k > 0 && (sigma_min_bound.is_nan() || sigma_min_bound <= rcond * fro) {
        return None;
    }
    // basic solution: R₁₁ y = (Q₂ᵀ c)[..k], x[perm[i]] = y[i]
    let mut y = vec![0.0; k];
    for i in (0..k).rev() {
        y[i] = (c[i] - dot(&u[i * k + i + 1..(i + 1) * k], &y[i + 1..k])) / u[i * k + i];
    }
    let mut x = vec![0.0; n];
    for i in 0..k {
        x[perm[i]] = y[i];
    }
    let r = residual(a, m, n, b, &x);
    r.iter().all(|v| v.is_finite()).then_some(r)
}

/// In-place Householder QR with column pivoting of the column-major `[rows, n]` matrix `w`,
/// applying the same reflections to `c`: at each step the column with the largest remaining norm
/// goes first. Afterwards the upper triangle (trapezoid) of `w` is R and `c[..min(rows, n)]` is the head
/// of `Qᵀc`. Returns the permutation: column i of R belongs to input column `perm[i]`.
fn pivoted_qr(w: &mut [f64], rows: usize, n: usize, c: &mut [f64]) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..n).collect();
    let mut v = vec![0.0; rows];
    for k in 0..rows.min(n) {
        let mut best = k;
        let mut best_norm = -1.0;
        for j in k..n {
            let cj = &w[j * rows + k..(j + 1) * rows];
            let nj = dot(cj, cj);
            if nj > best_norm {
                best_norm = nj;
                best = j;
            }
        }
        if best != k {
            for i in 0..rows {
                w.swap(k * rows + i, best * rows + i);
            }
            perm.swap(k, best);
        }
        // v = x - alpha e_k over rows k.., so that (I - 2vvᵀ/vᵀv) x = alpha e_k
        let col = &w[k * rows + k..(k + 1) * rows];
        let norm = dot(col, col).sqrt();
        if norm == 0.0 {
            continue;
        }
        let alpha = if col[0] > 0.0 { -norm } else { norm };
        v[k..rows].copy_from_slice(col);
        v[k] -= alpha;
        let vnorm2 = dot(&v[k..rows], &v[k..rows]);
        if vnorm2 == 0.0 {
            continue;
        }
        w[k * rows + k] = alpha;
        for x in &mut w[k * rows + k + 1..(k + 1) * rows] {
            *x = 0.0;
        }
        for j in k + 1..n {
            reflect(&v[k..rows], vnorm2, &mut w[j * rows + k..(j + 1) * rows]);
        }
        reflect(&v[k..rows], vnorm2, &mut c[k..rows]);
    }
    perm
}

/// Unpivoted Householder QR of the tall column-major `[m, n]` matrix `w` (and `c`), in panels of
/// `PANEL` columns: a panel's reflections are built first (each column receiving the earlier ones
/// of its panel), then applied together to each later column while it sits in cache. Same
/// arithmetic, in the same order per column, as one reflection at a time; far less memory traffic.
fn householder_qr_blocked(w: &mut [f64], m: usize, n: usize, c: &mut [f64]) {
    const PANEL: usize = 16;
    let mut vs: Vec<(usize, Vec<f64>, f64)> = Vec::with_capacity(PANEL);
    let mut k0 = 0;
    while k0 < n.min(m) {
        let k1 = (k0 + PANEL).min(n).min(m);
        vs.clear();
        for k in k0..k1 {
            let col = &mut w[k * m..(k + 1) * m];
            for (start, v, vn) in &vs {
                reflect(v, *vn, &mut col[*start..]);
            }
            let x = &col[k..];
            let norm = dot(x, x).sqrt();
            if norm == 0.0 {
                continue;
            }
            let alpha = if x[0] > 0.0 { -norm } else { norm };
            let mut v = x.to_vec();
            v[0] -= alpha;
            let vn = dot(&v, &v);
            if vn == 0.0 {
                continue;
            }
            col[k] = alpha;
            for e in &mut col[k + 1..] {
                *e = 0.0;
            }
            vs.push((k, v, vn));
        }
        for j in k1..n {
            let col = &mut w[j * m..(j + 1) * m];
            for (start, v, vn) in &vs {
                reflect(v, *vn, &mut col[*start..]);
            }
        }
        for (start, v, vn) in &vs {
            reflect(v, *vn, &mut c[*start..]);
        }
        k0 = k1;
    }
}

/// `x -= 2 (v·x) / (v·v) · v`: one Householder reflection applied to x.
#[inline]
fn reflect(v: &[f64], vnorm2: f64, x: &mut [f64]) {
    let f = 2.0 * dot(v, x) / vnorm2;
    for (xi, vi) in x.iter_mut().zip(v) {
        *xi -= f * vi;
    }
}

/// Minimum-norm least-squares solution of `A x ≈ b` (A row-major `[m, n]`), singular values at or
/// below `rcond · σ_max` treated as zero, like `numpy.linalg.lstsq(A, b, rcond)`.
///
/// Method: Householder QR reduces A to its `n × n` triangle R when `m > n`; a one-sided (Hestenes)
/// Jacobi SVD of R (or of A itself when `m <= n`) gives `R = U Σ Vᵀ`; then `x = V Σ⁺ Uᵀ Qᵀ b`.
/// Works for any rank, including zero columns, duplicate columns and `m < n`.
pub fn lstsq(a: &[f64], m: usize, n: usize, b: &[f64], rcond: f64) -> Vec<f64> {
    if m == 0 || n == 0 || a.len() < m * n || b.len() < m {
        return vec![0.0; n];
    }
    // column-major copy: col j is w[j*m .. (j+1)*m]
    let mut w = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            w[j * m + i] = a[i * n + j];
        }
    }
    let mut c: Vec<f64> = b[..m].to_vec();
    let r_rows = if m > n {
        householder_qr_blocked(&mut w, m, n, &mut c);
        // keep the n × n upper triangle, column-major with n rows
        let mut r = vec![0.0; n * n];
        for j in 0..n {
            for i in 0..=j {
                r[j * n + i] = w[j * m + i];
            }
        }
        w = r;
        c.truncate(n);
        n
    } else {
        m
    };
    let (sigma, v) = jacobi_svd(&mut w, r_rows, n);
    let smax = sigma.iter().cloned().fold(0.0, f64::max);
    let mut x = vec![0.0; n];
    if smax <= 0.0 {
        return x;
    }
    for j in 0..n {
        let s = sigma[j];
        if s <= rcond * smax {
            continue;
        }
        // u_j = w_j / σ_j; coefficient (u_j · c) / σ_j
        let col = &w[j * r_rows..(j + 1) * r_rows];
        let coef = dot(col, &c) / (s * s);
        let vj = &v[j * n..(j + 1) * n];
        for (xi, vi) in x.iter_mut().zip(vj) {
            *xi += coef * vi;
        }
    }
    x
}

/// One-sided Jacobi SVD of the column-major `[rows, n]` matrix `w`: rotates column pairs until all
/// are orthogonal. Afterwards column j of `w` is `σ_j u_j`; returns `(σ, V)` with V column-major
/// `[n, n]`, so that the input equals `w_final · Vᵀ`.
fn jacobi_svd(w: &mut [f64], rows: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0; n * n];
    for j in 0..n {
        v[j * n + j] = 1.0;
    }
    let eps = f64::EPSILON;
    for _sweep in 0..80 {
        let mut rotated = false;
        for i in 0..n {
            for j in i + 1..n {
                let (ci, cj) = two_cols(w, rows, i, j);
                let (alpha, beta, gamma) = (dot(ci, ci), dot(cj, cj), dot(ci, cj));
                if gamma == 0.0 || alpha == 0.0 || beta == 0.0 {
                    continue;
                }
                if gamma.abs() <= eps * (alpha * beta).sqrt() {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let cs = 1.0 / (1.0 + t * t).sqrt();
                let sn = cs * t;
                for (x, y) in ci.iter_mut().zip(cj.iter_mut()) {
                    let (a, b) = (*x, *y);
                    *x = cs * a - sn * b;
                    *y = sn * a + cs * b;
                }
                let (vi, vj) = two_cols(&mut v, n, i, j);
                for (x, y) in vi.iter_mut().zip(vj.iter_mut()) {
                    let (a, b) = (*x, *y);
                    *x = cs * a - sn * b;
                    *y = sn * a + cs * b;
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let sigma = (0..n)
        .map(|j| {
            w[j * rows..(j + 1) * rows]
                .iter()
                .map(|x| x * x)
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    (sigma, v)
}

/// Mutable views of columns i < j of a column-major matrix with `rows` rows.
fn two_cols(w: &mut [f64], rows: usize, i: usize, j: usize) -> (&mut [f64], &mut [f64]) {
    let (lo, hi) = w.split_at_mut(j * rows);
    (&mut lo[i * rows..(i + 1) * rows], &mut hi[..rows])
}

/// Dot product with 8 independent accumulators, so the loop vectorizes instead of waiting on one
/// running sum (the summation order differs from a plain loop only in rounding).
#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}
