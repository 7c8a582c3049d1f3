//! `train --head-blend auto|off|W0,W1,...` (src/train/blend.rs, docs/model.md "Head blend"):
//! which weights, and folding them into the model `train` writes.

use super::device::{dispatch, DeviceChoice, DeviceJob};
use super::TrainArgs;
use crate::checkpoint::Checkpoint;
use crate::data::store::Store;
use crate::model::Preset;
use crate::train::blend::{self, EraOutputs};
use crate::{Error, Result};

#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// chosen on the validation eras by the early-stopped model
    Auto,
    Off,
    /// one weight per target, as given
    Fixed(Vec<f32>),
}

impl Mode {
    /// `--head-blend` (unset: auto with `--preset recommended`, off with `spec`).
    pub fn of(a: &TrainArgs) -> Result<Mode> {
        match a.head_blend.as_deref() {
            Some("auto") => Ok(Mode::Auto),
            Some("off") => Ok(Mode::Off),
            Some(list) => {
                let bad = || {
                    Error::usage(format!(
                        "--head-blend must be 'auto', 'off' or one weight per target (finite numbers, e.g. 1,0.5,0), got '{list}'"
                    ))
                };
                let w = list
                    .split(',')
                    .map(|s| s.trim().parse::<f32>().ok().filter(|x| x.is_finite()))
                    .collect::<Option<Vec<f32>>>()
                    .ok_or_else(bad)?;
                if w.iter().all(|&x| x == 0.0) {
                    return Err(Error::usage(format!(
                        "--head-blend {list}: every weight is 0, so output 0 would be constant"
                    )));
                }
                Ok(Mode::Fixed(w))
            }
            None => Ok(match Preset::parse(&a.preset)? {
                Preset::Recommended => Mode::Auto,
                _ => Mode::Off,
            }),
        }
    }

    /// Checks fixed weights against the model's target count before anything trains.
    pub fn check(&self, targets: &[String]) -> Result<()> {
        match self {
            Mode::Fixed(w) if w.len() != targets.len() => Err(Error::usage(format!(
                "--head-blend gives {} weights, but the model has {} targets ({}): give one per target",
                w.len(),
                targets.len(),
                targets.join(", ")
            ))),
            _ => Ok(()),
        }
    }
}

struct OutputsJob<'a> {
    ck: &'a Checkpoint,
    store: &'a Store,
}

impl DeviceJob for OutputsJob<'_> {
    type Out = Vec<EraOutputs>;
    fn run<B: crate::device::Backend>(self, dev: &B) -> Result<Self::Out> {
        blend::outputs(dev, self.ck, self.store)
    }
}

/// The weights to fold into the written model, or None to leave output 0 alone. `es` is the
/// early-stopped model (never trained on `valid`); `auto` without validation eras or with one
/// target gives None; when no blend beats output 0 alone on the validation eras it gives
/// (1, 0, …, 0).
pub fn weights(
    mode: &Mode,
    device: DeviceChoice,
    es: &Checkpoint,
    valid: Option<&Store>,
    quiet: bool,
) -> Result<Option<Vec<f32>>> {
    let valid = match (mode, valid) {
        (Mode::Off, _) => return Ok(None),
        (Mode::Fixed(w), _) => {
            if !quiet {
                eprintln!(
                    "head blend (--head-blend): output 0 = {}",
                    blend::describe(w, &es.targets)
                );
            }
            return Ok(Some(w.clone()));
        }
        (Mode::Auto, None) => return Ok(None),
        (Mode::Auto, Some(v)) => v,
    };
    if es.config.n_targets < 2 {
        return Ok(None);
    }
    let eras = dispatch(
        device,
        OutputsJob {
            ck: es,
            store: valid,
        },
    )?;
    let b = blend::choose(&eras, es.config.n_targets);
    if !quiet {
        if b.is_identity() {
            eprintln!(
                "head blend: no blend of the target heads beats output 0 alone on the {} validation eras; output 0 unchanged",
                eras.len()
            );
        } else {
            eprintln!(
                "head blend (chosen on the {} validation eras by the early-stopped model): output 0 = {}; validation corr {:.4} -> {:.4} (in-sample for the choice; --head-blend off keeps output 0 alone)",
                eras.len(),
                blend::describe(&b.weights, &es.targets),
                b.plain,
                b.blended
            );
        }
    }
    // recorded even when it is output 0 alone, so a resumed finished run reuses the choice
    Ok(Some(b.weights))
}

/// Folds `w` into `ck`'s output 0 (nothing to fold when it is output 0 alone) and records it in
/// the checkpoint.
pub fn apply(ck: &mut Checkpoint, w: &[f32]) -> Result<()> {
    if !blend::is_identity(w) {
        blend::fold(ck, w)?;
    }
    ck.head_blend = Some(w.to_vec());
    Ok(())
}
