//! `eraengine predict`: a checkpoint and an era store → `id,prediction` CSV (per-era ranks in (0, 1),
//! or the raw output 0 with `--raw`).

use super::PredictArgs;
use crate::checkpoint::Checkpoint;
use crate::data::store::Store;
use crate::device::Backend;
use crate::train::era::{ColumnMap, EraBatch};
use crate::train::Trained;
use crate::Result;
use std::fmt::Write;

/// One era's predictions: (era name, row ids, output 0).
pub type EraPredictions = (String, Vec<String>, Vec<f64>);

/// Per-era predictions for every era of the store.
pub fn predict_store<B: Backend>(
    dev: &B,
    ck: &Checkpoint,
    store: &Store,
) -> Result<Vec<EraPredictions>> {
    let m = Trained::from_checkpoint(dev, ck)?;
    let map = ColumnMap::for_model(store, &ck.features, &ck.targets)?;
    let t = ck.config.n_targets;
    let mut out = Vec::with_capacity(store.n_eras());
    for i in 0..store.n_eras() {
        let batch = EraBatch::load(store, i, &map)?;
        let era = store.era(i);
        let ids: Vec<String> = (0..batch.n).map(|r| era.id(r).to_string()).collect();
        let preds = if batch.n == 0 {
            Vec::new()
        } else {
            let (yhat, _) = m.predict_era(dev, &batch)?;
            (0..batch.n).map(|r| yhat[r * t] as f64).collect()
        };
        out.push((batch.name, ids, preds));
    }
    Ok(out)
}

struct PredictJob<'a> {
    ck: &'a Checkpoint,
    store: &'a Store,
}

impl super::device::DeviceJob for PredictJob<'_> {
    type Out = Vec<EraPredictions>;
    fn run<B: Backend>(self, dev: &B) -> Result<Self::Out> {
        predict_store(dev, self.ck, self.store)
    }
}

/// Tie-kept per-era rank mapped to (rank − 0.5) / count: strictly inside (0, 1).
pub fn rank_unit(preds: &[f64]) -> Vec<f64> {
    let ranks = crate::metrics::rank_average(preds);
    let n = preds.len() as f64;
    ranks.iter().map(|r| (r - 0.5) / n).collect()
}

pub fn run(a: &PredictArgs) -> Result<()> {
    let ck = Checkpoint::load(&a.model)?;
    let store = Store::open(&a.data)?;
    let device = super::device::resolve(&a.device, true)?;
    let eras = super::device::dispatch(
        device,
        PredictJob {
            ck: &ck,
            store: &store,
        },
    )?;
    let mut csv = String::from("id,prediction\n");
    let mut rows = 0usize;
    for (_, ids, preds) in &eras {
        let vals = if a.raw {
            preds.clone()
        } else {
            rank_unit(preds)
        };
        for (id, v) in ids.iter().zip(vals) {
            let _ = writeln!(csv, "{id},{v}");
            rows += 1;
        }
    }
    crate::io::write_atomic(&a.out, csv.as_bytes())?;
    eprintln!(
        "wrote {} predictions for {} eras to {}{}",
        rows,
        eras.len(),
        a.out.display(),
        if a.raw { " (raw model output 0)" } else { "" }
    );
    Ok(())
}
