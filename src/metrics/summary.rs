//! Per-era scores and their summary over eras (SPEC §5), as JSON and as a terminal table.

use super::corr::{feature_exposure, feature_neutral_corr, numerai_corr, pearson_present};
use crate::{Error, Result};
use serde_json::{json, Value};

/// One era to score. `target` uses NaN for missing values (a NaN prediction also drops its row).
#[derive(Debug, Clone, Copy)]
pub struct EraInput<'a> {
    pub era: &'a str,
    pub preds: &'a [f64],
    pub target: &'a [f64],
    /// Row-major `[rows, F]` feature values 0..4 (after imputation) and F.
    pub features: Option<(&'a [u8], usize)>,
    /// Meta-model predictions of the same rows (NaN = missing).
    pub meta: Option<&'a [f64]>,
}

/// Scores of one era; None where a score is undefined (see `numerai_corr`).
#[derive(Debug, Clone, PartialEq)]
pub struct EraScore {
    pub era: String,
    /// Rows where both prediction and target are present.
    pub rows: usize,
    pub corr: Option<f64>,
    pub fnc: Option<f64>,
    pub feature_exposure: Option<f64>,
    pub meta_corr: Option<f64>,
}

/// Per-era scores and the summary over the eras whose corr is defined. Summary fields are None when
/// no era is scored (and `sharpe` also when the std is 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub eras: Vec<EraScore>,
    pub mean: Option<f64>,
    pub std: Option<f64>,
    pub sharpe: Option<f64>,
    pub max_drawdown: Option<f64>,
    pub hit_rate: Option<f64>,
    pub feature_exposure: Option<f64>,
    pub fnc_mean: Option<f64>,
    pub meta_corr_mean: Option<f64>,
    pub warnings: Vec<String>,
}

/// Scores every era (in parallel over eras) and summarizes them. Eras whose targets are all missing
/// are left out; eras whose corr is undefined are listed, warned about and left out of the summary.
/// Errors only on inputs of inconsistent lengths.
pub fn evaluate(eras: &[EraInput]) -> Result<Evaluation> {
    evaluate_with(eras, true)
}

/// [`evaluate`], with the feature-neutral corr left out when `fnc` is false (it solves a least
/// squares problem per era over every feature: slow for thousands of features).
pub fn evaluate_with(eras: &[EraInput], fnc: bool) -> Result<Evaluation> {
    evaluate_with_progress(eras, fnc, &mut |_| {})
}

/// [`evaluate_with`] that reports the eras scored so far to `on_progress` (stage "eval").
pub fn evaluate_with_progress(
    eras: &[EraInput],
    fnc: bool,
    on_progress: &mut dyn FnMut(&crate::progress::Progress),
) -> Result<Evaluation> {
    for e in eras {
        let n = e.preds.len();
        if e.target.len() != n {
            return Err(Error::shape(format!(
                "era {}: {} predictions but {} targets",
                e.era,
                n,
                e.target.len()
            )));
        }
        if let Some((f, nf)) = e.features {
            if f.len() != n * nf {
                return Err(Error::shape(format!(
                    "era {}: {} feature values, expected {} rows x {} features",
                    e.era,
                    f.len(),
                    n,
                    nf
                )));
            }
        }
        if let Some(m) = e.meta {
            if m.len() != n {
                return Err(Error::shape(format!(
                    "era {}: {} meta-model values but {} rows",
                    e.era,
                    m.len(),
                    n
                )));
            }
        }
    }
    let kept: Vec<&EraInput> = eras
        .iter()
        .filter(|e| e.target.iter().any(|t| !t.is_nan()))
        .collect();
    let stage = crate::progress::Stage::new("eval", Some(kept.len() as u64), "eras");
    let batch = 4 * std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut scores = Vec::with_capacity(kept.len());
    for chunk in kept.chunks(batch) {
        scores.extend(par_map(chunk, |e| score_era(e, fnc)));
        on_progress(&stage.at(scores.len() as u64, false));
    }
    on_progress(&stage.at(scores.len() as u64, true));
    let mut warnings = Vec::new();
    for s in &scores {
        if s.corr.is_none() {
            warnings.push(format!(
                "era {}: corr undefined ({} scored rows; fewer than 2, or constant predictions or targets), left out of the summary",
                s.era, s.rows
            ));
        }
    }
    Ok(summarize(scores, warnings))
}

fn score_era(e: &&EraInput, with_fnc: bool) -> EraScore {
    let rows = e
        .preds
        .iter()
        .zip(e.target)
        .filter(|(p, t)| !p.is_nan() && !t.is_nan())
        .count();
    let corr = numerai_corr(e.preds, e.target);
    // fnc is as undefined as corr is; exposure does not depend on the target
    let (fnc, fe) = match e.features {
        Some((f, nf)) => (
            corr.filter(|_| with_fnc)
                .and_then(|_| feature_neutral_corr(e.preds, e.target, f, nf)),
            feature_exposure(e.preds, f, nf),
        ),
        None => (None, None),
    };
    EraScore {
        era: e.era.to_string(),
        rows,
        corr,
        fnc,
        feature_exposure: fe,
        meta_corr: e.meta.and_then(|m| pearson_present(e.preds, m)),
    }
}

