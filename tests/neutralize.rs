//! Issue 12, items 6 and 7: numerai-tools' `neutralize` (fixtures from numerai-tools itself) and
//! the fast normal-equation neutralization against the rank-revealing least squares.

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
fn ill_conditioned_designs_fall_back_to_the_rank_revealing_path() {
    let mut seed = 7u64;
    let (m, nf) = (80, 6);
    let mut f: Vec<u8> = (0..m * nf).map(|_| (lcg(&mut seed) % 5) as u8).collect();
    for i in 0..m {
        f[i * nf + 4] = f[i * nf + 2]; // duplicate column: rank deficient
    }
    let b: Vec<f64> = (0..m)
        .map(|_| lcg(&mut seed) as f64 / 2f64.powi(31) - 1.0)
        .collect();
    assert!(neutralize_normal(&f, m, nf, &b).is_none());
    let want = neutralize_lstsq(&design(&f, m, nf), m, nf + 1, &b, NEUTRALIZE_RCOND);
    let got = neutralize_features(&f, m, nf, &b);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-9);
    }
    // more columns than rows: also not for the normal equations
    let f2: Vec<u8> = (0..5 * 9).map(|_| (lcg(&mut seed) % 5) as u8).collect();
    assert!(neutralize_normal(&f2, 5, 9, &b[..5]).is_none());
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
