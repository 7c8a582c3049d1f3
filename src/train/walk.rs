//! Walk-forward: continual training on a sliding window of past eras, predicting the next era each
//! time (out of sample, as it would have run live). The model construction, era shuffling and the
//! optimizer step are plain training's; what differs is which eras each round sees.

use super::era::{self, ColumnMap, EraBatch};
use super::{build, step, Event, TrainOptions, Trained};
use crate::checkpoint::Checkpoint;
use crate::data::store::Store;
use crate::device::Backend;
use crate::model::Config;
use crate::params::Adam;
use crate::rng::Rng;
use crate::{Error, Result};

#[derive(Clone, Debug)]
pub struct WalkOptions {
    /// eras in the training window
    pub window: usize,
    /// eras between the window and the predicted era
    pub embargo: usize,
}

impl WalkOptions {
    pub fn validate(&self, store: &Store, epochs: usize) -> Result<()> {
        if self.window == 0 || epochs == 0 {
            return Err(Error::usage("--window and --epochs must be at least 1"));
        }
        if store.n_eras() <= self.window + self.embargo {
            return Err(Error::usage(format!(
                "--window {} with --embargo {} needs more than {} eras; {} has {}",
                self.window,
                self.embargo,
                self.window + self.embargo,
                store.path().display(),
                store.n_eras()
            )));
        }
        Ok(())
    }
}

/// One out-of-sample era: its ids, predictions (output 0), target 0 and gate values.
#[derive(Clone, Debug)]
pub struct Predicted {
    pub era: String,
    pub ids: Vec<String>,
    pub preds: Vec<f64>,
    pub target: Vec<f64>,
    pub gates: Vec<f32>,
}

pub struct WalkResult {
    pub eras: Vec<Predicted>,
    /// the weights after the last round
    pub checkpoint: Checkpoint,
}

/// Runs the walk over `store` (eras in time order). `opts.epochs` passes over the window per round.
pub fn walk<B: Backend>(
    dev: &B,
    cfg: &Config,
    init: Option<&Checkpoint>,
    store: &Store,
    w: &WalkOptions,
    opts: &TrainOptions,
    on_event: &mut dyn FnMut(&Event),
) -> Result<WalkResult> {
    opts.validate()?;
    w.validate(store, opts.epochs)?;
    let mut m: Trained<B> = build(dev, cfg, init, store, opts.seed)?;
    let mut adam = Adam::new(dev, &m.params, opts.lr, opts.weight_decay)?;
    let map = ColumnMap::identity(store);
    let mut rng = Rng::new(opts.seed, 0x3A1C);
    let mut step = 0u64;
    let mut results: Vec<Predicted> = Vec::new();
    let t = cfg.n_targets;
    let first = w.window + w.embargo;
    let total = store.n_eras() - first;
    let started = std::time::Instant::now();
    for (done, next) in (first..store.n_eras()).enumerate() {
        // Train on the `window` eras that end `embargo` eras before the predicted one.
        let end = next - w.embargo;
        let mut eras: Vec<usize> = (end - w.window..end).collect();
        for _ in 0..opts.epochs {
            era::shuffle(&mut eras, &mut rng);
            for &e in &eras {
                if opts.max_steps.is_some_and(|ms| step >= ms) {
                    break;
                }
                let batch = EraBatch::load(store, e, &map)?;
                if batch.n == 0 || batch.present_targets() == 0 {
                    continue;
                }
                step += 1;
                step::train_step(dev, &mut m, &mut adam, &batch, opts, step)?;
            }
        }
        let batch = EraBatch::load(store, next, &map)?;
        let view = store.era(next);
        let ids: Vec<String> = (0..batch.n).map(|r| view.id(r).to_string()).collect();
        let (preds, gates) = if batch.n == 0 {
            (Vec::new(), vec![0.0; cfg.n_features])
        } else {
            let (yhat, g) = m.predict_era(dev, &batch)?;
            ((0..batch.n).map(|r| yhat[r * t] as f64).collect(), g)
        };
        let target: Vec<f64> = (0..batch.n).map(|r| batch.y[r * t] as f64).collect();
        on_event(&Event::WalkEra {
            done: done + 1,
            total,
            first: store.era(end - w.window).name.to_string(),
            last: store.era(end - 1).name.to_string(),
            era: batch.name.clone(),
            corr: crate::metrics::numerai_corr(&preds, &target),
            secs: started.elapsed().as_secs_f64(),
        });
        results.push(Predicted {
            era: batch.name,
            ids,
            preds,
            target,
            gates,
        });
    }
    Ok(WalkResult {
        eras: results,
        checkpoint: m.to_checkpoint(dev)?,
    })
}