/// Maps `f` over `items` on up to `available_parallelism` threads, keeping the order.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(items.len().max(1));
    if threads <= 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            match h.join() {
                Ok(v) => out.extend(v),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        out
    })
}

/// Summary statistics of per-era scores (only eras with a corr count).
pub fn summarize(eras: Vec<EraScore>, warnings: Vec<String>) -> Evaluation {
    let corrs: Vec<f64> = eras.iter().filter_map(|e| e.corr).collect();
    let scored = || eras.iter().filter(|e| e.corr.is_some());
    let (mean, std) = mean_std(&corrs);
    Evaluation {
        mean,
        std,
        sharpe: match (mean, std) {
            (Some(m), Some(s)) if s > 0.0 => Some(m / s),
            _ => None,
        },
        max_drawdown: max_drawdown(&corrs),
        hit_rate: (!corrs.is_empty())
            .then(|| corrs.iter().filter(|c| **c > 0.0).count() as f64 / corrs.len() as f64),
        feature_exposure: mean_of(scored().filter_map(|e| e.feature_exposure)),
        fnc_mean: mean_of(scored().filter_map(|e| e.fnc)),
        meta_corr_mean: mean_of(scored().filter_map(|e| e.meta_corr)),
        eras,
        warnings,
    }
}

fn mean_of(it: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = it.collect();
    mean_std(&v).0
}

/// Mean and std (ddof 0); None for no values.
pub fn mean_std(x: &[f64]) -> (Option<f64>, Option<f64>) {
    if x.is_empty() {
        return (None, None);
    }
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (Some(mean), Some(var.sqrt()))
}

/// Max over eras of (running max of the cumulative sum − cumulative sum), the running max starting
/// at the first era's cumulative sum (numerai's example notebook); None for no eras.
pub fn max_drawdown(corrs: &[f64]) -> Option<f64> {
    let first = *corrs.first()?;
    let mut cum = 0.0;
    let mut peak = first;
    let mut dd: f64 = 0.0;
    for c in corrs {
        cum += c;
        peak = peak.max(cum);
        dd = dd.max(peak - cum);
    }
    Some(dd)
}

fn num(x: Option<f64>) -> Value {
    match x {
        Some(v) if v.is_finite() => json!(v),
        _ => Value::Null,
    }
}

fn cell(x: Option<f64>) -> String {
    match x {
        Some(v) => format!("{v:>10.5}"),
        None => format!("{:>10}", "-"),
    }
}

impl Evaluation {
    /// Number of eras that count in the summary.
    pub fn scored_eras(&self) -> usize {
        self.eras.iter().filter(|e| e.corr.is_some()).count()
    }

    /// The SPEC §5 JSON: `eras` (era, rows, corr, fnc, feature_exposure, meta_corr) and the summary.
    pub fn to_json(&self) -> Value {
        let eras: Vec<Value> = self
            .eras
            .iter()
            .map(|e| {
                json!({
                    "era": e.era,
                    "rows": e.rows,
                    "corr": num(e.corr),
                    "fnc": num(e.fnc),
                    "feature_exposure": num(e.feature_exposure),
                    "meta_corr": num(e.meta_corr),
                })
            })
            .collect();
        json!({
            "eras": eras,
            "scored_eras": self.scored_eras(),
            "mean": num(self.mean),
            "std": num(self.std),
            "sharpe": num(self.sharpe),
            "max_drawdown": num(self.max_drawdown),
            "hit_rate": num(self.hit_rate),
            "feature_exposure": num(self.feature_exposure),
            "fnc_mean": num(self.fnc_mean),
            "meta_corr_mean": num(self.meta_corr_mean),
            "warnings": self.warnings,
        })
    }

    /// Per-era table and summary for a terminal.
    pub fn table(&self) -> String {
        let w = self
            .eras
            .iter()
            .map(|e| e.era.len())
            .max()
            .unwrap_or(3)
            .max(3);
        let mut s = format!(
            "{:<w$} {:>8} {:>10} {:>10} {:>10} {:>10}\n",
            "era", "rows", "corr", "fnc", "exposure", "meta_corr"
        );
        for e in &self.eras {
            s += &format!(
                "{:<w$} {:>8} {} {} {} {}\n",
                e.era,
                e.rows,
                cell(e.corr),
                cell(e.fnc),
                cell(e.feature_exposure),
                cell(e.meta_corr)
            );
        }
        s += &format!(
            "\n{} eras scored of {}\n",
            self.scored_eras(),
            self.eras.len()
        );
        let rows = [
            ("mean corr", self.mean),
            ("std", self.std),
            ("sharpe", self.sharpe),
            ("max drawdown", self.max_drawdown),
            ("hit rate", self.hit_rate),
            ("feature exposure", self.feature_exposure),
            ("fnc mean", self.fnc_mean),
            ("meta corr mean", self.meta_corr_mean),
        ];
        for (name, v) in rows {
            s += &format!("{name:<18}{}\n", cell(v));
        }
        for wn in &self.warnings {
            s += &format!("warning: {wn}\n");
        }
        s
    }
}
