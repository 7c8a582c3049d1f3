//! Walk-forward: continual training on a sliding window of past eras, predicting the next era each
//! time (out of sample, as it would have run live). The model construction, era shuffling and the
//! optimizer step are plain training's; what differs is which eras each round sees.
//!
//! Rehearsal (as in the Dynamos seed): eras that slid out of the window are offered to a
//! reservoir sample of `rehearsal_size` eras (Vitter's algorithm R); after each training step on a
//! window era, with probability `rehearsal` one era drawn from the reservoir gets a step too, so
//! the model keeps what older regimes taught it. Every random draw of round r comes from
//! generators keyed by (seed, r), so a run resumed after round r draws what an uninterrupted one
//! draws.
//!
//! Resume: with `state` set, the weights, the optimizer moments, the reservoir and the predictions
//! so far are written atomically after every predicted era; `resume` continues from that file and
//! ends with the same predictions, bit for bit, as an uninterrupted run.

use super::era::{self, ColumnMap, EraBatch};
use super::{build, step, Event, TrainOptions, Trained};
use crate::checkpoint::Checkpoint;
use crate::data::store::Store;
use crate::device::Backend;
use crate::model::Config;
use crate::params::{Adam, HostTensors, Params};
use crate::rng::Rng;
use crate::{Error, Result};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default)]
pub struct WalkOptions {
    /// eras in the training window
    pub window: usize,
    /// eras between the window and the predicted era
    pub embargo: usize,
    /// probability of replaying one reservoir era after each window era's step; 0 = off
    pub rehearsal: f32,
    /// eras kept in the reservoir
    pub rehearsal_size: usize,
    /// the state file written after every predicted era (none: not written)
    pub state: Option<PathBuf>,
    /// continue from `state`
    pub resume: bool,
}

