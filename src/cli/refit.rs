//! The refit after early stopping (`train --refit on|joint|off`, docs/defaults.md round 8): the
//! model trained again from its start on the training then the validation eras for the epoch count
//! early stopping chose (`joint`), then (`on`) one more pass over the validation eras alone, the
//! newest labelled ones, at a tenth of the learning rate.

use super::device::DeviceChoice;
use super::train_job::{Render, TrainJob};
use super::TrainArgs;
use crate::checkpoint::Checkpoint;
use crate::data::store::Store;
use crate::model::{Config, Preset};
use crate::train::era::EraSource;
use crate::train::{Schedule, TrainOptions};
use crate::{Error, Result};

/// The last pass's learning rate, as a fraction of `--lr`.
pub const RECENT_LR_SCALE: f32 = 0.1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// the joint retraining, then the pass over the newest eras
    On,
    /// the joint retraining only
    Joint,
}

impl Mode {
    /// `--refit on|joint|off` (None: off); unset, on with `--preset recommended`, off with `spec`.
    pub fn of(a: &TrainArgs) -> Result<Option<Mode>> {
        match a.refit.as_deref() {
            Some("on") => Ok(Some(Mode::On)),
            Some("joint") => Ok(Some(Mode::Joint)),
            Some("off") => Ok(None),
            Some(x) => Err(Error::usage(format!(
                "--refit must be 'on', 'joint' or 'off', got '{x}'"
            ))),
            None => Ok((Preset::parse(&a.preset)? == Preset::Recommended).then_some(Mode::On)),
        }
    }
}

/// One refit: what the early-stopped run leaves to it.
pub struct Refit<'a> {
    pub mode: Mode,
    pub device: DeviceChoice,
    pub train: &'a Store,
    pub valid: &'a Store,
    /// the best epoch of the early-stopped run
    pub epochs: usize,
    pub cfg: Config,
    /// where the early-stopped run started (fresh weights: None)
    pub start: Option<&'a Checkpoint>,
    pub opts: &'a TrainOptions,
    pub quiet: bool,
}

impl Refit<'_> {
    /// The refit model (nothing is saved here: the caller writes it over the early-stopped one).
    pub fn run(self, render: &mut Render) -> Result<Checkpoint> {
        let src = EraSource::one(self.train).then(self.valid)?;
        let mut o = self.opts.clone();
        o.epochs = self.epochs;
        o.out = None;
        o.resume = None;
        if !self.quiet {
            eprintln!(
                "refit: training again on {} + {} ({} eras) for {}{} (--refit off skips this)",
                self.train.path().display(),
                self.valid.path().display(),
                src.n_eras(),
                crate::progress::epochs(self.epochs),
                match self.mode {
                    Mode::On => format!(
                        ", then once over the {} validation eras at lr {} x {RECENT_LR_SCALE}",
                        self.valid.n_eras(),
                        self.opts.lr
                    ),
                    Mode::Joint => String::new(),
                }
            );
        }
        let joint = super::device::dispatch(
            self.device,
            TrainJob {
                cfg: self.cfg,
                init: self.start,
                train: &src,
                valid: None,
                opts: &o,
                render,
            },
        )?
        .checkpoint;
        if self.mode == Mode::Joint {
            return Ok(joint);
        }
        // The newest labelled eras once more, at a tenth of the rate, from fresh Adam moments: as
        // `train --init JOINT --data VALID --epochs 1 --lr LR/10 --patience 0 --ema 0` would (the
        // joint model is already the moving average when there is one).
        let recent = EraSource::mapped(self.valid, &joint.features, &joint.targets)?;
        let mut o = o.clone();
        o.epochs = 1;
        o.lr = self.opts.lr * RECENT_LR_SCALE;
        o.max_steps = None;
        o.warmup = 0;
        o.schedule = Schedule::Constant;
        o.ema = 0.0;
        // the joint model's gate threshold is already the full one
        o.threshold_warmup = 0;
        Ok(super::device::dispatch(
            self.device,
            TrainJob {
                cfg: joint.config.clone(),
                init: Some(&joint),
                train: &recent,
                valid: None,
                opts: &o,
                render,
            },
        )?
        .checkpoint)
    }
}
