//! What a training run is asked to do, and the checks on it (`TrainOptions::validate`).

use crate::{Error, Result};
use std::path::PathBuf;

/// The learning-rate curve after the warm-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Schedule {
    /// `lr` for every step after the warm-up.
    #[default]
    Constant,
    /// Half a cosine from `lr` (end of warm-up) down to `min_lr` (the last step of the run).
    Cosine,
}

impl Schedule {
    pub fn as_str(&self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::Cosine => "cosine",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "constant" => Ok(Schedule::Constant),
            "cosine" => Ok(Schedule::Cosine),
            other => Err(Error::usage(format!(
                "--schedule must be constant or cosine, got '{other}'"
            ))),
        }
    }
}

#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub epochs: usize,
    pub seed: u64,
    /// peak learning rate (after the warm-up)
    pub lr: f32,
    pub weight_decay: f32,
    /// global-norm clip; 0 = off
    pub clip: f32,
    /// stop after this many optimizer steps
    pub max_steps: Option<u64>,
    /// epochs without a better validation corr before stopping
    pub patience: usize,
    /// the earliest epoch early stopping may keep: the kept epoch is the best of epochs
    /// `min_epochs..`, and patience counts from it (1 = every epoch may be kept)
    pub min_epochs: usize,
    /// epochs over which the gate threshold ramps from 0 to its configured value
    pub threshold_warmup: usize,
    pub out: Option<PathBuf>,
    pub grads_out: Option<PathBuf>,
    /// kept for callers that still set it; the library never prints (it emits events)
    pub quiet: bool,
    /// Continue a killed run from its last state (weights come in `init`).
    pub resume: Option<super::resume::OptimState>,
    /// optimizer steps over which the learning rate ramps linearly from lr/warmup to lr; 0 = off
    pub warmup: u64,
    pub schedule: Schedule,
    /// the learning rate at the end of a cosine schedule
    pub min_lr: f32,
    /// eras whose gradients are summed into one Adam step (see `step::apply`); 1 = one era a step
    pub eras_per_step: usize,
    /// decay of the exponential moving average of the weights; 0 = off
    pub ema: f32,
    /// per training era, each feature is dropped or reversed with probability p/2 each; 0 = off
    pub feature_noise: f32,
    /// per training era and epoch, each row is kept with this probability (src/train/rows.rs);
    /// 1 = off
    pub row_sample: f32,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 20,
            seed: 0,
            lr: 1e-3,
            weight_decay: 0.0,
            clip: 1.0,
            max_steps: None,
            patience: 6,
            min_epochs: 1,
            threshold_warmup: 0,
            out: None,
            grads_out: None,
            quiet: false,
            resume: None,
            warmup: 0,
            schedule: Schedule::Constant,
            min_lr: 0.0,
            eras_per_step: 1,
            ema: 0.0,
            feature_noise: 0.0,
            row_sample: 1.0,
        }
    }
}

impl TrainOptions {
    /// Refuses values that cannot train; each message names the flag.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::usage("--epochs must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::usage(format!(
                "--lr must be a positive number, got {}",
                self.lr
            )));
        }
        if !(self.clip.is_finite() && self.clip >= 0.0) {
            return Err(Error::usage(format!(
                "--clip must be >= 0, got {}",
                self.clip
            )));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::usage(format!(
                "--weight-decay must be >= 0, got {}",
                self.weight_decay
            )));
        }
        if self.min_epochs == 0 {
            return Err(Error::usage(
                "--min-epochs must be at least 1 (1 = every epoch may be kept)",
            ));
        }
        if self.max_steps == Some(0) {
            return Err(Error::usage("--max-steps must be at least 1"));
        }
        if !(self.min_lr.is_finite() && self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return Err(Error::usage(format!(
                "--min-lr must be between 0 and --lr ({}), got {}",
                self.lr, self.min_lr
            )));
        }
        if self.eras_per_step == 0 {
            return Err(Error::usage("--eras-per-step must be at least 1"));
        }
        if !(self.ema.is_finite() && (0.0..1.0).contains(&self.ema)) {
            return Err(Error::usage(format!(
                "--ema must be in [0, 1) (0 = off), got {}",
                self.ema
            )));
        }
        if !(self.feature_noise.is_finite() && (0.0..=1.0).contains(&self.feature_noise)) {
            return Err(Error::usage(format!(
                "--feature-noise must be in [0, 1], got {}",
                self.feature_noise
            )));
        }
        if !(self.row_sample.is_finite() && self.row_sample > 0.0 && self.row_sample <= 1.0) {
            return Err(Error::usage(format!(
                "--row-sample must be in (0, 1] (1 = every row), got {}",
                self.row_sample
            )));
        }
        Ok(())
    }

    /// The learning rate of optimizer step `step` (1-based) in a run of `total` steps: linear
    /// warm-up to `lr` over `warmup` steps, then constant or a half cosine down to `min_lr`.
    pub fn lr_at(&self, step: u64, total: u64) -> f32 {
        if self.warmup > 0 && step <= self.warmup {
            return (self.lr as f64 * step as f64 / self.warmup as f64) as f32;
        }
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let span = total.saturating_sub(self.warmup).max(1) as f64;
                let done = step.saturating_sub(self.warmup) as f64;
                let progress = (done / span).clamp(0.0, 1.0);
                let (lr, lo) = (self.lr as f64, self.min_lr as f64);
                (lo + (lr - lo) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())) as f32
            }
        }
    }
}
