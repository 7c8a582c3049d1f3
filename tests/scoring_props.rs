//! Properties of the scoring math against slow, obviously-correct oracles.

use eraengine::metrics::{
    evaluate, feature_neutral_corr, lstsq, max_drawdown, norm_ppf, numerai_corr, rank_average,
    rank_percentile, rank_predictions_per_era, summarize, EraInput, EraScore,
};
use proptest::prelude::*;

// ------------------------------------------------------------------ norm_ppf oracle

/// erfc(x) for x >= 0: for x < 2.5 from the all-positive series
/// erf(x) = 2/√π · e^(−x²) · Σ 2ⁿ x^(2n+1) / (1·3·…·(2n+1)); above, the continued fraction
/// erfc(x) = e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))) evaluated backwards.
fn erfc_oracle(x: f64) -> f64 {
    let sqrt_pi = std::f64::consts::PI.sqrt();
    if x < 2.5 {
        let mut term = x;
        let mut sum = x;
        let mut n = 0.0;
        while term > 1e-18 * sum {
            n += 1.0;
            term *= 2.0 * x * x / (2.0 * n + 1.0);
            sum += term;
        }
        1.0 - 2.0 / sqrt_pi * (-x * x).exp() * sum
    } else {
        let mut f = x;
        for k in (1..=3000).rev() {
            f = x + (k as f64 / 2.0) / f;
        }
        (-x * x).exp() / (sqrt_pi * f)
    }
}

/// Lower-tail Φ(z) for z <= 0.
fn phi_lower(z: f64) -> f64 {
    0.5 * erfc_oracle(-z / std::f64::consts::SQRT_2)
}

