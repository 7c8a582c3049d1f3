//! Masked-feature pretraining (docs/model.md): per row a random `mask_rate` of the
//! features (⌈rate·F⌉ rounded, at least 1, Philox-keyed by seed and step) is replaced, after the
//! gate, by the learned mask value `pretrain.mask_value` [F]; the encoder (gate → mapper →
//! layers) and the reconstruction head `pretrain.head.{0,1}` (d → GELU → F) learn to give back the
//! masked entries: the MSE over masked entries only (the loss op with targets = x where masked, NaN
//! elsewhere, λ = 0). Eras without targets count (live, unresolved). Validation: the same MSE,
//! without dropout, on a fixed mask per era, over `--valid` or the training store's last eras.
//!
//! The result is a normal checkpoint of the model config holding the encoder, a fresh head.* and
//! the pretrain.* tensors (`__metadata__.pretrained = "masked-feature"`); [`for_finetune`] turns
//! it into the start of `train --init`.

use super::era::{self, ColumnMap, EraBatch};
use super::{step, Trained};
use crate::checkpoint::Checkpoint;
use crate::data::Store;
use crate::device::Backend;
use crate::model::{init_params, pretrain_specs, Config, EraTransformer, TrainCtx};
use crate::params::{Adam, Params};
use crate::progress::{Progress, Stage};
use crate::rng::Rng;
use crate::tape::Tape;
use crate::{Error, Result};

/// Philox stream of the pretraining masks.
const MASK_STREAM: u32 = 0x9A5C;

#[derive(Clone, Debug)]
pub struct PretrainOptions {
    pub epochs: usize,
    pub lr: f32,
    pub weight_decay: f32,
    pub clip: f32,
    pub seed: u64,
    /// share of each row's features masked
    pub mask_rate: f32,
    pub max_steps: Option<u64>,
    /// stop after this many epochs without a better validation MSE (0 = never)
    pub patience: usize,
}

impl Default for PretrainOptions {
    fn default() -> Self {
        PretrainOptions {
            epochs: 10,
            lr: 1e-3,
            weight_decay: 0.01,
            clip: 1.0,
            seed: 0,
            mask_rate: 0.15,
            max_steps: None,
            patience: 3,
        }
    }
}

impl PretrainOptions {
    pub fn validate(&self) -> Result<()> {
        if !(self.mask_rate.is_finite() && self.mask_rate > 0.0 && self.mask_rate < 1.0) {
            return Err(Error::usage(format!(
                "--mask-rate must be in (0, 1), got {}",
                self.mask_rate
            )));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::usage(format!("--lr must be > 0, got {}", self.lr)));
        }
        if self.epochs == 0 {
            return Err(Error::usage("--epochs must be at least 1"));
        }
        Ok(())
    }
}

/// What pretraining reports as it goes (the CLI renders it).
#[derive(Clone, Debug)]
pub enum PretrainEvent {
    /// Eras done in the current epoch.
    Progress(Progress),
    /// One epoch is done: mean training and validation reconstruction MSE.
    Epoch {
        epoch: usize,
        epochs: usize,
        train_mse: f64,
        valid_mse: Option<f64>,
    },
    EarlyStop {
        patience: usize,
    },
}

pub struct PretrainResult {
    /// (epoch, train MSE, validation MSE)
    pub epochs: Vec<(usize, f64, Option<f64>)>,
    pub best_epoch: usize,
    pub checkpoint: Checkpoint,
}

/// Fresh pretraining tensors: mask value 0, the head as a linear layer of SPEC §3
/// (U(±1/√fan_in)), from Philox streams after the model's.
pub fn init_pretrain(cfg: &Config, seed: u64) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let base = crate::model::param_specs(cfg).len() as u32;
    pretrain_specs(cfg)
        .into_iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let len: usize = shape.iter().product();
            let data = if name == "pretrain.mask_value" {
                vec![0.0; len]
            } else {
                let fan_in = cfg.d_model.max(1) as f32;
                let bound = 1.0 / fan_in.sqrt();
                let mut rng = Rng::new(seed, base + i as u32);
                (0..len).map(|_| rng.uniform(-bound, bound)).collect()
            };
            (name, shape, data)
        })
        .collect()
}

/// The start of fine-tuning from checkpoint `ck`: a pretrained checkpoint loses its pretrain.*
/// tensors and gets a fresh head.* (seeded by `seed`); any other checkpoint is returned as it is.
pub fn for_finetune(mut ck: Checkpoint, seed: u64) -> Checkpoint {
    if !ck.is_pretrained() {
        return ck;
    }
    ck.tensors.retain(|(n, _, _)| !n.starts_with("pretrain."));
    let fresh = init_params(&ck.config, seed);
    for t in ck.tensors.iter_mut() {
        if t.0.starts_with("head.") {
            if let Some(f) = fresh.iter().find(|(n, _, _)| *n == t.0) {
                *t = f.clone();
            }
        }
    }
    ck
}

