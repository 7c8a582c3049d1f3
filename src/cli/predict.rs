//! `eraengine predict`: a checkpoint (or an ensemble: several `--model`s or an ensemble directory)
//! and an era store → `id,prediction` CSV (per-era ranks in (0, 1), or the raw output 0 with `--raw`).

use super::PredictArgs;
use crate::checkpoint::Checkpoint;
use crate::data::store::Store;
use crate::device::Backend;
use crate::train::ensemble;
use crate::train::era::{ColumnMap, EraBatch};
use crate::train::Trained;
use crate::Result;
use std::fmt::Write;
use std::path::PathBuf;

pub use crate::train::ensemble::rank_unit;

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
    members: &'a [(PathBuf, Checkpoint)],
    store: &'a Store,
}

impl super::device::DeviceJob for PredictJob<'_> {
    type Out = Vec<Vec<EraPredictions>>;
    fn run<B: Backend>(self, dev: &B) -> Result<Self::Out> {
        self.members
            .iter()
            .map(|(_, ck)| predict_store(dev, ck, self.store))
            .collect()
    }
}

/// The member checkpoints named by `--model` (a directory stands for its ensemble's members).
fn member_paths(models: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in models {
        if p.is_dir() {
            out.extend(ensemble::members_of(p)?);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

pub fn run(a: &PredictArgs) -> Result<()> {
    let members: Vec<(PathBuf, Checkpoint)> = member_paths(&a.model)?
        .into_iter()
        .map(|p| Checkpoint::load(&p).map(|ck| (p, ck)))
        .collect::<Result<_>>()?;
    ensemble::check_members(&members)?;
    let store = Store::open(&a.data)?;
    let device = super::device::resolve(&a.device, true)?;
    let per_member = super::device::dispatch(
        device,
        PredictJob {
            members: &members,
            store: &store,
        },
    )?;
    let single = per_member.len() == 1;
    let mut csv = String::from("id,prediction\n");
    let mut rows = 0usize;
    let n_eras = per_member.first().map_or(0, |m| m.len());
    for e in 0..n_eras {
        let ids = &per_member[0][e].1;
        let vals = if single {
            let preds = &per_member[0][e].2;
            if a.raw {
                preds.clone()
            } else {
                rank_unit(preds)
            }
        } else {
            let outs: Vec<&[f64]> = per_member.iter().map(|m| m[e].2.as_slice()).collect();
            let mean = ensemble::combine(&outs, a.raw);
            if a.raw {
                mean
            } else {
                rank_unit(&mean)
            }
        };
        for (id, v) in ids.iter().zip(vals) {
            let _ = writeln!(csv, "{id},{v}");
            rows += 1;
        }
    }
    crate::io::write_atomic(&a.out, csv.as_bytes())?;
    eprintln!(
        "wrote {} predictions for {} eras to {}{}{}",
        rows,
        n_eras,
        a.out.display(),
        if single {
            String::new()
        } else {
            format!(" (ensemble of {} members)", per_member.len())
        },
        if a.raw { " (raw model output 0)" } else { "" }
    );
    Ok(())
}