/// z with Φ(z) = p, by bisection; for p > 1/2 by symmetry from q = 1 − p (exact in f64).
fn ppf_oracle(p: f64) -> f64 {
    if p > 0.5 {
        return -ppf_oracle(1.0 - p);
    }
    let (mut lo, mut hi) = (-40.0f64, 0.0f64);
    for _ in 0..2000 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if phi_lower(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

fn check_ppf(p: f64) -> Result<(), TestCaseError> {
    let got = norm_ppf(p);
    let want = ppf_oracle(p);
    prop_assert!(
        (got - want).abs() <= 1e-10 * want.abs().max(1.0),
        "norm_ppf({:e}) = {}, oracle {}",
        p,
        got,
        want
    );
    Ok(())
}

#[test]
fn oracle_knows_textbook_quantiles() {
    // the oracle itself, on values every table has
    assert!((ppf_oracle(0.975) - 1.959_963_984_540_054).abs() < 1e-12);
    assert!((ppf_oracle(0.5)).abs() < 1e-15);
    assert!((ppf_oracle(1e-10) + 6.361_340_902_404_056).abs() < 1e-11);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn norm_ppf_matches_bisection_oracle_log_uniform(e in -300.0f64..-1e-9) {
        check_ppf(10f64.powf(e))?;
    }

    #[test]
    fn norm_ppf_matches_bisection_oracle_uniform(p in 1e-12f64..1.0) {
        check_ppf(p)?;
    }

    #[test]
    fn norm_ppf_matches_bisection_oracle_near_one(e in -15.9f64..-0.5) {
        check_ppf(1.0 - 10f64.powf(e))?;
    }

    #[test]
    fn norm_ppf_is_odd_around_one_half(p in 1e-12f64..0.5) {
        // 1 - p is exact here only up to rounding of p itself, so compare through q
        let q = 1.0 - p;
        prop_assert!((norm_ppf(q) + norm_ppf(1.0 - q)).abs() <= 1e-12 * norm_ppf(q).abs().max(1.0));
    }
}

// ------------------------------------------------------------------ ranks

/// Naive O(n²) average rank: 1 + (number smaller) + (ties other than itself) / 2.
fn naive_rank(x: &[f64]) -> Vec<f64> {
    x.iter()
        .map(|a| {
            let less = x.iter().filter(|b| *b < a).count() as f64;
            let equal = x.iter().filter(|b| *b == a).count() as f64;
            1.0 + less + (equal - 1.0) / 2.0
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn rank_average_matches_naive_oracle(v in prop::collection::vec(-6i32..6, 0..60), scale in prop::sample::select(vec![1.0, 0.1, -1.0, 1e-300])) {
        let x: Vec<f64> = v.iter().map(|k| *k as f64 * scale).collect();
        prop_assert_eq!(rank_average(&x), naive_rank(&x));
    }

    #[test]
    fn rank_percentile_is_strictly_inside_unit_interval(x in prop::collection::vec(-1e6f64..1e6, 1..200)) {
        for r in rank_percentile(&x) {
            prop_assert!(r > 0.0 && r < 1.0);
        }
    }

    #[test]
    fn ranks_per_era_restart_in_each_era(a in prop::collection::vec(0i32..5, 1..30), b in prop::collection::vec(0i32..5, 1..30)) {
        let x: Vec<f64> = a.iter().chain(&b).map(|k| *k as f64).collect();
        let r = rank_predictions_per_era(&x, &[a.len(), b.len()]).unwrap();
        prop_assert_eq!(&r[..a.len()], &rank_percentile(&x[..a.len()])[..]);
        prop_assert_eq!(&r[a.len()..], &rank_percentile(&x[a.len()..])[..]);
        prop_assert!(rank_predictions_per_era(&x, &[a.len()]).is_err());
    }
}

// ------------------------------------------------------------------ numerai_corr

fn target_strategy(n: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(
        prop::sample::select(vec![0.0, 0.25, 0.5, 0.75, 1.0, f64::NAN]),
        n,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn numerai_corr_is_invariant_to_monotone_transforms_of_predictions(
        (k, t) in (2usize..80).prop_flat_map(|n| (prop::collection::vec(-3000i32..3000, n), target_strategy(n)))
    ) {
        let p: Vec<f64> = k.iter().map(|k| *k as f64 / 1000.0).collect();
        let base = numerai_corr(&p, &t);
        let transforms: [fn(f64) -> f64; 3] = [|x| 3.0 * x + 7.0, |x| x.exp(), |x| x * x * x + x];
        for f in transforms {
            let q: Vec<f64> = p.iter().map(|x| f(*x)).collect();
            let c = numerai_corr(&q, &t);
            match (base, c) {
                (Some(a), Some(b)) => prop_assert!((a - b).abs() <= 1e-12),
                (None, None) => {}
                _ => prop_assert!(false, "{:?} vs {:?}", base, c),
            }
        }
        if let Some(c) = base {
            prop_assert!((-1.0..=1.0).contains(&c));
            // a decreasing transform flips the sign
            let neg: Vec<f64> = p.iter().map(|x| -x).collect();
            let d = numerai_corr(&neg, &t).unwrap();
            prop_assert!((c + d).abs() <= 1e-12);
        }
    }

    #[test]
    fn fnc_ignores_duplicate_and_constant_feature_columns(
        (p, t, f) in (20usize..80).prop_flat_map(|n| (
            prop::collection::vec(-100i32..100, n),
            target_strategy(n),
            prop::collection::vec(0u8..5, n * 3),
        ))
    ) {
        let p: Vec<f64> = p.iter().map(|k| *k as f64).collect();
        let n = p.len();
        // same features plus a copy of column 0 and a constant column
        let mut g = Vec::with_capacity(n * 5);
        for i in 0..n {
            g.extend_from_slice(&f[i * 3..i * 3 + 3]);
            g.push(f[i * 3]);
            g.push(3);
        }
        let a = feature_neutral_corr(&p, &t, &f, 3);
        let b = feature_neutral_corr(&p, &t, &g, 5);
        match (a, b) {
            (Some(a), Some(b)) => prop_assert!((a - b).abs() <= 1e-9, "{} vs {}", a, b),
            (None, None) => {}
            _ => prop_assert!(false, "{:?} vs {:?}", a, b),
        }
    }
}

#[test]
fn undefined_corr_cases_are_none() {
    assert_eq!(numerai_corr(&[0.3], &[0.5]), None, "one row");
    assert_eq!(numerai_corr(&[], &[]), None, "no rows");
    assert_eq!(
        numerai_corr(
            &[0.5; 10],
            &[0.0, 0.25, 0.5, 0.75, 1.0, 0.0, 0.25, 0.5, 0.75, 1.0]
        ),
        None
    );
    assert_eq!(
        numerai_corr(&[0.1, 0.2, 0.3, 0.4], &[0.5; 4]),
        None,
        "constant target"
    );
    assert_eq!(
        numerai_corr(&[0.1, f64::NAN, 0.3], &[f64::NAN, 0.5, 0.75]),
        None,
        "one row left"
    );
    assert_eq!(
        numerai_corr(&[0.1, 0.2], &[f64::NAN, f64::NAN]),
        None,
        "no targets"
    );
    assert!(numerai_corr(&[0.1, 0.2], &[0.0, 1.0]).is_some());
    let f = [1u8, 2, 3, 4];
    assert_eq!(
        feature_neutral_corr(&[0.5; 4], &[0.0, 0.25, 0.5, 1.0], &f, 1),
        None
    );
}

#[test]
fn evaluate_lists_but_does_not_summarize_undefined_eras() {
    let good_p = [0.1, 0.4, 0.2, 0.9, 0.5];
    let good_t = [0.0, 0.5, 0.25, 1.0, 0.75];
    let nan_t = [f64::NAN; 5];
    let eras = [
        EraInput {
            era: "0001",
            preds: &good_p,
            target: &good_t,
            features: None,
            meta: None,
        },
        EraInput {
            era: "0002",
            preds: &[0.5; 5],
            target: &good_t,
            features: None,
            meta: None,
        },
        EraInput {
            era: "0003",
            preds: &[0.7],
            target: &[0.5],
            features: None,
            meta: None,
        },
        EraInput {
            era: "0004",
            preds: &good_p,
            target: &nan_t,
            features: None,
            meta: None,
        },
    ];
    let ev = evaluate(&eras).unwrap();
    let names: Vec<&str> = ev.eras.iter().map(|e| e.era.as_str()).collect();
    assert_eq!(
        names,
        ["0001", "0002", "0003"],
        "all-missing-target era left out"
    );
    assert_eq!(ev.eras[1].corr, None);
    assert_eq!(ev.eras[2].corr, None);
    assert_eq!(ev.eras[2].rows, 1);
    assert_eq!(ev.warnings.len(), 2);
    assert!(ev.warnings[0].contains("0002") && ev.warnings[1].contains("0003"));
    let c = ev.eras[0].corr.unwrap();
    assert_eq!(ev.mean, Some(c));
    assert_eq!(ev.std, Some(0.0));
    assert_eq!(ev.sharpe, None, "std 0: no sharpe");
    assert_eq!(ev.hit_rate, Some(1.0));
    assert_eq!(ev.scored_eras(), 1);
    // lengths that do not agree are an error, not a panic
    let bad = [EraInput {
        era: "x",
        preds: &good_p,
        target: &[0.5],
        features: None,
        meta: None,
    }];
    assert!(evaluate(&bad).is_err());
    let bad = [EraInput {
        era: "x",
        preds: &good_p,
        target: &good_t,
        features: Some((&[1, 2], 3)),
        meta: None,
    }];
    assert!(evaluate(&bad).is_err());
    let empty = evaluate(&[]).unwrap();
    assert_eq!(
        (empty.mean, empty.max_drawdown, empty.hit_rate),
        (None, None, None)
    );
}

// ------------------------------------------------------------------ summary

#[test]
fn max_drawdown_by_hand() {
    // cum 0.1 0.05 -0.05 0.15 -0.15; peaks 0.1 0.1 0.1 0.15 0.15; drops 0 .05 .15 0 .30
    let d = max_drawdown(&[0.1, -0.05, -0.1, 0.2, -0.3]).unwrap();
    assert!((d - 0.3).abs() < 1e-15, "{d}");
    // the running max starts at the first era's cumulative sum, not at 0: 0.2, not 0.3
    let d = max_drawdown(&[-0.1, -0.2]).unwrap();
    assert!((d - 0.2).abs() < 1e-15, "{d}");
    assert_eq!(max_drawdown(&[0.01, 0.02, 0.03]), Some(0.0));
    assert_eq!(max_drawdown(&[]), None);
}

fn score(era: usize, corr: Option<f64>, fe: Option<f64>) -> EraScore {
    EraScore {
        era: format!("{era:04}"),
        rows: 10,
        corr,
        fnc: corr.map(|c| c / 2.0),
        feature_exposure: fe,
        meta_corr: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn summary_matches_naive_formulas(
        cs in prop::collection::vec(prop::option::weighted(0.85, -0.1f64..0.1), 1..40),
        fe in 0.0f64..1.0,
    ) {
        let eras: Vec<EraScore> = cs.iter().enumerate().map(|(i, c)| score(i, *c, Some(fe + i as f64 * 1e-3))).collect();
        let ev = summarize(eras.clone(), vec![]);
        let kept: Vec<(usize, f64)> = cs.iter().enumerate().filter_map(|(i, c)| c.map(|c| (i, c))).collect();
        if kept.is_empty() {
            prop_assert_eq!(ev.mean, None);
            return Ok(());
        }
        let n = kept.len() as f64;
        let mean = kept.iter().map(|k| k.1).sum::<f64>() / n;
        let var = kept.iter().map(|k| (k.1 - mean).powi(2)).sum::<f64>() / n;
        prop_assert!((ev.mean.unwrap() - mean).abs() < 1e-12);
        prop_assert!((ev.std.unwrap() - var.sqrt()).abs() < 1e-12);
        if var.sqrt() > 1e-9 {
            prop_assert!((ev.sharpe.unwrap() - mean / var.sqrt()).abs() < 1e-9 * (mean / var.sqrt()).abs().max(1.0));
        }
        let hits = kept.iter().filter(|k| k.1 > 0.0).count() as f64;
        prop_assert!((ev.hit_rate.unwrap() - hits / n).abs() < 1e-15);
        // naive drawdown: max over j of (max over i <= j of cum_i) - cum_j
        let cum: Vec<f64> = kept.iter().scan(0.0, |s, k| { *s += k.1; Some(*s) }).collect();
        let mut dd: f64 = 0.0;
        for j in 0..cum.len() {
            for i in 0..=j {
                dd = dd.max(cum[i] - cum[j]);
            }
        }
        prop_assert!((ev.max_drawdown.unwrap() - dd).abs() < 1e-12);
        let fe_mean = kept.iter().map(|k| fe + k.0 as f64 * 1e-3).sum::<f64>() / n;
        prop_assert!((ev.feature_exposure.unwrap() - fe_mean).abs() < 1e-12);
        prop_assert!((ev.fnc_mean.unwrap() - mean / 2.0).abs() < 1e-12);
        prop_assert_eq!(ev.meta_corr_mean, None);
    }
}

// ------------------------------------------------------------------ lstsq

/// Solves the square system `m x = r` by Gaussian elimination with partial pivoting.
fn solve(mut m: Vec<Vec<f64>>, mut r: Vec<f64>) -> Vec<f64> {
    let n = r.len();
    for k in 0..n {
        let p = (k..n)
            .max_by(|a, b| m[*a][k].abs().total_cmp(&m[*b][k].abs()))
            .unwrap();
        m.swap(k, p);
        r.swap(k, p);
        let pivot_row = m[k].clone();
        for i in k + 1..n {
            let f = m[i][k] / pivot_row[k];
            for (mij, pkj) in m[i][k..].iter_mut().zip(&pivot_row[k..]) {
                *mij -= f * pkj;
            }
            r[i] -= f * r[k];
        }
    }
    let mut x = vec![0.0; n];
    for k in (0..n).rev() {
        let s: f64 = (k + 1..n).map(|j| m[k][j] * x[j]).sum();
        x[k] = (r[k] - s) / m[k][k];
    }
    x
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn lstsq_matches_normal_equations_when_tall(
        (n, extra, a, b) in (1usize..8, 5usize..30).prop_flat_map(|(n, extra)| {
            let m = n + extra;
            (Just(n), Just(extra), prop::collection::vec(-1.0f64..1.0, m * n), prop::collection::vec(-1.0f64..1.0, m))
        })
    ) {
        let m = n + extra;
        // AᵀA x = Aᵀb
        let ata: Vec<Vec<f64>> = (0..n).map(|i| (0..n).map(|j| (0..m).map(|r| a[r * n + i] * a[r * n + j]).sum()).collect()).collect();
        let atb: Vec<f64> = (0..n).map(|i| (0..m).map(|r| a[r * n + i] * b[r]).sum()).collect();
        // skip the rare ill-conditioned draw: the oracle, not lstsq, would be the weak side
        let diag_min = (0..n).map(|i| ata[i][i]).fold(f64::INFINITY, f64::min);
        prop_assume!(diag_min > 0.05);
        let want = solve(ata, atb);
        let x = lstsq(&a, m, n, &b, 1e-6);
        for j in 0..n {
            prop_assert!((x[j] - want[j]).abs() <= 1e-8 * want[j].abs().max(1.0), "x[{}] {} vs {}", j, x[j], want[j]);
        }
    }

    #[test]
    fn lstsq_gives_minimum_norm_solution_when_wide(
        (m, extra, a, b) in (1usize..6, 1usize..6).prop_flat_map(|(m, extra)| {
            let n = m + extra;
            (Just(m), Just(extra), prop::collection::vec(-1.0f64..1.0, m * n), prop::collection::vec(-1.0f64..1.0, m))
        })
    ) {
        let n = m + extra;
        // x = Aᵀ (A Aᵀ)⁻¹ b
        let aat: Vec<Vec<f64>> = (0..m).map(|i| (0..m).map(|j| (0..n).map(|c| a[i * n + c] * a[j * n + c]).sum()).collect()).collect();
        let diag_min = (0..m).map(|i| aat[i][i]).fold(f64::INFINITY, f64::min);
        prop_assume!(diag_min > 0.05 && (m == 1 || extra >= 2));
        let y = solve(aat, b.clone());
        let want: Vec<f64> = (0..n).map(|c| (0..m).map(|i| a[i * n + c] * y[i]).sum()).collect();
        let x = lstsq(&a, m, n, &b, 1e-6);
        for j in 0..n {
            prop_assert!((x[j] - want[j]).abs() <= 1e-7 * want[j].abs().max(1.0), "x[{}] {} vs {}", j, x[j], want[j]);
        }
    }
}

// ------------------------------------------------------------------ fast neutralization

/// Row-major `[m, n]`: random features 0..4, then a copy of column 0, a constant column and ones.
fn design(m: usize, nf: usize, vals: &[u8], extra: &[f64]) -> (Vec<f64>, usize) {
    let n = nf + 3 + extra.len() / m.max(1);
    let mut a = Vec::with_capacity(m * n);
    for i in 0..m {
        let row = &vals[i * nf..(i + 1) * nf];
        a.extend(row.iter().map(|v| *v as f64));
        a.push(row[0] as f64);
        a.push(2.0);
        for e in 0..extra.len() / m.max(1) {
            a.push(extra[e * m + i]);
        }
        a.push(1.0);
    }
    (a, n)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn qrcp_neutralization_matches_svd_on_rank_deficient_features(
        (m, nf, vals, b) in (2usize..60, 1usize..6).prop_flat_map(|(m, nf)| (
            Just(m), Just(nf),
            prop::collection::vec(0u8..5, m * nf),
            prop::collection::vec(-2.0f64..2.0, m),
        ))
    ) {
        let (a, n) = design(m, nf, &vals, &[]);
        let svd = eraengine::metrics::neutralize_svd(&a, m, n, &b, 1e-6);
        let used = eraengine::metrics::neutralize(&a, m, n, &b, 1e-6);
        for i in 0..m {
            prop_assert!((svd[i] - used[i]).abs() <= 1e-9, "row {}: {} vs {}", i, svd[i], used[i]);
        }
        // duplicate/constant columns are exact dependencies: the fast path must decide them
        // (it can give up only when the features themselves sit near the cut)
        if m >= 3 * n {
            if let Some(q) = eraengine::metrics::neutralize_qrcp(&a, m, n, &b, 1e-6) {
                for i in 0..m {
                    prop_assert!((svd[i] - q[i]).abs() <= 1e-9);
                }
            }
        }
    }
}

#[test]
fn qrcp_decides_clear_cases_and_defers_near_the_cut() {
    let m = 200;
    let mut s = 7u64;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let vals: Vec<u8> = (0..m * 4).map(|_| (rnd() * 5.0) as u8).collect();
    let b: Vec<f64> = (0..m).map(|_| rnd() - 0.5).collect();
    let (a, n) = design(m, 4, &vals, &[]);
    assert!(
        eraengine::metrics::neutralize_qrcp(&a, m, n, &b, 1e-6).is_some(),
        "exact duplicates and a constant column are a clear case"
    );
    // a column equal to column 1 plus a perturbation of relative size ~3e-6: its singular value
    // sits within a factor of a few of the 1e-6 cut, so the bounds cannot decide it
    let near: Vec<f64> = (0..m)
        .map(|i| a[i * n + 1] + 3e-6 * (rnd() - 0.5) * 10.0)
        .collect();
    let (a2, n2) = design(m, 4, &vals, &near);
    assert!(eraengine::metrics::neutralize_qrcp(&a2, m, n2, &b, 1e-6).is_none());
    // and neutralize still answers, through the SVD
    let r = eraengine::metrics::neutralize(&a2, m, n2, &b, 1e-6);
    let svd = eraengine::metrics::neutralize_svd(&a2, m, n2, &b, 1e-6);
    assert_eq!(r, svd);
}
