//! The training loop: one era (or `eras_per_step` eras) per optimizer step, validation corr per
//! epoch, early stopping that keeps the best checkpoint. Generic over the device; it never branches
//! on which one it runs on, and it prints nothing: progress goes to an event sink.

pub mod blend;
pub mod context;
pub mod ema;
pub mod ensemble;
pub mod era;
pub mod event;
pub mod noise;
pub mod options;
pub mod outputs;
pub mod pretrain;
pub mod resume;
pub mod rows;
pub mod step;
pub mod tune;
pub mod walk;

use crate::checkpoint::Checkpoint;
use crate::data::store::Store;
use crate::device::Backend;
use crate::model::{Config, EraTransformer};
use crate::params::{Adam, Params};
use crate::rng::Rng;
use crate::tape::Tape;
use crate::{Error, Result};
use ema::DeviceEma;
use era::{ColumnMap, EraBatch, EraSource};
use std::path::Path;
use std::time::Instant;

pub use event::Event;
pub use options::{Schedule, TrainOptions};
pub use step::{train_step, train_step_owned};

/// Validation summary over eras with a score.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ValidScore {
    pub mean: f64,
    pub std: f64,
    pub sharpe: f64,
    pub eras: usize,
}

#[derive(Clone, Debug)]
pub struct EpochReport {
    pub epoch: usize,
    pub steps: u64,
    pub train_loss: f64,
    pub train_mse: f64,
    /// mean orthogonal-embedding penalty P over the epoch's eras (0 when `ortho_weight` is 0)
    pub train_ortho: f64,
    pub valid: Option<ValidScore>,
    pub eras_per_s: f64,
    pub mean_gate: f64,
    pub features_kept: usize,
}

pub struct TrainResult {
    pub epochs: Vec<EpochReport>,
    pub best_epoch: Option<usize>,
    pub best: Option<ValidScore>,
    pub checkpoint: Checkpoint,
    /// Set by a refit (`eraengine train --refit on`): the epochs the checkpoint was retrained for
    /// on the training and validation eras; `best` is the early-stopped model's score.
    pub refit_epochs: Option<usize>,
}

/// A model with its parameters on a device.
pub struct Trained<B: Backend> {
    pub model: EraTransformer,
    pub params: Params<B>,
    pub features: Vec<String>,
    pub targets: Vec<String>,
    /// The era context's standardisation, when the model has an era context.
    pub context: Option<context::ContextNorm>,
}

impl<B: Backend> Trained<B> {
    /// A freshly initialised model of `cfg` (parameters from `seed`), with no feature or target
    /// names and no era-context standardisation: for benchmarks and tests that drive
    /// [`train_step`] on synthetic batches.
    pub fn fresh(dev: &B, cfg: &Config, seed: u64) -> Result<Self> {
        let params = Params::from_host(dev, &crate::model::init_params(cfg, seed))?;
        let model = EraTransformer::new(cfg.clone(), &params)?;
        Ok(Trained {
            model,
            params,
            features: vec![],
            targets: vec![],
            context: None,
        })
    }

    pub fn from_checkpoint(dev: &B, ck: &Checkpoint) -> Result<Self> {
        let (context, tensors) = context::ContextNorm::split(&ck.tensors);
        let params = Params::from_host(dev, &tensors)?;
        let model = EraTransformer::new(ck.config.clone(), &params)?;
        context::check(&model.cfg, context.as_ref())?;
        Ok(Trained {
            model,
            params,
            features: ck.features.clone(),
            targets: ck.targets.clone(),
            context,
        })
    }

    pub fn to_checkpoint(&self, dev: &B) -> Result<Checkpoint> {
        let mut tensors = self.params.to_host(dev)?;
        if let Some(c) = &self.context {
            tensors.extend(c.tensors());
        }
        Ok(Checkpoint {
            config: self.model.cfg.clone(),
            features: self.features.clone(),
            targets: self.targets.clone(),
            tensors,
            head_blend: None,
        })
    }

    /// Model outputs [n, T] for one era, no dropout, plus the gate values [F].
    pub fn predict_era(&self, dev: &B, batch: &EraBatch) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut tape = Tape::new();
        let inputs = self.inputs(dev, &mut tape, batch, None)?;
        let out = self
            .model
            .forward(dev, &mut tape, &self.params, &inputs, None)?;
        let res = (tape.download(dev, out.yhat)?, tape.download(dev, out.g)?);
        tape.release(dev);
        Ok(res)
    }
}

