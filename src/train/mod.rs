//! The training loop: one era per optimizer step, validation corr per epoch, early stopping that
//! keeps the best checkpoint. Generic over the device; it never branches on which one it runs on.

pub mod context;
pub mod era;
pub mod resume;

use crate::checkpoint::Checkpoint;
use crate::data::store::Store;
use crate::device::Backend;
use crate::model::{Config, EraTransformer, TrainCtx};
use crate::params::{Adam, Params};
use crate::rng::Rng;
use crate::tape::Tape;
use crate::{Error, Result};
use era::{ColumnMap, EraBatch};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub epochs: usize,
    pub seed: u64,
    pub lr: f32,
    pub weight_decay: f32,
    /// global-norm clip; 0 = off
    pub clip: f32,
    pub max_steps: Option<u64>,
    /// epochs without a better validation corr before stopping
    pub patience: usize,
    /// epochs over which the gate threshold ramps from 0 to its configured value
    pub threshold_warmup: usize,
    pub out: Option<PathBuf>,
    pub grads_out: Option<PathBuf>,
    pub quiet: bool,
    /// Continue a killed run from its last state (weights come in `init`).
    pub resume: Option<resume::OptimState>,
}

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
    pub fn from_checkpoint(dev: &B, ck: &Checkpoint) -> Result<Self> {
        let (context, tensors) = context::ContextNorm::split(&ck.tensors);
        let params = Params::from_host(dev, &tensors)?;
        let model = EraTransformer::new(ck.config.clone(), &params)?;
        if model.cfg.context_dim > 0 {
            match &context {
                Some(c) if c.mean.len() == 2 * model.cfg.n_features
                    && c.std.len() == 2 * model.cfg.n_features => {}
                _ => {
                    return Err(Error::shape(format!(
                        "the model has an era context: tensors '{}' and '{}' of length {} are needed",
                        context::MEAN_TENSOR,
                        context::STD_TENSOR,
                        2 * model.cfg.n_features
                    )))
                }
            }
        }
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
        })
    }

    /// The era's inputs on the tape, with the standardised era statistics when the model has an
    /// era context (noised when `train` gives (seed, step)).
    pub fn inputs(
        &self,
        dev: &B,
        tape: &mut Tape<B>,
        batch: &EraBatch,
        train: Option<(u64, u64)>,
    ) -> Result<crate::model::EraInputs> {
        let mut inputs = batch.to_tape(dev, tape)?;
        if let (true, Some(c)) = (self.model.cfg.context_dim > 0, &self.context) {
            let noise = train.map(|(seed, step)| (self.model.cfg.context_noise, seed, step));
            let s = c.input(batch, noise)?;
            inputs.ctx = Some(tape.input(dev, &s)?);
        }
        Ok(inputs)
    }

    /// Model outputs [n, T] for one era, no dropout, plus the gate values [F].
    pub fn predict_era(&self, dev: &B, batch: &EraBatch) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut tape = Tape::new();
        let inputs = self.inputs(dev, &mut tape, batch, None)?;
        let out = self
            .model
            .forward(dev, &mut tape, &self.params, &inputs, None)?;
        Ok((tape.download(dev, out.yhat)?, tape.download(dev, out.g)?))
    }

    /// Mean/std/sharpe of per-era numerai_corr of output 0 against target 0 over a store.
    pub fn validate(&self, dev: &B, store: &Store, map: &ColumnMap) -> Result<ValidScore> {
        let t = self.model.cfg.n_targets;
        let mut corrs = Vec::new();
        for i in 0..store.n_eras() {
            let batch = EraBatch::load(store, i, map)?;
            if batch.n == 0 {
                continue;
            }
            let target: Vec<f64> = (0..batch.n).map(|r| batch.y[r * t] as f64).collect();
            if target.iter().all(|x| x.is_nan()) {
                continue;
            }
            let (yhat, _) = self.predict_era(dev, &batch)?;
            let pred: Vec<f64> = (0..batch.n).map(|r| yhat[r * t] as f64).collect();
            if let Some(c) = crate::metrics::numerai_corr(&pred, &target) {
                corrs.push(c);
            }
        }
        Ok(summarize(&corrs))
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

/// Trains on `train` (every era, shuffled each epoch), validating on `valid` after each epoch.
/// Returns the best checkpoint (by validation mean corr; the last one without validation).
pub fn train<B: Backend>(
    dev: &B,
    cfg: Config,
    init: Option<&Checkpoint>,
    train: &Store,
    valid: Option<&Store>,
    opts: &TrainOptions,
) -> Result<TrainResult> {
    let features = train.feature_names().to_vec();
    let targets = train.target_names().to_vec();
    let tensors = match init {
        Some(ck) => {
            if ck.config != cfg {
                return Err(Error::usage(
                    "--init: the checkpoint's config differs from the requested model flags; drop the model flags to fine-tune it as it is",
                ));
            }
            if ck.features != features || ck.targets != targets {
                return Err(Error::usage(format!(
                    "--init: the checkpoint was trained on {} features / targets {:?}, the store {} has {} / {:?}",
                    ck.features.len(),
                    ck.targets,
                    train.path().display(),
                    features.len(),
                    targets
                )));
            }
            ck.tensors.clone()
        }
        None => crate::model::init_params(&cfg, opts.seed),
    };
    let params = Params::from_host(dev, &tensors)?;
    let model = EraTransformer::new(cfg.clone(), &params)?;
    let train_map = ColumnMap::identity(train);
    let context = match (cfg.context_dim, init) {
        (0, _) => None,
        (_, Some(ck)) => context::ContextNorm::split(&ck.tensors).0,
        (_, None) => Some(context::ContextNorm::fit(train, &train_map)?),
    };
    let mut m = Trained {
        model,
        params,
        features: features.clone(),
        targets: targets.clone(),
        context,
    };
    let mut adam = match &opts.resume {
        Some(st) => Adam::from_state(dev, &st.m, &st.v, st.adam_step, opts.lr, opts.weight_decay)?,
        None => Adam::new(dev, &m.params, opts.lr, opts.weight_decay)?,
    };
    let valid_map = match valid {
        Some(v) => Some(ColumnMap::for_model(v, &features, &targets)?),
        None => None,
    };
    let target_tau = cfg.threshold;
    let mut reports = Vec::new();
    let mut best: Option<(usize, ValidScore, Checkpoint)> = None;
    let mut since_best = 0usize;
    let mut step: u64 = 0;
    let mut first_epoch = 1;
    if let Some(st) = &opts.resume {
        step = st.global_step;
        first_epoch = st.epoch + 1;
        since_best = st.since_best;
        if let (Some(e), Some(c)) = (st.best_epoch, st.best_corr) {
            // The best checkpoint so far is the one at --out; keep it unless beaten.
            let ck = match &opts.out {
                Some(p) if p.exists() => Checkpoint::load(p)?,
                _ => m.to_checkpoint(dev)?,
            };
            let score = ValidScore {
                mean: c,
                ..ValidScore::default()
            };
            best = Some((e, score, ck));
        }
        if !opts.quiet {
            eprintln!(
                "resuming after epoch {} (step {})",
                st.epoch, st.global_step
            );
        }
    }
    let mut order: Vec<usize> = (0..train.n_eras()).collect();
    let tty = std::io::stderr().is_terminal();
    'epochs: for epoch in first_epoch..=opts.epochs {
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
        // Fisher–Yates shuffle of the era order, from the identity each epoch.
        for (i, o) in order.iter_mut().enumerate() {
            *o = i;
        }
        for i in (1..order.len()).rev() {
            let j = (rng.next_u32() as usize) % (i + 1);
            order.swap(i, j);
        }
        let t0 = Instant::now();
        let (mut loss_sum, mut mse_sum, mut counted) = (0.0f64, 0.0f64, 0usize);
        let mut last_print = Instant::now();
        let mut g_last: Vec<f32> = Vec::new();
        let mut done_eras = 0usize;
        for (k, &ei) in order.iter().enumerate() {
            if opts.max_steps.is_some_and(|ms| step >= ms) {
                break;
            }
            let batch = EraBatch::load(train, ei, &train_map)?;
            if batch.n == 0 || batch.present_targets() == 0 {
                continue;
            }
            step += 1;
            let (parts, g) = train_step(dev, &mut m, &mut adam, &batch, opts, step)?;
            g_last = g;
            loss_sum += parts.loss as f64;
            mse_sum += parts.mse as f64;
            counted += 1;
            done_eras += 1;
            if !opts.quiet && tty && last_print.elapsed().as_millis() > 300 {
                let rate = done_eras as f64 / t0.elapsed().as_secs_f64();
                eprint!(
                    "\repoch {epoch}/{} era {}/{}  loss {:.5}  {:.1} eras/s   ",
                    opts.epochs,
                    k + 1,
                    order.len(),
                    loss_sum / counted as f64,
                    rate
                );
                let _ = std::io::stderr().flush();
                last_print = Instant::now();
            }
        }
        if done_eras == 0 {
            break 'epochs;
        }
        let secs = t0.elapsed().as_secs_f64();
        let vscore = match (valid, &valid_map) {
            (Some(v), Some(map)) => Some(m.validate(dev, v, map)?),
            _ => None,
        };
        let features_kept = if g_last.is_empty() {
            0
        } else {
            let tau = m.model.cfg.threshold;
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
            valid: vscore,
            eras_per_s: done_eras as f64 / secs.max(1e-9),
            mean_gate: g_last.iter().map(|&g| g as f64).sum::<f64>() / g_last.len().max(1) as f64,
            features_kept,
        };
        if !opts.quiet {
            if tty {
                eprint!("\r{:70}\r", "");
            }
            eprintln!(
                "{}",
                format_report(&report, opts.epochs, m.model.cfg.n_features)
            );
        }
        reports.push(report);
        let improved = match (vscore, &best) {
            (Some(v), Some((_, b, _))) => v.mean > b.mean,
            (Some(_), None) => true,
            (None, _) => true,
        };
        if improved {
            let ck = m.to_checkpoint(dev)?;
            if let Some(path) = &opts.out {
                ck.save(path)?;
            }
            best = Some((epoch, vscore.unwrap_or_default(), ck));
            since_best = 0;
        } else {
            since_best += 1;
            if valid.is_some() && opts.patience > 0 && since_best >= opts.patience {
                if !opts.quiet {
                    eprintln!(
                        "early stop: no better validation corr for {} epochs",
                        opts.patience
                    );
                }
                break;
            }
        }
        if let Some(out) = &opts.out {
            save_last(dev, &m, &adam, out, epoch, step, &best, since_best)?;
        }
        if opts.max_steps.is_some_and(|ms| step >= ms) {
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
        Some((e, s, ck)) => (Some(e), valid.map(|_| s), ck),
        None => {
            let ck = m.to_checkpoint(dev)?;
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
    })
}

/// Writes the last-epoch weights and optimizer state beside `out` (for `--resume`).
#[allow(clippy::too_many_arguments)]
fn save_last<B: Backend>(
    dev: &B,
    m: &Trained<B>,
    adam: &Adam<B>,
    out: &std::path::Path,
    epoch: usize,
    step: u64,
    best: &Option<(usize, ValidScore, Checkpoint)>,
    since_best: usize,
) -> Result<()> {
    let last = resume::last_path(out);
    m.to_checkpoint(dev)?.save(&last)?;
    let (mm, vv) = adam.to_host(dev, &m.params)?;
    resume::OptimState {
        m: mm,
        v: vv,
        adam_step: adam.step,
        global_step: step,
        epoch,
        best_epoch: best.as_ref().map(|b| b.0),
        best_corr: best.as_ref().map(|b| b.1.mean),
        since_best,
    }
    .save(&resume::optim_path(&last))
}

fn format_report(r: &EpochReport, epochs: usize, n_features: usize) -> String {
    let v = match r.valid {
        Some(v) => format!(
            "valid corr {:+.4} sharpe {:+.2} ({} eras)",
            v.mean, v.sharpe, v.eras
        ),
        None => "no validation data".to_string(),
    };
    format!(
        "epoch {:>3}/{epochs}  loss {:.5}  mse {:.5}  {v}  gate {:.3} ({}/{} kept)  {:.1} eras/s",
        r.epoch, r.train_loss, r.train_mse, r.mean_gate, r.features_kept, n_features, r.eras_per_s
    )
}

/// Forward + loss + backward + clipped Adam for one era. Returns the loss parts and the gate values.
pub fn train_step<B: Backend>(
    dev: &B,
    m: &mut Trained<B>,
    adam: &mut Adam<B>,
    batch: &EraBatch,
    opts: &TrainOptions,
    step: u64,
) -> Result<(crate::ops::loss::LossParts, Vec<f32>)> {
    let mut tape = Tape::new();
    let inputs = m.inputs(dev, &mut tape, batch, Some((opts.seed, step)))?;
    let ctx = TrainCtx {
        seed: opts.seed,
        step: step as u32,
    };
    let out = m
        .model
        .forward(dev, &mut tape, &m.params, &inputs, Some(ctx))?;
    let cfg = &m.model.cfg;
    let corr = if cfg.corr_weight > 0.0 {
        Some(tape.corr_loss(
            dev,
            out.yhat,
            inputs.y,
            inputs.mask,
            cfg.corr_weight,
            batch.n,
            cfg.n_targets,
        )?)
    } else {
        None
    };
    let mut parts = tape.loss(
        dev,
        out.yhat,
        inputs.y,
        inputs.mask,
        out.g,
        cfg.lambda_sparsity,
        batch.n,
        cfg.n_targets,
    )?;
    if let Some(c) = corr {
        parts.loss += cfg.corr_weight * (1.0 - c.corr);
    }
    if !parts.loss.is_finite() {
        return Err(Error::Numeric {
            step,
            tensor: "loss".into(),
            msg: format!(
                "loss is {} (mse {}, sparsity {})",
                parts.loss, parts.mse, parts.sparsity
            ),
        });
    }
    let g = tape.download(dev, out.g)?;
    m.params.zero_grads(dev)?;
    tape.backward(dev, &mut m.params)?;
    tape.release(dev);
    let (norm, bad) = m.params.grad_norm(dev)?;
    if let Some(name) = bad {
        return Err(Error::Numeric {
            step,
            tensor: format!("{name} (gradient)"),
            msg: "gradient has NaN or Inf values".into(),
        });
    }
    let scale = if opts.clip > 0.0 && norm > opts.clip as f64 {
        (opts.clip as f64 / norm) as f32
    } else {
        1.0
    };
    adam.update(dev, &mut m.params, scale)?;
    Ok((parts, g))
}