/// The fill mask [n, F] of one era: per real row, k = max(1, round(rate · F)) distinct features
/// (a partial Fisher–Yates shuffle from Philox keyed by (seed, key)); padding rows get none.
pub fn fill_mask(batch: &EraBatch, rate: f32, seed: u64, key: u64) -> Vec<f32> {
    let (n, f) = (batch.n, batch.f);
    let mut fill = vec![0f32; n * f];
    if f == 0 {
        return fill;
    }
    let k = ((rate as f64 * f as f64).round() as usize).clamp(1, f);
    let mut rng = Rng::new(seed ^ key.wrapping_mul(0x9E37_79B9_7F4A_7C15), MASK_STREAM);
    let mut idx: Vec<usize> = (0..f).collect();
    for i in 0..n {
        if batch.mask[i] == 0.0 {
            continue;
        }
        for j in 0..k {
            let r = j + (rng.next_u32() as usize) % (f - j);
            idx.swap(j, r);
            fill[i * f + idx[j]] = 1.0;
        }
    }
    fill
}

/// Forward (and, when `train` is given, backward) of the reconstruction loss on one era.
/// Returns the masked-entry MSE. With `adam`, its pending gradient norms are read back with the
/// loss and checked ([`Adam::check_pending`]).
fn era_step<B: Backend>(
    dev: &B,
    m: &mut Trained<B>,
    adam: Option<&mut Adam<B>>,
    batch: &EraBatch,
    fill: &[f32],
    train: Option<TrainCtx>,
) -> Result<f64> {
    let cfg = m.model.cfg.clone();
    let (n, f, d) = (batch.n, cfg.n_features, cfg.d_model);
    let id = |name: &str| {
        m.params
            .id(name)
            .ok_or_else(|| Error::shape(format!("parameter '{name}' is missing")))
    };
    let (mv, w0, b0, w1, b1) = (
        id("pretrain.mask_value")?,
        id("pretrain.head.0.weight")?,
        id("pretrain.head.0.bias")?,
        id("pretrain.head.1.weight")?,
        id("pretrain.head.1.bias")?,
    );
    let target: Vec<f32> = (0..n * f)
        .map(|e| if fill[e] != 0.0 { batch.x[e] } else { f32::NAN })
        .collect();
    let mut tape = Tape::new();
    let inputs = m.inputs(
        dev,
        &mut tape,
        batch,
        train.map(|c| (c.seed, c.step as u64)),
    )?;
    let fill_t = tape.input(dev, fill)?;
    let y = tape.input(dev, &target)?;
    let enc = m.model.encode(
        dev,
        &mut tape,
        &m.params,
        &inputs,
        train,
        Some((fill_t, mv)),
    )?;
    let r0 = tape.linear(dev, &m.params, enc.hidden, w0, b0, n, d, d)?;
    let r1 = tape.gelu(dev, r0)?;
    let r = tape.linear(dev, &m.params, r1, w1, b1, n, d, f)?;
    let pending: Vec<&B::Buf> = adam
        .as_deref()
        .and_then(|a| a.pending_sums())
        .into_iter()
        .collect();
    let parts = tape.loss_with(dev, r, y, inputs.mask, enc.g, 0.0, n, f, &[], &pending)?;
    if let Some(a) = adam {
        a.check_pending(dev, &m.params)?;
    }
    if !parts.loss.is_finite() {
        return Err(Error::Numeric {
            step: train.map_or(0, |c| c.step as u64),
            tensor: "loss".into(),
            msg: format!("reconstruction loss is {}", parts.loss),
        });
    }
    if train.is_some() {
        tape.backward(dev, &mut m.params)?;
    }
    tape.release(dev);
    Ok(parts.mse as f64)
}

/// Mean reconstruction MSE over `eras` of `store` (fixed masks, no dropout).
fn validate<B: Backend>(
    dev: &B,
    m: &mut Trained<B>,
    store: &Store,
    eras: &[usize],
    map: &ColumnMap,
    opts: &PretrainOptions,
) -> Result<f64> {
    let mut sum = 0.0;
    let mut count = 0usize;
    let loaders = era::prefetch_workers(dev.prefers_codes())?;
    let stats = m.model.cfg.context_dim > 0;
    era::with_prefetch(store, map, eras, loaders, stats, |batches| -> Result<()> {
        for (ei, batch) in batches {
            let batch = batch?;
            if batch.n == 0 {
                continue;
            }
            let fill = fill_mask(&batch, opts.mask_rate, opts.seed ^ 0x5A11D, ei as u64);
            sum += era_step(dev, m, None, &batch, &fill, None)?;
            count += 1;
        }
        Ok(())
    })?;
    Ok(if count > 0 { sum / count as f64 } else { 0.0 })
}