impl WalkOptions {
    pub fn validate(&self, store: &Store, epochs: usize) -> Result<()> {
        if self.window == 0 || epochs == 0 {
            return Err(Error::usage("--window and --epochs must be at least 1"));
        }
        if !(self.rehearsal.is_finite() && (0.0..=1.0).contains(&self.rehearsal)) {
            return Err(Error::usage(format!(
                "--rehearsal must be a probability in [0, 1], got {}",
                self.rehearsal
            )));
        }
        if self.rehearsal > 0.0 && self.rehearsal_size == 0 {
            return Err(Error::usage(
                "--rehearsal needs --rehearsal-size of at least 1",
            ));
        }
        if self.resume && self.state.is_none() {
            return Err(Error::usage(
                "--resume with --walk-forward continues from the state file beside --predictions-out; give --predictions-out",
            ));
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

/// The state file of a walk whose predictions go to `predictions`: `NAME.walk-state.safetensors`.
pub fn state_path(predictions: &Path) -> PathBuf {
    let mut name = predictions
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".walk-state.safetensors");
    predictions.with_file_name(name)
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

/// The reservoir of older eras (algorithm R over the eras that left the window, in order).
#[derive(Clone, Debug, Default, PartialEq)]
struct Reservoir {
    eras: Vec<usize>,
    /// eras offered so far
    seen: u64,
}

impl Reservoir {
    fn offer(&mut self, era: usize, cap: usize, rng: &mut Rng) {
        self.seen += 1;
        if self.eras.len() < cap {
            self.eras.push(era);
        } else {
            let j = below(rng, self.seen);
            if j < cap as u64 {
                self.eras[j as usize] = era;
            }
        }
    }
}

fn below(rng: &mut Rng, n: u64) -> u64 {
    let x = ((rng.next_u32() as u64) << 32) | rng.next_u32() as u64;
    x % n.max(1)
}

/// The generator of round `round`'s draws of kind `stream`.
fn round_rng(seed: u64, round: usize, stream: u32) -> Rng {
    Rng::new(
        seed ^ (round as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        stream,
    )
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
    let settings = settings_json(cfg, store, w, opts);
    let first = w.window + w.embargo;
    let total = store.n_eras() - first;
    let map = ColumnMap::identity(store);
    let t = cfg.n_targets;
    let mut m: Trained<B> = build(dev, cfg, init, store, opts.seed)?;
    let mut adam = Adam::new(dev, &m.params, opts.lr, opts.weight_decay)?;
    let mut step = 0u64;
    let mut reservoir = Reservoir::default();
    let mut results: Vec<Predicted> = Vec::new();
    if w.resume {
        if let Some(path) = &w.state {
            let s = load_state(path, &settings, cfg)?;
            m.params = Params::from_host(dev, &s.params)?;
            m.model = crate::model::EraTransformer::new(cfg.clone(), &m.params)?;
            adam = Adam::from_state(dev, &s.m, &s.v, s.adam_step, opts.lr, opts.weight_decay)?;
            step = s.step;
            reservoir = s.reservoir;
            for (k, (preds, gates)) in s.predicted.into_iter().enumerate() {
                let era = first + k;
                let batch = EraBatch::load(store, era, &map)?;
                if preds.len() != batch.n || gates.len() != cfg.n_features {
                    return Err(Error::format(
                        path,
                        format!("pred.{k}"),
                        "does not fit the store's era (another store?)",
                    ));
                }
                results.push(predicted(store, era, &batch, preds, gates));
            }
            on_event(&Event::WalkResumed {
                done: results.len(),
                total,
            });
        }
    }
    let started = std::time::Instant::now();
    let resumed = results.len();
    for (done, next) in (first..store.n_eras()).enumerate().skip(results.len()) {
        // Train on the `window` eras that end `embargo` eras before the predicted one.
        let end = next - w.embargo;
        let start = end - w.window;
        if w.rehearsal > 0.0 {
            // The era that left the window since the last round joins the reservoir.
            let mut rr = round_rng(opts.seed, done, 0x7E5E);
            if start > 0 {
                reservoir.offer(start - 1, w.rehearsal_size, &mut rr);
            }
        }
        let mut order = round_rng(opts.seed, done, 0x3A1C);
        let mut replay = round_rng(opts.seed, done, 0x5EB1);
        let mut eras: Vec<usize> = (start..end).collect();
        // The round's eras in training order, replays included (the draws do not depend on
        // training), so the loader threads can read them ahead of the steps.
        let mut plan = Vec::with_capacity(opts.epochs * eras.len());
        for _ in 0..opts.epochs {
            era::shuffle(&mut eras, &mut order);
            for &e in &eras {
                plan.push(e);
                if w.rehearsal > 0.0 && !reservoir.eras.is_empty() {
                    let u = replay.uniform(0.0, 1.0);
                    if u < w.rehearsal {
                        let j = below(&mut replay, reservoir.eras.len() as u64) as usize;
                        plan.push(reservoir.eras[j]);
                    }
                }
            }
        }
        if opts.max_steps.is_some_and(|ms| step >= ms) {
            // `--max-steps` reached in an earlier round: nothing to read
            plan.clear();
        }
        let loaders = era::prefetch_workers(dev.prefers_codes())?;
        let ctx = m.model.cfg.context_dim > 0;
        era::with_prefetch(store, &map, &plan, loaders, ctx, |batches| -> Result<()> {
            for (_, batch) in batches {
                if opts.max_steps.is_some_and(|ms| step >= ms) {
                    break;
                }
                let batch = batch?;
                // an era without rows or targets takes no step
                if batch.n == 0 || batch.present_targets() == 0 {
                    continue;
                }
                step += 1;
                // the era is not used again: its x moves onto the tape (no copy on the CPU)
                step::train_step_owned(dev, &mut m, &mut adam, batch, opts, step)?;
            }
            Ok(())
        })?;
        // the round's last step's gradient norms, if the device kept them
        adam.check_pending(dev, &m.params)?;
        let batch = EraBatch::load(store, next, &map)?;
        let (preds, gates) = if batch.n == 0 {
            (Vec::new(), vec![0.0; cfg.n_features])
        } else {
            let (yhat, g) = m.predict_era(dev, &batch)?;
            ((0..batch.n).map(|r| yhat[r * t] as f64).collect(), g)
        };
        let p = predicted(store, next, &batch, preds, gates);
        on_event(&Event::WalkEra {
            done: done + 1,
            total,
            first: store.era(start).name.to_string(),
            last: store.era(end - 1).name.to_string(),
            era: p.era.clone(),
            corr: crate::metrics::numerai_corr(&p.preds, &p.target),
            secs: started.elapsed().as_secs_f64(),
            eta_s: started.elapsed().as_secs_f64() / (done + 1 - resumed) as f64
                * (total - done - 1) as f64,
        });
        results.push(p);
        if let Some(path) = &w.state {
            save_state(dev, path, &settings, &m, &adam, step, &reservoir, &results)?;
        }
    }
    Ok(WalkResult {
        eras: results,
        checkpoint: m.to_checkpoint(dev)?,
    })
}

fn predicted(
    store: &Store,
    era: usize,
    batch: &EraBatch,
    preds: Vec<f64>,
    gates: Vec<f32>,
) -> Predicted {
    let view = store.era(era);
    let t = batch.t;
    Predicted {
        era: batch.name.clone(),
        ids: (0..batch.n).map(|r| view.id(r).to_string()).collect(),
        preds,
        target: (0..batch.n).map(|r| batch.y[r * t] as f64).collect(),
        gates,
    }
}

/// What must be equal for a state file to be resumed.
fn settings_json(cfg: &Config, store: &Store, w: &WalkOptions, o: &TrainOptions) -> Value {
    json!({
        "config": cfg.to_json(),
        "data_checksum": store.data_checksum().to_string(),
        "window": w.window,
        "embargo": w.embargo,
        "rehearsal": w.rehearsal.to_string(),
        "rehearsal_size": w.rehearsal_size,
        "epochs": o.epochs,
        "seed": o.seed.to_string(),
        "lr": o.lr.to_string(),
        "weight_decay": o.weight_decay.to_string(),
        "clip": o.clip.to_string(),
        "max_steps": o.max_steps,
    })
}

const STATE_FORMAT: &str = "eraengine-walk-state";

#[allow(clippy::too_many_arguments)]
fn save_state<B: Backend>(
    dev: &B,
    path: &Path,
    settings: &Value,
    m: &Trained<B>,
    adam: &Adam<B>,
    step: u64,
    reservoir: &Reservoir,
    results: &[Predicted],
) -> Result<()> {
    let mut tensors: HostTensors = Vec::new();
    let (mm, vv) = adam.to_host(dev, &m.params)?;
    for (prefix, set) in [
        ("param.", m.params.to_host(dev)?),
        ("adam.m.", mm),
        ("adam.v.", vv),
    ] {
        for (n, s, d) in set {
            tensors.push((format!("{prefix}{n}"), s, d));
        }
    }
    for (k, r) in results.iter().enumerate() {
        // Predictions are f32 model outputs widened to f64: f32 keeps them exactly.
        let p: Vec<f32> = r.preds.iter().map(|&x| x as f32).collect();
        tensors.push((format!("pred.{k}"), vec![p.len()], p));
        tensors.push((format!("gate.{k}"), vec![r.gates.len()], r.gates.clone()));
    }
    let mut meta = Map::new();
    meta.insert("format".into(), Value::from(STATE_FORMAT));
    meta.insert("settings".into(), Value::from(settings.to_string()));
    let progress = json!({
        "done": results.len(),
        "step": step.to_string(),
        "adam_step": adam.step,
        "reservoir": reservoir.eras,
        "seen": reservoir.seen.to_string(),
    });
    meta.insert("progress".into(), Value::from(progress.to_string()));
    crate::io::write_atomic(path, &crate::checkpoint::to_bytes(&tensors, &meta))
}

struct State {
    params: HostTensors,
    m: HostTensors,
    v: HostTensors,
    adam_step: u32,
    step: u64,
    reservoir: Reservoir,
    /// (predictions, gates) of each predicted era, in order
    predicted: Vec<(Vec<f64>, Vec<f32>)>,
}

fn load_state(path: &Path, settings: &Value, cfg: &Config) -> Result<State> {
    if !path.exists() {
        return Err(Error::usage(format!(
            "--resume: {} does not exist (a walk-forward run with --predictions-out writes it after every era)",
            path.display()
        )));
    }
    let bytes = crate::checkpoint::read_file(path)?;
    let (meta, tensors) = crate::checkpoint::from_bytes(&bytes, path)?;
    let what = "a walk-forward state";
    crate::checkpoint::expect_format(&meta, path, STATE_FORMAT, what)?;
    let parse = |key: &str| -> Result<Value> {
        let s = crate::checkpoint::meta_str(&meta, key, path, what)?;
        serde_json::from_str(s)
            .map_err(|e| Error::format(path, format!("__metadata__.{key}"), e.to_string()))
    };
    let saved = parse("settings")?;
    if &saved != settings {
        let key = settings
            .as_object()
            .and_then(|o| o.keys().find(|k| saved[k.as_str()] != settings[k.as_str()]))
            .cloned()
            .unwrap_or_default();
        return Err(Error::usage(format!(
            "--resume: {} was written by a walk with another {key} ({} then, {} now); resume with the same flags and data, or drop --resume",
            path.display(),
            saved[key.as_str()],
            settings[key.as_str()]
        )));
    }
    let p = parse("progress")?;
    let bad = |k: &str| Error::format(path, format!("__metadata__.progress.{k}"), "missing");
    let num = |k: &str| -> Result<u64> {
        match &p[k] {
            Value::String(s) => s.parse().map_err(|_| bad(k)),
            v => v.as_u64().ok_or_else(|| bad(k)),
        }
    };
    let done = num("done")? as usize;
    let reservoir = Reservoir {
        eras: p["reservoir"]
            .as_array()
            .ok_or_else(|| bad("reservoir"))?
            .iter()
            .map(|e| {
                e.as_u64()
                    .map(|x| x as usize)
                    .ok_or_else(|| bad("reservoir"))
            })
            .collect::<Result<_>>()?,
        seen: num("seen")?,
    };
    let mut by_name: std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> =
        tensors.into_iter().map(|(n, s, d)| (n, (s, d))).collect();
    let mut take = |name: String| {
        by_name
            .remove(&name)
            .ok_or_else(|| Error::format(path, &name, "tensor missing"))
    };
    let specs = crate::model::param_specs(cfg);
    let mut sets: [HostTensors; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for (i, prefix) in ["param.", "adam.m.", "adam.v."].iter().enumerate() {
        for (n, shape) in &specs {
            let (s, d) = take(format!("{prefix}{n}"))?;
            if &s != shape {
                return Err(Error::format(path, format!("{prefix}{n}"), "wrong shape"));
            }
            sets[i].push((n.clone(), s, d));
        }
    }
    let mut predicted = Vec::with_capacity(done);
    for k in 0..done {
        let (_, p) = take(format!("pred.{k}"))?;
        let (_, g) = take(format!("gate.{k}"))?;
        predicted.push((p.into_iter().map(|x| x as f64).collect(), g));
    }
    let [params, m, v] = sets;
    Ok(State {
        params,
        m,
        v,
        adam_step: num("adam_step")? as u32,
        step: num("step")?,
        reservoir,
        predicted,
    })
}