pub fn summarize(corrs: &[f64]) -> ValidScore {
    if corrs.is_empty() {
        return ValidScore::default();
    }
    let n = corrs.len() as f64;
    let mean = corrs.iter().sum::<f64>() / n;
    let std = (corrs.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / n).sqrt();
    let sharpe = if std > 0.0 { mean / std } else { 0.0 };
    ValidScore {
        mean,
        std,
        sharpe,
        eras: corrs.len(),
    }
}

/// The model a run starts from, shared by plain training and walk-forward: the weights of `init`
/// (which must have config `cfg` and the store's features and targets) or fresh ones from `seed`.
pub fn build<B: Backend>(
    dev: &B,
    cfg: &Config,
    init: Option<&Checkpoint>,
    store: &Store,
    seed: u64,
) -> Result<Trained<B>> {
    build_on(dev, cfg, init, &EraSource::one(store), seed)
}

/// [`build`] for a training source (it names the features and targets; the era context is fitted
/// on all its eras).
pub fn build_on<B: Backend>(
    dev: &B,
    cfg: &Config,
    init: Option<&Checkpoint>,
    src: &EraSource,
    seed: u64,
) -> Result<Trained<B>> {
    let store = src.first();
    let features = src.feature_names().to_vec();
    let targets = src.target_names().to_vec();
    let tensors = match init {
        Some(ck) => {
            if &ck.config != cfg {
                return Err(Error::usage(
                    "--init: the checkpoint's config differs from the requested model flags; drop the model flags to fine-tune it as it is",
                ));
            }
            if ck.features != features || ck.targets != targets {
                return Err(Error::usage(format!(
                    "--init: the checkpoint was trained on {} features / targets {:?}, the store {} has {} / {:?}",
                    ck.features.len(),
                    ck.targets,
                    store.path().display(),
                    features.len(),
                    targets
                )));
            }
            ck.tensors.clone()
        }
        None => crate::model::init_params(cfg, seed),
    };
    // The era context's standardisation: from the checkpoint, else fitted on the store's feature
    // statistics (features only, never targets).
    let (context, tensors) = context::ContextNorm::split(&tensors);
    let context = match (cfg.context_dim, context) {
        (0, _) => None,
        (_, Some(c)) => Some(c),
        (_, None) => Some(context::ContextNorm::fit_source(src)?),
    };
    let params = Params::from_host(dev, &tensors)?;
    let model = EraTransformer::new(cfg.clone(), &params)?;
    context::check(cfg, context.as_ref())?;
    Ok(Trained {
        model,
        params,
        features,
        targets,
        context,
    })
}

/// The weights to score and save: the moving average when there is one, else the raw weights.
fn scored_weights<B: Backend>(
    dev: &B,
    m: &Trained<B>,
    ema: &Option<DeviceEma<B>>,
) -> Result<Checkpoint> {
    match ema {
        Some(e) => {
            let mut tensors = e.to_host(dev)?;
            if let Some(c) = &m.context {
                tensors.extend(c.tensors());
            }
            Ok(Checkpoint {
                config: m.model.cfg.clone(),
                features: m.features.clone(),
                targets: m.targets.clone(),
                tensors,
                head_blend: None,
            })
        }
        None => m.to_checkpoint(dev),
    }
}

/// Validation score of the weights `scored_weights` would save.
fn score<B: Backend>(
    dev: &B,
    m: &Trained<B>,
    ema: &Option<DeviceEma<B>>,
    store: &Store,
    map: &ColumnMap,
) -> Result<ValidScore> {
    match ema {
        Some(e) => {
            let params = Params::from_host(dev, &e.to_host(dev)?)?;
            let avg = Trained {
                model: EraTransformer::new(m.model.cfg.clone(), &params)?,
                params,
                features: m.features.clone(),
                targets: m.targets.clone(),
                context: m.context.clone(),
            };
            avg.validate(dev, store, map)
        }
        None => m.validate(dev, store, map),
    }
}

