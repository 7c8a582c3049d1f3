//! A model's outputs on every scored era of a store, and their per-era correlation with target 0:
//! what validation scores (output 0 alone) and what the head blend searches over (src/train/blend.rs).

use super::era::{self, ColumnMap};
use super::{summarize, Trained, ValidScore};
use crate::data::store::Store;
use crate::device::Backend;
use crate::metrics::numerai_corr;
use crate::Result;

/// One era with a target 0: every head's output [n, t] and target 0 (NaN = missing).
pub struct EraOutputs {
    pub yhat: Vec<f32>,
    pub target: Vec<f64>,
}

impl<B: Backend> Trained<B> {
    /// Every head's output on each era of `store` that has a row and a target 0, in store order.
    /// The eras load on loader threads ahead of the model ([`era::with_prefetch`]).
    pub fn era_outputs(&self, dev: &B, store: &Store, map: &ColumnMap) -> Result<Vec<EraOutputs>> {
        let t = self.model.cfg.n_targets;
        let order: Vec<usize> = (0..store.n_eras()).collect();
        let loaders = era::prefetch_workers(dev.prefers_codes())?;
        let stats = self.model.cfg.context_dim > 0;
        era::with_prefetch(store, map, &order, loaders, stats, |eras| {
            let mut out = Vec::new();
            for (_, batch) in eras {
                let batch = batch?;
                if batch.n == 0 {
                    continue;
                }
                let target: Vec<f64> = (0..batch.n).map(|r| batch.y[r * t] as f64).collect();
                if target.iter().all(|x| x.is_nan()) {
                    continue;
                }
                let (yhat, _) = self.predict_era(dev, &batch)?;
                out.push(EraOutputs { yhat, target });
            }
            Ok(out)
        })
    }

    /// Mean/std/sharpe of per-era numerai_corr of output 0 against target 0 over a store.
    pub fn validate(&self, dev: &B, store: &Store, map: &ColumnMap) -> Result<ValidScore> {
        let mut w = vec![0.0f32; self.model.cfg.n_targets];
        w[0] = 1.0;
        Ok(summarize(&era_corrs(
            &self.era_outputs(dev, store, map)?,
            &w,
        )))
    }
}

/// Per-era `numerai_corr` of Σ_k w_k ŷ_k against target 0, leaving out eras without a score.
/// Heads with weight 0 are not read, so w = (1, 0, …, 0) scores output 0 exactly.
pub fn era_corrs(eras: &[EraOutputs], w: &[f32]) -> Vec<f64> {
    let t = w.len();
    eras.iter()
        .filter_map(|e| {
            let pred: Vec<f64> = (0..e.target.len())
                .map(|r| {
                    w.iter()
                        .enumerate()
                        .filter(|(_, &wk)| wk != 0.0)
                        .map(|(k, &wk)| wk as f64 * e.yhat[r * t + k] as f64)
                        .sum()
                })
                .collect();
            numerai_corr(&pred, &e.target)
        })
        .collect()
}
