//! Two yardsticks for any model's validation corr, pure Rust and deterministic:
//!
//! - `ridge_baseline`: a row-wise ridge regression (features preprocessed as the model sees them,
//!   SPEC §3, plus an intercept; target 0; λ = `RIDGE_LAMBDA` per row) fitted on one store and
//!   scored per era on another: what a model that ignores the era gets;
//! - `bayes_corr`: the mean per-era corr of the Bayes-optimal prediction written by `synth`
//!   (`bayes.csv`) on a store: the best any model can do in expectation.
//!
//! Both score with `crate::metrics::numerai_corr` and average over the eras it scores (eras
//! without targets are skipped).

use crate::data::batch::preprocess_features;
use crate::data::store::Store;
use crate::metrics::numerai_corr;
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// Ridge penalty per training row (the features are scaled to −1..1).
pub const RIDGE_LAMBDA: f64 = 1e-3;

/// Mean per-era corr of `predict(era) → one value per row` against target 0 over the eras of
/// `store` that can be scored; None when none can.
pub fn mean_era_corr(
    store: &Store,
    mut predict: impl FnMut(usize) -> Result<Vec<f64>>,
) -> Result<Option<f64>> {
    let mut corrs = Vec::new();
    for i in 0..store.n_eras() {
        let era = store.era(i);
        if era.all_targets_missing() {
            continue;
        }
        let p = predict(i)?;
        let t: Vec<f64> = (0..era.n_rows).map(|r| era.target(r, 0) as f64).collect();
        if let Some(c) = numerai_corr(&p, &t) {
            corrs.push(c);
        }
    }
    Ok((!corrs.is_empty()).then(|| corrs.iter().sum::<f64>() / corrs.len() as f64))
}

/// Ridge weights (F features, then the intercept) fitted on every labelled row of `train`.
/// XᵀX is summed era by era from one f32 GEMM per era over its labelled rows (the preprocessed
/// features are multiples of ½, so every partial sum is exact in f32 unless an era imputes a
/// missing value off that grid) into f64; at Numerai's width (2,376 features) a rank-1 update per
/// row took hours where the GEMM takes seconds.
pub fn ridge_fit(train: &Store) -> Result<Vec<f64>> {
    let f = train.n_features();
    let k = f + 1;
    let mut xtx = vec![0.0f64; k * k];
    let mut xty = vec![0.0f64; k];
    let mut x = Vec::new();
    // the era's labelled rows, each followed by a 1 for the intercept: [m, k]
    let mut a: Vec<f32> = Vec::new();
    let mut rows = 0usize;
    for (i, era) in train.eras().enumerate() {
        preprocess_features(&era, &mut x);
        a.clear();
        let mut m = 0usize;
        for r in 0..era.n_rows {
            let y = era.target(r, 0) as f64;
            if y.is_nan() {
                continue;
            }
            let xr = &x[r * f..(r + 1) * f];
            for (t, &v) in xty.iter_mut().zip(xr) {
                *t += v as f64 * y;
            }
            xty[f] += y;
            a.extend_from_slice(xr);
            a.push(1.0);
            m += 1;
        }
        train.release_era(i);
        if m == 0 {
            continue;
        }
        rows += m;
        let g = crate::metrics::fnc::gram_lower(&a, m, k)?;
        for r in 0..k {
            for (t, &v) in xtx[r * k..r * k + r + 1]
                .iter_mut()
                .zip(&g[r * k..r * k + r + 1])
            {
                *t += v as f64;
            }
        }
    }
    if rows == 0 {
        return Err(Error::usage(
            "ridge baseline: the training store has no labelled rows",
        ));
    }
    for a in 0..k {
        for b in 0..a {
            xtx[b * k + a] = xtx[a * k + b];
        }
        if a < f {
            xtx[a * k + a] += RIDGE_LAMBDA * rows as f64;
        }
    }
    cholesky_solve(&mut xtx, &mut xty, k)?;
    Ok(xty)
}

/// Solve A w = b in place for symmetric positive definite A ([k, k]); b becomes w.
fn cholesky_solve(a: &mut [f64], b: &mut [f64], k: usize) -> Result<()> {
    for j in 0..k {
        let mut d = a[j * k + j];
        for p in 0..j {
            d -= a[j * k + p] * a[j * k + p];
        }
        if d.is_nan() || d <= 1e-12 {
            return Err(Error::usage(
                "ridge baseline: the normal equations are singular",
            ));
        }
        let d = d.sqrt();
        a[j * k + j] = d;
        for i in j + 1..k {
            let mut s = a[i * k + j];
            for p in 0..j {
                s -= a[i * k + p] * a[j * k + p];
            }
            a[i * k + j] = s / d;
        }
    }
    for i in 0..k {
        let mut s = b[i];
        for p in 0..i {
            s -= a[i * k + p] * b[p];
        }
        b[i] = s / a[i * k + i];
    }
    for i in (0..k).rev() {
        let mut s = b[i];
        for p in i + 1..k {
            s -= a[p * k + i] * b[p];
        }
        b[i] = s / a[i * k + i];
    }
    Ok(())
}

/// Ridge fitted on `train`, mean per-era corr on `eval` (None when no era of `eval` can be
/// scored). The stores must have the same features in the same order.
pub fn ridge_baseline(train: &Store, eval: &Store) -> Result<Option<f64>> {
    if train.feature_names() != eval.feature_names() {
        return Err(Error::usage(
            "ridge baseline: the two stores have different features",
        ));
    }
    let w = ridge_fit(train)?;
    let f = eval.n_features();
    let mut x = Vec::new();
    mean_era_corr(eval, |i| {
        let era = eval.era(i);
        preprocess_features(&era, &mut x);
        Ok(x.chunks(f.max(1))
            .take(era.n_rows)
            .map(|r| w[f] + r.iter().zip(&w).map(|(a, b)| *a as f64 * b).sum::<f64>())
            .collect())
    })
}

/// Mean per-era corr on `store` of predictions given by id (every row of a scored era must
/// have one).
pub fn corr_by_id(store: &Store, preds: &HashMap<String, f64>) -> Result<Option<f64>> {
    mean_era_corr(store, |i| {
        let era = store.era(i);
        (0..era.n_rows)
            .map(|r| {
                let id = era.ids.get(r);
                preds.get(id).copied().ok_or_else(|| {
                    Error::usage(format!("no prediction for id {id} (era {})", era.name))
                })
            })
            .collect()
    })
}

/// The Bayes limit on `store`: the mean per-era corr of the `bayes.csv` that `synth` wrote for
/// the same dataset.
pub fn bayes_corr(store: &Store, bayes_csv: &Path) -> Result<Option<f64>> {
    let preds: HashMap<String, f64> = crate::metrics::read_predictions(bayes_csv)?
        .into_iter()
        .collect();
    corr_by_id(store, &preds)
}
