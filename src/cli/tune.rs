//! `eraengine tune`: the CLI side of `train::tune`. Each trial's parameters go through the same
//! path as `train --config` (`train::apply_config` onto a `TrainArgs` with no flags given, then
//! `options_from_args` and `apply_model_flags`), so `best.json` trains the same model with
//! `train --config best.json`.

use super::{TrainArgs, TuneArgs};
use crate::data::store::Store;
use crate::model::Config;
use crate::train::tune::space::Space;
use crate::train::tune::{self, Outcome, Trial, TuneEvent, TuneOptions};
use crate::train::{train, TrainOptions};
use crate::{Error, Result};
use clap::{Args, FromArgMatches};
use serde_json::{json, Map, Value};
use std::path::Path;

pub fn run(a: &TuneArgs) -> Result<()> {
    let opts = TuneOptions {
        trials: a.trials,
        seed: a.seed,
        rungs: a.rungs.clone(),
        eta: a.eta,
    };
    opts.validate()?;
    let (space, origin) = match &a.space {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            (
                Space::parse(&text, p, super::train::CONFIG_KEYS)?,
                p.clone(),
            )
        }
        None => (Space::default_space(), "<default space>".into()),
    };
    let device = super::device::resolve(&a.device, a.quiet)?;
    let (train_store, valid_store) = open_data(a)?;
    // Every trial's flags are checked before any trains (a bad space fails at once).
    let last = opts.rungs.last().copied().unwrap_or(1);
    for i in 0..opts.trials {
        let params = space.sample(opts.seed, i);
        setup(&origin, &params, last, 0, &train_store).map_err(|e| {
            Error::usage(format!(
                "{}: trial {i} draws {}: {e}",
                origin.display(),
                Value::Object(params.clone())
            ))
        })?;
    }
    let job = TuneJob {
        dir: &a.out,
        space: &space,
        origin: &origin,
        opts: &opts,
        train: &train_store,
        valid: &valid_store,
        quiet: a.quiet,
    };
    let table = super::device::dispatch(device, job)?;
    if !a.quiet {
        if let Some(best) = table.first() {
            match best.corr() {
                Some(c) => println!(
                    "best: trial {} ({}) validation mean corr {c:+.4}; config {}",
                    best.trial,
                    crate::progress::epochs(best.epochs),
                    a.out.join("best.json").display()
                ),
                None => println!(
                    "every trial failed; see {}",
                    a.out.join("trials.csv").display()
                ),
            }
        }
        println!(
            "table of {} trials: {}",
            table.len(),
            a.out.join("trials.csv").display()
        );
    }
    Ok(())
}

/// The training and validation stores (the built-in data of `train` when --data is absent).
fn open_data(a: &TuneArgs) -> Result<(Store, Store)> {
    let (t, v) = match (&a.data, &a.valid) {
        (Some(d), Some(v)) => (d.clone(), v.clone()),
        (Some(_), None) => {
            return Err(Error::usage(
                "tune scores every trial on --valid STORE; give one",
            ))
        }
        (None, Some(_)) => {
            return Err(Error::usage(
                "--valid needs --data (the built-in data has its own validation eras)",
            ))
        }
        (None, None) => {
            let dir = super::train::cache_dir().join("builtin-seed0");
            if !a.quiet {
                eprintln!(
                    "no --data given: using the built-in synthetic dataset in {}",
                    dir.display()
                );
            }
            crate::data::synth::builtin(&dir, 0)?
        }
    };
    Ok((Store::open(&t)?, Store::open(&v)?))
}

/// A trial's model config and training options: `params` applied as `train --config` applies a
/// file, under `--epochs epochs --seed seed` (which the parameters cannot override).
fn setup(
    origin: &Path,
    params: &Map<String, Value>,
    epochs: usize,
    seed: u64,
    store: &Store,
) -> Result<(Config, TrainOptions)> {
    let cmd = TrainArgs::augment_args(clap::Command::new("train"));
    let m = cmd
        .try_get_matches_from(["train"])
        .map_err(|e| Error::usage(e.to_string()))?;
    let mut a = TrainArgs::from_arg_matches(&m).map_err(|e| Error::usage(e.to_string()))?;
    a.epochs = Some(epochs);
    a.seed = Some(seed);
    a.quiet = true;
    super::train::apply_config(&mut a, origin, params)?;
    let opts = super::train::options_from_args(&a, false, None)?;
    let cfg = super::train::fresh_config(&a, store)?;
    Ok((cfg, opts))
}

struct TuneJob<'a> {
    dir: &'a Path,
    space: &'a Space,
    origin: &'a Path,
    opts: &'a TuneOptions,
    train: &'a Store,
    valid: &'a Store,
    quiet: bool,
}

impl super::device::DeviceJob for TuneJob<'_> {
    type Out = Vec<tune::TrialResult>;
    fn run<B: crate::device::Backend>(self, dev: &B) -> Result<Self::Out> {
        let fingerprint = json!({
            "device": dev.name(),
            "train_checksum": self.train.data_checksum().to_string(),
            "valid_checksum": self.valid.data_checksum().to_string(),
        });
        let quiet = self.quiet;
        let mut one = |t: &Trial| -> Result<Outcome> {
            let (cfg, opts) = setup(self.origin, &t.params, t.epochs, t.seed, self.train)?;
            match train(
                dev,
                cfg,
                None,
                self.train,
                Some(self.valid),
                &opts,
                &mut |_| {},
            ) {
                Ok(res) => match (res.best, res.best_epoch) {
                    (Some(valid), Some(best_epoch)) => Ok(Outcome::Scored { valid, best_epoch }),
                    _ => Err(Error::usage(format!(
                        "{}: no validation score (does it have values of target 0?)",
                        self.valid.path().display()
                    ))),
                },
                // A diverging trial (NaN loss at a large learning rate) ranks last; the search goes on.
                Err(e @ Error::Numeric { .. }) => Ok(Outcome::Failed(e.to_string())),
                Err(e) => Err(e),
            }
        };
        tune::tune(
            self.dir,
            self.space,
            self.opts,
            &fingerprint,
            &mut one,
            &mut |e: &TuneEvent| {
                if !quiet {
                    eprintln!("{}", e.line());
                }
            },
        )
    }
}
