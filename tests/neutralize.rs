//! Issue 12, items 6 and 7: numerai-tools' `neutralize` (fixtures from numerai-tools itself) and
//! the fast normal-equation neutralization against the rank-revealing least squares.

use eraengine::metrics::chol::{chol_solve, cholesky, cholesky_dropping};
use eraengine::metrics::corr::{neutralize as neutralize_lstsq, NEUTRALIZE_RCOND};
use eraengine::metrics::fnc::{neutralize, neutralize_era, neutralize_features, neutralize_normal};
use proptest::prelude::*;
use serde_json::Value;

fn design(features: &[u8], m: usize, nf: usize) -> Vec<f64> {
    let n = nf + 1;
    let mut a = vec![1.0; m * n];
    for i in 0..m {
        for f in 0..nf {
            a[i * n + f] = features[i * nf + f] as f64;
        }
    }
    a
}

fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

#[test]
fn neutralize_matches_numerai_tools() {
    let text = std::fs::read_to_string("tests/fixtures/scoring/neutralize.json").unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let m = c["rows"].as_u64().unwrap() as usize;
        let nf = c["nf"].as_u64().unwrap() as usize;
        let feats: Vec<u8> = c["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u8)
            .collect();
        let preds: Vec<f64> = c["preds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let p = c["proportion"].as_f64().unwrap();
        let got = neutralize_era(&preds, &feats, nf, p).unwrap();
        assert_eq!(got.len(), m);
        for (i, (g, e)) in got
            .iter()
            .zip(c["expected"].as_array().unwrap())
            .enumerate()
        {
            match e.as_f64() {
                None => assert!(g.is_nan(), "{name}: row {i}: {g}, numerai-tools NaN"),
                Some(e) => assert!((g - e).abs() <= 1e-6, "{name}: row {i}: {g} vs {e}"),
            }
        }
        // the per-era entry point gives the same, era by era
        let both = neutralize(
            &[preds.clone(), preds.clone()].concat(),
            &[m, m],
            &[feats.clone(), feats.clone()].concat(),
            nf,
            p,
        )
        .unwrap();
        for (a, b) in both[..m].iter().zip(&both[m..]) {
            assert!(a == b || (a.is_nan() && b.is_nan()));
        }
    }
}

#[test]
fn nan_predictions_and_bad_shapes_are_errors() {
    let f = vec![1u8, 2, 3, 4];
    assert!(neutralize_era(&[0.1, f64::NAN], &f, 2, 1.0).is_none());
    let e = neutralize(&[0.1, f64::NAN], &[2], &f, 2, 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("era 0") && e.contains("NaN"), "{e}");
    assert!(neutralize(&[0.1, 0.2], &[3], &f, 2, 1.0).is_err());
    assert!(neutralize(&[0.1, 0.2], &[2], &f, 2, f64::NAN).is_err());
}

#[test]
fn rank_deficient_designs_take_the_fast_path_and_match_lstsq() {
    let mut seed = 7u64;
    let (m, nf) = (80, 7);
    let mut f: Vec<u8> = (0..m * nf).map(|_| (lcg(&mut seed) % 5) as u8).collect();
    for i in 0..m {
        f[i * nf + 4] = f[i * nf + 2]; // duplicate column
        f[i * nf + 5] = 3; // constant column: a multiple of the ones column
        f[i * nf + 6] = 4 - f[i * nf + 1]; // affine in another column and the ones column
    }
    let b: Vec<f64> = (0..m)
        .map(|_| lcg(&mut seed) as f64 / 2f64.powi(30) - 1.0)
        .collect();
    let want = neutralize_lstsq(&design(&f, m, nf), m, nf + 1, &b, NEUTRALIZE_RCOND);
    let fast =
        neutralize_normal(&f, m, nf, &b).expect("exact dependencies are dropped, not refused");
    for (g, w) in fast.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-9, "{g} vs {w}");
    }
    // more columns than rows: at most m columns are kept, the rest are dependent
    let f2: Vec<u8> = (0..5 * 9).map(|_| (lcg(&mut seed) % 5) as u8).collect();
    let want2 = neutralize_lstsq(&design(&f2, 5, 9), 5, 10, &b[..5], NEUTRALIZE_RCOND);
    let got2 = neutralize_features(&f2, 5, 9, &b[..5]);
    for (g, w) in got2.iter().zip(&want2) {
        assert!((g - w).abs() <= 1e-9, "{g} vs {w}");
    }
}

