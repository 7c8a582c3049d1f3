//! Scoring against numbers computed by numerai-tools / scipy / numpy
//! (`tests/fixtures/make_scoring.py` writes `tests/fixtures/scoring/*`).

use eraengine::metrics::{
    evaluate, feature_exposure, feature_neutral_corr, lstsq, norm_ppf, numerai_corr,
    pearson_present, rank_average, read_meta_model, EraInput,
};
use serde_json::Value;
use std::path::PathBuf;

const TOL: f64 = 1e-6;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/scoring")
        .join(name)
}

fn load(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// JSON number array with null for NaN.
fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect()
}

fn opt(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn assert_close_opt(what: &str, got: Option<f64>, want: Option<f64>, tol: f64) {
    match (got, want) {
        (Some(g), Some(w)) => assert!((g - w).abs() <= tol, "{what}: got {g}, numerai-tools {w}"),
        (None, None) => {}
        _ => panic!("{what}: got {got:?}, numerai-tools {want:?}"),
    }
}

#[test]
fn norm_ppf_matches_scipy() {
    let cases = load("norm_ppf.json");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() > 300);
    for c in cases {
        let p = f64::from_bits(c[0].as_u64().unwrap());
        assert!((p - c[1].as_f64().unwrap()).abs() <= 1e-15 * p);
        let want = c[2].as_f64().unwrap();
        let got = norm_ppf(p);
        assert!(
            (got - want).abs() <= 1e-13 * want.abs().max(1.0),
            "norm_ppf({p:e}) = {got}, scipy {want}"
        );
    }
}

#[test]
fn norm_ppf_edges() {
    assert_eq!(norm_ppf(0.5), 0.0);
    assert_eq!(norm_ppf(0.0), f64::NEG_INFINITY);
    assert_eq!(norm_ppf(1.0), f64::INFINITY);
    assert!(norm_ppf(-0.1).is_nan() && norm_ppf(1.5).is_nan() && norm_ppf(f64::NAN).is_nan());
}

#[test]
fn rank_average_matches_pandas() {
    let cases = load("ranks.json");
    for c in cases.as_array().unwrap() {
        let x = floats(&c["x"]);
        let want = floats(&c["rank"]);
        assert_eq!(rank_average(&x), want, "ranks of {x:?}");
    }
}

#[test]
fn lstsq_matches_numpy_minimum_norm_solution() {
    let cases = load("lstsq.json");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 5);
    for (k, c) in cases.iter().enumerate() {
        let m = c["m"].as_u64().unwrap() as usize;
        let n = c["n"].as_u64().unwrap() as usize;
        let a = floats(&c["a"]);
        let b = floats(&c["b"]);
        let want = floats(&c["x"]);
        let want_r = floats(&c["residual"]);
        let x = lstsq(&a, m, n, &b, 1e-6);
        let scale = want.iter().fold(1.0f64, |s, v| s.max(v.abs()));
        for j in 0..n {
            assert!(
                (x[j] - want[j]).abs() <= 1e-9 * scale,
                "case {k} ({m}x{n}): x[{j}] = {}, numpy {}",
                x[j],
                want[j]
            );
        }
        let r = eraengine::metrics::neutralize(&a, m, n, &b, 1e-6);
        for i in 0..m {
            assert!((r[i] - want_r[i]).abs() <= 1e-9, "case {k}: residual[{i}]");
        }
    }
}

struct Era {
    name: String,
    kind: String,
    preds: Vec<f64>,
    target: Vec<f64>,
    features: Vec<u8>,
    meta: Vec<f64>,
    expected: Value,
}

fn eras() -> (Vec<Era>, Value) {
    let fx = load("eras.json");
    let eras = fx["eras"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| Era {
            name: e["era"].as_str().unwrap().to_string(),
            kind: e["kind"].as_str().unwrap().to_string(),
            preds: floats(&e["preds"]),
            target: floats(&e["target"]),
            features: e["features"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u8)
                .collect(),
            meta: floats(&e["meta"]),
            expected: e["expected"].clone(),
        })
        .collect();
    (eras, fx)
}

#[test]
fn per_era_scores_match_numerai_tools() {
    let (eras, fx) = eras();
    let nf = fx["n_features"].as_u64().unwrap() as usize;
    let mut checked = 0;
    for e in &eras {
        let x = &e.expected;
        if x.is_null() {
            continue;
        }
        let what = |s: &str| format!("era {} ({}) {s}", e.name, e.kind);
        assert_close_opt(
            &what("corr"),
            numerai_corr(&e.preds, &e.target),
            opt(&x["corr"]),
            TOL,
        );
        let fnc = numerai_corr(&e.preds, &e.target)
            .and_then(|_| feature_neutral_corr(&e.preds, &e.target, &e.features, nf));
        assert_close_opt(&what("fnc"), fnc, opt(&x["fnc"]), TOL);
        assert_close_opt(
            &what("feature_exposure"),
            feature_exposure(&e.preds, &e.features, nf),
            opt(&x["feature_exposure"]),
            TOL,
        );
        assert_close_opt(
            &what("meta_corr"),
            pearson_present(&e.preds, &e.meta),
            opt(&x["meta_corr"]),
            TOL,
        );
        checked += 1;
    }
    assert!(checked >= 8);
}