/// Trains on `train` (every era, shuffled each epoch), validating on `valid` after each epoch.
/// Returns the best checkpoint (by validation mean corr; the last one without validation).
/// Progress goes to `on_event`.
pub fn train<B: Backend>(
    dev: &B,
    cfg: Config,
    init: Option<&Checkpoint>,
    train: &Store,
    valid: Option<&Store>,
    opts: &TrainOptions,
    on_event: &mut dyn FnMut(&Event),
) -> Result<TrainResult> {
    train_on(
        dev,
        cfg,
        init,
        &EraSource::one(train),
        valid,
        opts,
        on_event,
    )
}

/// [`train`] on a training source of one or more stores (e.g. the training and validation eras of
/// a refit).
pub fn train_on<B: Backend>(
    dev: &B,
    cfg: Config,
    init: Option<&Checkpoint>,
    src: &EraSource,
    valid: Option<&Store>,
    opts: &TrainOptions,
    on_event: &mut dyn FnMut(&Event),
) -> Result<TrainResult> {
    opts.validate()?;
    let learnable = (0..src.n_eras()).filter(|&i| src.learnable(i)).count();
    if learnable == 0 {
        let names: Vec<String> = src
            .stores()
            .map(|s| s.path().display().to_string())
            .collect();
        return Err(Error::format(
            src.first().path(),
            "targets",
            format!(
                "nothing to learn: {} has {} eras and none has a target value",
                names.join(" + "),
                src.n_eras()
            ),
        ));
    }
    let mut m = build_on(dev, &cfg, init, src, opts.seed)?;
    let features = m.features.clone();
    let targets = m.targets.clone();
    let mut adam = match &opts.resume {
        Some(st) => Adam::from_state(dev, &st.m, &st.v, st.adam_step, opts.lr, opts.weight_decay)?,
        None => Adam::new(dev, &m.params, opts.lr, opts.weight_decay)?,
    };
    let valid = match valid {
        Some(v) => {
            let map = ColumnMap::for_model(v, &features, &targets)?;
            if era::has_target0(v, &map) {
                Some((v, map))
            } else {
                on_event(&Event::NoValidation {
                    reason: format!(
                        "{} has no values of target {}",
                        v.path().display(),
                        targets.first().map_or("0", |s| s.as_str())
                    ),
                });
                None
            }
        }
        None => None,
    };
    let k = opts.eras_per_step;
    let per_epoch = learnable.div_ceil(k) as u64;
    let mut total_steps = per_epoch * opts.epochs as u64;
    if let Some(ms) = opts.max_steps {
        total_steps = total_steps.min(ms);
    }
    let target_tau = cfg.threshold;
    let mut reports = Vec::new();
    let mut best: Option<(usize, ValidScore, Checkpoint)> = None;
    let mut since_best = 0usize;
    let mut step: u64 = 0;
    let mut first_epoch = 1;
    let mut ema = if opts.ema > 0.0 {
        let start = match opts.resume.as_ref().and_then(|st| st.ema.clone()) {
            Some(t) => t,
            None => m.params.to_host(dev)?,
        };
        Some(DeviceEma::new(dev, opts.ema, &start)?)
    } else {
        None
    };
    if let Some(st) = &opts.resume {
        step = st.global_step;
        first_epoch = st.epoch + 1;
        since_best = st.since_best;
        // A run that had stopped early has nothing left to train (a refit, if any, follows it).
        if valid.is_some() && opts.patience > 0 && since_best >= opts.patience {
            first_epoch = opts.epochs + 1;
        }
        if let (Some(e), Some(s)) = (st.best_epoch, st.best) {
            // The best checkpoint so far is the one at --out; keep it unless beaten.
            let ck = match &opts.out {
                Some(p) if p.exists() => Checkpoint::load(p)?,
                _ => scored_weights(dev, &m, &ema)?,
            };
            best = Some((e, s, ck));
        }
        on_event(&Event::Resumed {
            epoch: st.epoch,
            step: st.global_step,
        });
    }
    let stop_at = |adam: &Adam<B>| opts.max_steps.is_some_and(|ms| adam.step as u64 >= ms);
    let mut order: Vec<usize> = (0..src.n_eras()).collect();
    for epoch in first_epoch..=opts.epochs {
        // The era order of an epoch depends only on the seed and the epoch (so a resumed run
        // sees the same order as an uninterrupted one).
        let mut rng = Rng::new(
            opts.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            0x5EED,
        );
        if opts.threshold_warmup > 0 {
            let frac = (epoch as f32 / opts.threshold_warmup as f32).min(1.0);
            m.model.cfg.threshold = target_tau * frac;
        }
        for (i, o) in order.iter_mut().enumerate() {
            *o = i;
        }
        era::shuffle(&mut order, &mut rng);
        let t0 = Instant::now();
        let (mut loss_sum, mut mse_sum, mut counted) = (0.0f64, 0.0f64, 0usize);
        let mut ortho_sum = 0.0f64;
        let mut g_last: Vec<f32> = Vec::new();
        let mut group = 0usize;
        let n_order = order.len();
        let loaders = era::prefetch_workers(dev.prefers_codes())?;
        // an era without rows or targets is skipped; the others are row-sampled (only the kept
        // rows are read) and noised on the loader thread (both keyed by seed, epoch and era: the
        // same whichever thread runs them), x made only where the device reads it (not from the
        // codes), and the era statistics of a model with an era context found there too
        let make_x = !dev.prefers_codes();
        let with_context = m.model.cfg.context_dim > 0;
        let (seed, round) = (opts.seed, epoch as u64);
        let rows_of = |ei: usize, n: usize| rows::plan(seed, round, ei as u64, n, opts.row_sample);
        let prep = |ei: usize, mut batch: EraBatch| {
            if make_x {
                batch.make_x();
            }
            noise::apply(&mut batch, seed, round, ei as u64, opts.feature_noise);
            if with_context {
                batch.keep_context_stats();
            }
            batch
        };
        src.with_prefetch(&order, loaders, rows_of, prep, |eras| -> Result<()> {
            for (i, (_, batch)) in eras.enumerate() {
                if group == 0 && stop_at(&adam) {
                    break;
                }
                let Some(batch) = batch? else {
                    continue;
                };
                if group == 0 {
                    m.params.zero_grads(dev)?;
                }
                step += 1;
                let (parts, g) =
                    step::accumulate_owned(dev, &mut m, &mut adam, batch, opts.seed, step)?;
                group += 1;
                if group == k {
                    finish_group(
                        dev,
                        &mut m,
                        &mut adam,
                        &mut ema,
                        opts,
                        group,
                        step,
                        total_steps,
                    )?;
                    group = 0;
                }
                g_last = g;
                loss_sum += parts.loss as f64;
                mse_sum += parts.mse as f64;
                ortho_sum += parts.ortho as f64;
                counted += 1;
                on_event(&Event::Era {
                    epoch,
                    epochs: opts.epochs,
                    done: i + 1,
                    total: n_order,
                    loss: loss_sum / counted as f64,
                    eras_per_s: counted as f64 / t0.elapsed().as_secs_f64().max(1e-9),
                });
            }
            Ok(())
        })?;
        if group > 0 {
            finish_group(
                dev,
                &mut m,
                &mut adam,
                &mut ema,
                opts,
                group,
                step,
                total_steps,
            )?;
        }
        // the last step's gradient norms, if the device kept them (one host wait an epoch)
        adam.check_pending(dev, &m.params)?;
        if counted == 0 {
            break;
        }
        let secs = t0.elapsed().as_secs_f64();
        let vscore = match &valid {
            Some((v, map)) => {
                let s = score(dev, &m, &ema, v, map)?;
                on_event(&Event::Validation {
                    epoch,
                    score: s,
                    ema: ema.is_some(),
                });
                Some(s)
            }
            None => None,
        };
        let features_kept = if g_last.is_empty() {
            0
        } else {
            let tau = match m.model.cfg.selection {
                // VSN keeps era-mean weights m_f ≥ τ/F (docs/model.md)
                crate::model::Selection::Vsn => {
                    m.model.cfg.threshold / m.model.cfg.n_features as f32
                }
                crate::model::Selection::Gate => m.model.cfg.threshold,
            };
            match m.model.cfg.top_k {
                Some(k) => k,
                None => g_last.iter().filter(|&&g| g >= tau).count(),
            }
        };
        let report = EpochReport {
            epoch,
            steps: step,
            train_loss: loss_sum / counted.max(1) as f64,
            train_mse: mse_sum / counted.max(1) as f64,
            train_ortho: ortho_sum / counted.max(1) as f64,
            valid: vscore,
            eras_per_s: counted as f64 / secs.max(1e-9),
            mean_gate: g_last.iter().map(|&g| g as f64).sum::<f64>() / g_last.len().max(1) as f64,
            features_kept,
        };
        on_event(&Event::Epoch {
            report: report.clone(),
            epochs: opts.epochs,
            n_features: m.model.cfg.n_features,
        });
        reports.push(report);
        // Epochs before --min-epochs are kept only until a later one is scored: the kept epoch
        // is the best of epochs min_epochs.., and patience counts from min_epochs.
        let improved = match (vscore, &best) {
            _ if epoch <= opts.min_epochs => true,
            (Some(v), Some((_, b, _))) => v.mean > b.mean,
            (Some(_), None) => true,
            (None, _) => true,
        };
        let mut stop = false;
        if improved {
            let ck = scored_weights(dev, &m, &ema)?;
            if let Some(path) = &opts.out {
                ck.save(path)?;
            }
            best = Some((epoch, vscore.unwrap_or_default(), ck));
            since_best = 0;
        } else {
            since_best += 1;
            if valid.is_some() && opts.patience > 0 && since_best >= opts.patience {
                on_event(&Event::EarlyStop {
                    patience: opts.patience,
                });
                stop = true;
            }
        }
        if let Some(out) = &opts.out {
            let state = Progress {
                epoch,
                step,
                best: &best,
                since_best,
                data_checksum: src.data_checksum(),
            };
            save_last(dev, &m, &adam, &ema, out, opts, &state)?;
        }
        if stop || stop_at(&adam) {
            break;
        }
    }
    if let Some(path) = &opts.grads_out {
        let grads = m.params.grads_to_host(dev)?;
        let mut meta = serde_json::Map::new();
        meta.insert("step".into(), serde_json::Value::String(step.to_string()));
        crate::io::write_atomic(path, &crate::checkpoint::to_bytes(&grads, &meta))?;
    }
    let (best_epoch, best_score, checkpoint) = match best {
        Some((e, s, ck)) => (Some(e), valid.as_ref().map(|_| s), ck),
        None => {
            let ck = scored_weights(dev, &m, &ema)?;
            if let Some(path) = &opts.out {
                ck.save(path)?;
            }
            (None, None, ck)
        }
    };
    Ok(TrainResult {
        epochs: reports,
        best_epoch,
        best: best_score,
        checkpoint,
        refit_epochs: None,
    })
}