/// The Gram matrix is built in panels of 256 result rows: a design wider than two panels (and not a
/// multiple of one), with dependencies that cross panels, takes the fast path and matches lstsq.
#[test]
fn multi_panel_gram_takes_the_fast_path_and_matches_lstsq() {
    let mut seed = 13u64;
    let (m, nf) = (900, 601);
    let mut f: Vec<u8> = (0..m * nf).map(|_| (lcg(&mut seed) % 5) as u8).collect();
    for i in 0..m {
        f[i * nf + 600] = f[i * nf + 3]; // last panel repeats the first
        f[i * nf + 300] = 4 - f[i * nf + 255]; // second panel, affine in the first panel's last column
    }
    let b: Vec<f64> = (0..m)
        .map(|_| lcg(&mut seed) as f64 / 2f64.powi(30) - 1.0)
        .collect();
    let want = neutralize_lstsq(&design(&f, m, nf), m, nf + 1, &b, NEUTRALIZE_RCOND);
    let fast =
        neutralize_normal(&f, m, nf, &b).expect("a well-conditioned design takes the fast path");
    let worst = fast
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f64::max);
    assert!(worst <= 1e-9, "max |difference| {worst:e}");
}

#[test]
fn a_nearly_dependent_column_is_refused_by_the_fast_path_and_the_fallback_matches() {
    // column 3 = column 2 except in one row of many: independent, but with a tiny pivot
    // relative to its norm, so it is dropped by the factorization and then fails the exact
    // dependence check (its residual is a unit vector's worth, far above 1e-10 of its norm)
    let mut seed = 3u64;
    let (m, nf) = (200_000, 4);
    let mut f: Vec<u8> = (0..m * nf).map(|_| (lcg(&mut seed) % 5) as u8).collect();
    for i in 0..m {
        f[i * nf + 3] = f[i * nf + 2];
    }
    f[7 * nf + 3] = (f[7 * nf + 2] + 1) % 5;
    let b: Vec<f64> = (0..m)
        .map(|_| lcg(&mut seed) as f64 / 2f64.powi(30) - 1.0)
        .collect();
    let want = neutralize_lstsq(&design(&f, m, nf), m, nf + 1, &b, NEUTRALIZE_RCOND);
    let got = neutralize_features(&f, m, nf, &b);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-9, "{g} vs {w}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    /// Where the normal equations are taken, they give the SVD/QR residual to 1e-6.
    #[test]
    fn normal_equations_match_lstsq(m in 2usize..300, nf in 0usize..40, levels in 2u8..6, seed in any::<u64>()) {
        let mut s = seed;
        let f: Vec<u8> = (0..m * nf).map(|_| (lcg(&mut s) % levels as u64) as u8).collect();
        let b: Vec<f64> = (0..m).map(|_| lcg(&mut s) as f64 / 2f64.powi(31) - 1.0).collect();
        let want = neutralize_lstsq(&design(&f, m, nf), m, nf + 1, &b, NEUTRALIZE_RCOND);
        if let Some(got) = neutralize_normal(&f, m, nf, &b) {
            for (g, w) in got.iter().zip(&want) {
                prop_assert!((g - w).abs() <= 1e-6, "{} vs {}", g, w);
            }
        }
        let got = neutralize_features(&f, m, nf, &b);
        for (g, w) in got.iter().zip(&want) {
            prop_assert!((g - w).abs() <= 1e-6, "{} vs {}", g, w);
        }
    }
}

/// A random symmetric positive semi-definite `[n, n]` matrix `BᵀB` of rank `rank` (f64).
fn gram(n: usize, rank: usize, seed: u64) -> Vec<f64> {
    let mut s = seed;
    let b: Vec<f64> = (0..rank * n)
        .map(|_| lcg(&mut s) as f64 / 2f64.powi(30) - 1.0)
        .collect();
    let mut g = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            g[i * n + j] = (0..rank).map(|r| b[r * n + i] * b[r * n + j]).sum();
        }
    }
    g
}

