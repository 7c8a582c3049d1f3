//! Per-era scores as numerai-tools computes them (SPEC §5), in f64.
//!
//! `numerai_corr`: predictions tie-kept ranked, `(rank - 0.5) / count`, gaussianized with `norm_ppf`,
//! raised to `sign(x)·|x|^1.5`; target centred on its era mean, raised the same way; Pearson of the two.
//! `feature_neutral_corr`: predictions ranked and gaussianized, neutralized against the features plus a
//! ones column by least squares (`lstsq`, rcond 1e-6, minimum-norm like numpy), divided by their std,
//! then `numerai_corr` again.

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

pub use super::lstsq::{lstsq, neutralize, neutralize_qrcp, neutralize_svd, NEUTRALIZE_RCOND};