/// Pretrains the encoder of `cfg` on every era of `train` (less the validation eras when no
/// `valid` store is given: the last max(1, n/10) eras of `train` when it has at least 2).
pub fn pretrain<B: Backend>(
    dev: &B,
    cfg: Config,
    train: &Store,
    valid: Option<&Store>,
    opts: &PretrainOptions,
    on_event: &mut dyn FnMut(&PretrainEvent),
) -> Result<PretrainResult> {
    opts.validate()?;
    cfg.validate()?;
    let n_eras = train.n_eras();
    if n_eras == 0 || train.n_rows() == 0 {
        return Err(Error::format(
            train.path(),
            "eras",
            "nothing to pretrain on: the store has no rows",
        ));
    }
    if cfg.n_features != train.n_features() {
        return Err(Error::usage(format!(
            "the model has {} features, the store {} has {}",
            cfg.n_features,
            train.path().display(),
            train.n_features()
        )));
    }
    let map = ColumnMap::identity(train);
    let (train_eras, valid_eras): (Vec<usize>, Vec<usize>) = match valid {
        Some(_) => ((0..n_eras).collect(), Vec::new()),
        None if n_eras >= 2 => {
            let hold = (n_eras / 10).max(1);
            (
                (0..n_eras - hold).collect(),
                (n_eras - hold..n_eras).collect(),
            )
        }
        None => ((0..n_eras).collect(), Vec::new()),
    };
    let valid_map = match valid {
        Some(v) => Some(ColumnMap::for_model(
            v,
            train.feature_names(),
            train.target_names(),
        )?),
        None => None,
    };
    let valid_all: Vec<usize> = valid.map_or(Vec::new(), |v| (0..v.n_eras()).collect());
    let mut tensors = init_params(&cfg, opts.seed);
    tensors.extend(init_pretrain(&cfg, opts.seed));
    let (context, tensors) = super::context::ContextNorm::split(&tensors);
    debug_assert!(context.is_none());
    let context = if cfg.context_dim > 0 {
        Some(super::context::ContextNorm::fit(train, &map)?)
    } else {
        None
    };
    let params = Params::from_host(dev, &tensors)?;
    let model = EraTransformer::new(cfg.clone(), &params)?;
    let mut m = Trained {
        model,
        params,
        features: train.feature_names().to_vec(),
        targets: train.target_names().to_vec(),
        context,
    };
    let mut adam = Adam::new(dev, &m.params, opts.lr, opts.weight_decay)?;
    let mut step = 0u64;
    let mut reports = Vec::new();
    let mut best: Option<(usize, f64, Checkpoint)> = None;
    let mut since_best = 0usize;
    let mut order = train_eras.clone();
    let loaders = era::prefetch_workers(dev.prefers_codes())?;
    for epoch in 1..=opts.epochs {
        let mut rng = Rng::new(
            opts.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            0x5EED,
        );
        order.copy_from_slice(&train_eras);
        super::era::shuffle(&mut order, &mut rng);
        let stage = Stage::new(
            format!("pretrain epoch {epoch}/{}", opts.epochs),
            Some(order.len() as u64),
            "eras",
        );
        let (mut sum, mut counted) = (0.0f64, 0usize);
        // the eras load on loader threads ahead of the step, as in training
        let stats = m.model.cfg.context_dim > 0;
        era::with_prefetch(train, &map, &order, loaders, stats, |eras| -> Result<()> {
            for (i, (_, batch)) in eras.enumerate() {
                if opts.max_steps.is_some_and(|ms| step >= ms) {
                    break;
                }
                let batch = batch?;
                if batch.n == 0 {
                    continue;
                }
                step += 1;
                let fill = fill_mask(&batch, opts.mask_rate, opts.seed, step);
                m.params.zero_grads(dev)?;
                let ctx = TrainCtx {
                    seed: opts.seed,
                    step: step as u32,
                };
                sum += era_step(dev, &mut m, Some(&mut adam), &batch, &fill, Some(ctx))?;
                step::apply(dev, &mut m, &mut adam, opts.clip, 1, step)?;
                counted += 1;
                on_event(&PretrainEvent::Progress(
                    stage.at(i as u64 + 1, i + 1 == order.len()),
                ));
            }
            Ok(())
        })?;
        adam.check_pending(dev, &m.params)?;
        if counted == 0 {
            break;
        }
        let train_mse = sum / counted as f64;
        let valid_mse = match (valid, &valid_map) {
            (Some(v), Some(vm)) => Some(validate(dev, &mut m, v, &valid_all, vm, opts)?),
            _ if !valid_eras.is_empty() => {
                Some(validate(dev, &mut m, train, &valid_eras, &map, opts)?)
            }
            _ => None,
        };
        on_event(&PretrainEvent::Epoch {
            epoch,
            epochs: opts.epochs,
            train_mse,
            valid_mse,
        });
        reports.push((epoch, train_mse, valid_mse));
        let score = valid_mse.unwrap_or(train_mse);
        if best.as_ref().is_none_or(|(_, b, _)| score < *b) {
            best = Some((epoch, score, m.to_checkpoint(dev)?));
            since_best = 0;
        } else {
            since_best += 1;
            if opts.patience > 0 && since_best >= opts.patience {
                on_event(&PretrainEvent::EarlyStop {
                    patience: opts.patience,
                });
                break;
            }
        }
        if opts.max_steps.is_some_and(|ms| step >= ms) {
            break;
        }
    }
    let (best_epoch, _, checkpoint) = best.ok_or_else(|| {
        Error::format(
            train.path(),
            "eras",
            "nothing to pretrain on: every era is empty",
        )
    })?;
    Ok(PretrainResult {
        epochs: reports,
        best_epoch,
        checkpoint,
    })
}