/// A random symmetric positive semi-definite `[n, n]` matrix `BᵀB` of rank `rank` whose columns
/// are `rank` well-conditioned independent ones (e_b plus small noise, at random positions, the
/// first at 0) and, between and after them, random combinations of the independent columns placed
/// before them. So the independent columns are exactly the ones a dropping factorization in index
/// order keeps, with pivots far above any drop threshold, and every dependent pivot is rounding
/// alone. (Random BᵀB of that rank could leave a kept set so ill-conditioned that a dependent
/// column's rounding crossed the 1e-9 threshold: a test that failed on one seed in many runs.)
fn gram_dependent(n: usize, rank: usize, seed: u64) -> Vec<f64> {
    let mut s = seed;
    let mut unit = || lcg(&mut s) as f64 / 2f64.powi(31) - 1.0;
    // which positions hold the independent columns: 0 and rank − 1 others
    let mut pos: Vec<usize> = (1..n).collect();
    for i in (1..pos.len()).rev() {
        let j = ((unit() + 1.0) / 2.0 * (i + 1) as f64) as usize % (i + 1);
        pos.swap(i, j);
    }
    let mut basis_at = vec![false; n];
    basis_at[0] = true;
    for &p in &pos[..rank - 1] {
        basis_at[p] = true;
    }
    let noise = 0.5 / (rank as f64).sqrt();
    let mut cols: Vec<Vec<f64>> = Vec::with_capacity(n);
    let mut basis: Vec<usize> = Vec::with_capacity(rank);
    for (j, &is_basis) in basis_at.iter().enumerate() {
        let col = if is_basis {
            let b = basis.len();
            basis.push(j);
            (0..rank)
                .map(|r| if r == b { 1.0 } else { 0.0 } + noise * unit())
                .collect()
        } else {
            let mut c = vec![0.0; rank];
            for &bj in &basis {
                let w = unit();
                for (x, &y) in c.iter_mut().zip(&cols[bj]) {
                    *x += w * y;
                }
            }
            c
        };
        cols.push(col);
    }
    let mut g = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            g[i * n + j] = cols[i].iter().zip(&cols[j]).map(|(a, b)| a * b).sum();
        }
    }
    g
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// The blocked, threaded, SIMD Cholesky (sizes across several 64-row blocks and 4-row tails)
    /// against the textbook f64 loop, and its solve against the matrix.
    #[test]
    fn blocked_cholesky_matches_the_textbook_loop(n in 1usize..200, seed in any::<u64>()) {
        let mut g = gram(n, n + 3, seed);
        for i in 0..n {
            g[i * n + i] += 1.0;
        }
        let l = cholesky(&g, n).expect("positive definite");
        let mut want = vec![0.0f64; n * n];
        for i in 0..n {
            for j in 0..=i {
                let s: f64 = g[i * n + j] - (0..j).map(|k| want[i * n + k] * want[j * n + k]).sum::<f64>();
                want[i * n + j] = if i == j { s.sqrt() } else { s / want[j * n + j] };
            }
        }
        for (a, b) in l.iter().zip(&want) {
            prop_assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()), "{} vs {}", a, b);
        }
        let y: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
        let x = chol_solve(&l, n, &y);
        for i in 0..n {
            let gx: f64 = (0..n).map(|j| g[i * n + j] * x[j]).sum();
            prop_assert!((gx - y[i]).abs() <= 1e-7 * (1.0 + y[i].abs()));
        }
    }

    /// On a rank-deficient matrix the kept rows/columns of the dropping factor are the Cholesky
    /// factor of the matrix restricted to them, and exactly `rank` columns are kept.
    #[test]
    fn dropping_cholesky_keeps_the_rank_and_factors_the_kept_block(n in 2usize..150, rank_frac in 0.2f64..0.9, seed in any::<u64>()) {
        let rank = ((n as f64 * rank_frac) as usize).max(1);
        let g = gram_dependent(n, rank, seed);
        let (l, kept) = cholesky_dropping(&g, n, 1e-9).expect("no NaN");
        prop_assert_eq!(kept.len(), rank);
        for (a, &i) in kept.iter().enumerate() {
            for &j in &kept[..=a] {
                let s: f64 = kept.iter().map(|&k| l[i * n + k] * l[j * n + k]).sum();
                prop_assert!((s - g[i * n + j]).abs() <= 1e-8 * (1.0 + g[i * n + j].abs()));
            }
        }
        for i in (0..n).filter(|i| !kept.contains(i)) {
            prop_assert!(l[i * n..(i + 1) * n].iter().all(|&v| v == 0.0));
            prop_assert!((0..n).all(|r| l[r * n + i] == 0.0));
        }
    }
}