#[test]
fn evaluation_matches_numerai_tools_summary() {
    let (eras, fx) = eras();
    let nf = fx["n_features"].as_u64().unwrap() as usize;
    let inputs: Vec<EraInput> = eras
        .iter()
        .map(|e| EraInput {
            era: &e.name,
            preds: &e.preds,
            target: &e.target,
            features: Some((&e.features, nf)),
            meta: Some(&e.meta),
        })
        .collect();
    let ev = evaluate(&inputs).unwrap();
    let listed: Vec<&str> = fx["listed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let got: Vec<&str> = ev.eras.iter().map(|e| e.era.as_str()).collect();
    assert_eq!(got, listed, "eras with all targets missing are left out");
    for (s, e) in ev
        .eras
        .iter()
        .zip(eras.iter().filter(|e| !e.expected.is_null()))
    {
        assert_eq!(
            s.rows as u64,
            e.expected["rows"].as_u64().unwrap(),
            "rows of {}",
            s.era
        );
        assert_close_opt(
            &format!("{} corr", s.era),
            s.corr,
            opt(&e.expected["corr"]),
            TOL,
        );
        assert_close_opt(
            &format!("{} fnc", s.era),
            s.fnc,
            opt(&e.expected["fnc"]),
            TOL,
        );
    }
    let sm = &fx["summary"];
    assert_close_opt("mean", ev.mean, opt(&sm["mean"]), TOL);
    assert_close_opt("std", ev.std, opt(&sm["std"]), TOL);
    assert_close_opt("sharpe", ev.sharpe, opt(&sm["sharpe"]), TOL);
    assert_close_opt(
        "max_drawdown",
        ev.max_drawdown,
        opt(&sm["max_drawdown"]),
        TOL,
    );
    assert_close_opt("hit_rate", ev.hit_rate, opt(&sm["hit_rate"]), TOL);
    assert_close_opt(
        "feature_exposure",
        ev.feature_exposure,
        opt(&sm["feature_exposure"]),
        TOL,
    );
    assert_close_opt("fnc_mean", ev.fnc_mean, opt(&sm["fnc_mean"]), TOL);
    assert_close_opt(
        "meta_corr_mean",
        ev.meta_corr_mean,
        opt(&sm["meta_corr_mean"]),
        TOL,
    );
    assert_eq!(ev.scored_eras() as u64, sm["scored_eras"].as_u64().unwrap());
    // every era without a corr is warned about, by name
    for s in ev.eras.iter().filter(|s| s.corr.is_none()) {
        assert!(
            ev.warnings.iter().any(|w| w.contains(&s.era)),
            "no warning for era {}",
            s.era
        );
    }
    assert_eq!(
        ev.warnings.len(),
        ev.eras.iter().filter(|s| s.corr.is_none()).count()
    );
}

#[test]
fn target_is_centred_before_rows_without_predictions_are_dropped() {
    // numerai-tools centres the target over all present targets, then drops rows missing a
    // prediction; the fixture era with missing predictions pins this down.
    let (eras, _) = eras();
    let e = eras.iter().find(|e| e.kind == "nan_preds").unwrap();
    let want = e.expected["corr"].as_f64().unwrap();
    let (p, t): (Vec<f64>, Vec<f64>) = e
        .preds
        .iter()
        .zip(&e.target)
        .filter(|(p, _)| !p.is_nan())
        .map(|(p, t)| (*p, *t))
        .unzip();
    let dropped_first = numerai_corr(&p, &t).unwrap();
    let got = numerai_corr(&e.preds, &e.target).unwrap();
    assert!((got - want).abs() <= TOL);
    assert!(
        (dropped_first - want).abs() > TOL,
        "the fixture no longer tells the two orders apart"
    );
}

#[test]
fn meta_model_parquet_and_csv_agree_with_the_fixture() {
    let (eras, _) = eras();
    let fx = load("eras.json");
    let csv = read_meta_model(&fixture("meta_model.csv")).unwrap();
    let mut n = 0;
    for (e, raw) in eras.iter().zip(fx["eras"].as_array().unwrap()) {
        for (id, m) in raw["ids"].as_array().unwrap().iter().zip(&e.meta) {
            let id = id.as_str().unwrap();
            match csv.get(id) {
                Some(v) => assert!((v - m).abs() <= 1e-15 * m.abs().max(1.0)),
                None => assert!(m.is_nan(), "{id} missing from the CSV"),
            }
            n += 1;
        }
    }
    assert!(n > 500);
    #[cfg(feature = "parquet")]
    {
        let pq = read_meta_model(&fixture("meta_model.parquet")).unwrap();
        assert_eq!(pq.len(), csv.len());
        for (id, v) in &csv {
            assert_eq!(pq.get(id), Some(v), "{id}");
        }
        let e = read_meta_model(&fixture("meta_model_no_column.parquet"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("meta_model_no_column.parquet") && e.contains("numerai_meta_model"),
            "{e}"
        );
    }
}