/// Ends a group of `eras` accumulated eras: the scheduled learning rate, one Adam step, the EMA.
#[allow(clippy::too_many_arguments)]
fn finish_group<B: Backend>(
    dev: &B,
    m: &mut Trained<B>,
    adam: &mut Adam<B>,
    ema: &mut Option<DeviceEma<B>>,
    opts: &TrainOptions,
    eras: usize,
    step: u64,
    total_steps: u64,
) -> Result<()> {
    adam.lr = opts.lr_at(adam.step as u64 + 1, total_steps);
    step::apply(dev, m, adam, opts.clip, eras, step)?;
    if let Some(e) = ema {
        e.update(dev, &m.params)?;
    }
    Ok(())
}

/// Loop counters written with the last state.
struct Progress<'a> {
    epoch: usize,
    step: u64,
    best: &'a Option<(usize, ValidScore, Checkpoint)>,
    since_best: usize,
    data_checksum: u64,
}

/// Writes the last-epoch weights and optimizer state beside `out` (for `--resume`).
fn save_last<B: Backend>(
    dev: &B,
    m: &Trained<B>,
    adam: &Adam<B>,
    ema: &Option<DeviceEma<B>>,
    out: &Path,
    opts: &TrainOptions,
    p: &Progress,
) -> Result<()> {
    let last = resume::last_path(out);
    m.to_checkpoint(dev)?.save(&last)?;
    let (mm, vv) = adam.to_host(dev, &m.params)?;
    resume::OptimState {
        m: mm,
        v: vv,
        adam_step: adam.step,
        global_step: p.step,
        epoch: p.epoch,
        best_epoch: p.best.as_ref().map(|b| b.0),
        best: p.best.as_ref().map(|b| b.1),
        since_best: p.since_best,
        settings: Some(resume::Settings::from_options(opts, p.data_checksum)),
        ema: ema.as_ref().map(|e| e.to_host(dev)).transpose()?,
    }
    .save(&resume::optim_path(&last))
}
