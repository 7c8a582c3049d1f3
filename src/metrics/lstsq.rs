//! Least squares for neutralization and feature-neutral corr: the rank-revealing paths
//! (pivoted QR, SVD) that match numerai-tools' `lstsq(rcond)` semantics.

/// Relative cut-off under which singular values count as zero in neutralization (numerai-tools).
pub const NEUTRALIZE_RCOND: f64 = 1e-6;

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
/// Σ a·b over the common length, in eight lanes (shared by the least-squares paths and FNC).
#[inline]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
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
